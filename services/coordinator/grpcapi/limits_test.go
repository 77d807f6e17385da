package grpcapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestDeployRefusesOversizedSpecs: the inputs that used to be recorded and
// then sink a node (a 2.5 MB env) or the leader (a count of 1e9) are
// refused at Deploy over gRPC with field violations, and nothing is
// recorded; a normal spec still deploys after them.
func TestDeployRefusesOversizedSpecs(t *testing.T) {
	c := startCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := c.leader().deploy()

	bigEnv := spec("web", "slipway/demo:v1")
	bigEnv.Env = map[string]string{"BLOB": strings.Repeat("x", 2_500_000)}
	_, err := d.Deploy(ctx, &deployv1.DeployRequest{Spec: bigEnv, RequestId: "big-env"})
	wantCode(t, "2.5 MB env", err, codes.InvalidArgument, "")
	wantFields(t, "2.5 MB env", err, []string{"spec", `spec.env["BLOB"]`})

	manyEnv := spec("web", "slipway/demo:v1")
	manyEnv.Env = map[string]string{}
	for i := range 2500 {
		manyEnv.Env["V"+strings.Repeat("_", i%100)+strings.Repeat("A", i/100)] = strings.Repeat("x", 1000)
	}
	_, err = d.Deploy(ctx, &deployv1.DeployRequest{Spec: manyEnv, RequestId: "many-env"})
	wantCode(t, "2.5 MB env in 2500 variables", err, codes.InvalidArgument, "")
	wantFields(t, "2.5 MB env in 2500 variables", err, []string{"spec", "spec.env"})

	huge := spec("web", "slipway/demo:v1")
	huge.Count = 1e9
	_, err = d.Deploy(ctx, &deployv1.DeployRequest{Spec: huge, RequestId: "huge-count"})
	wantCode(t, "count 1e9", err, codes.InvalidArgument, "")
	wantFields(t, "count 1e9", err, []string{"spec.count"})

	if _, err := d.GetService(ctx, &deployv1.GetServiceRequest{Name: "web"}); err == nil {
		t.Fatal("a refused spec was recorded")
	}
	if _, err := d.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "ok"}); err != nil {
		t.Fatalf("a normal deploy after the refused ones: %v", err)
	}
}
