package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"slipway.dev/coordinator/notify"
	"slipway.dev/platform/testenv"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestNotificationsSentByTheLeaderOnly runs three coordinators that all
// name the same webhook (a real HTTP server): each rollout event arrives
// once, from the leader, also after leadership moved to another node.
func TestNotificationsSentByTheLeaderOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft over TCP")
	}
	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev struct {
			Service string `json:"service"`
			Event   struct {
				Kind string `json:"kind"`
			} `json:"event"`
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, ev.Service+":"+ev.Event.Kind)
		mu.Unlock()
	}))
	defer hook.Close()
	withHook := func(c *Config) {
		c.Notify = notify.Config{Targets: []notify.Target{{URL: hook.URL, Format: notify.JSON}}, InitialWait: 50 * time.Millisecond}
	}
	a := start(t, "a", func(c *Config) { c.Bootstrap = true; withHook(c) })
	waitHealth(t, a, healthpb.HealthCheckResponse_SERVING)
	b := start(t, "b", func(c *Config) { c.Join = []string{a.cfg.GRPCAddr}; withHook(c) })
	waitHealth(t, b, healthpb.HealthCheckResponse_SERVING)
	c := start(t, "c", func(c *Config) { c.Join = []string{a.cfg.GRPCAddr}; withHook(c) })
	waitHealth(t, c, healthpb.HealthCheckResponse_SERVING)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dep := deployv1.NewDeployServiceClient(b.conn)
	if _, err := dep.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{Name: "web", Image: "slipway/demo:v1", Count: 1, Port: 8080}, RequestId: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := dep.PauseRollout(ctx, &deployv1.PauseRolloutRequest{Id: "web-1", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	received := func(want string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, "the webhook to receive "+want, func() error {
			mu.Lock()
			defer mu.Unlock()
			if s := strings.Join(got, ","); s != want {
				return fmt.Errorf("received %q", s)
			}
			return nil
		})
	}
	received("web:created,web:command")

	// Leadership moves; the new leader sends what is committed from then on.
	if _, err := clusterv1.NewClusterServiceClient(a.conn).TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{}); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	testenv.Eventually(t, 30*time.Second, "a resume committed by the new leader", func() error {
		_, err := dep.ResumeRollout(ctx, &deployv1.ResumeRolloutRequest{Id: "web-1", By: "alice", RequestId: "resume-1"})
		return err
	})
	received("web:created,web:command,web:command")
	// Each event once: a second sender would have repeated them.
	if _, err := dep.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{Name: "api", Image: "slipway/demo:v1", Count: 1, Port: 8080}, RequestId: "n2"}); err != nil {
		t.Fatal(err)
	}
	received("web:created,web:command,web:command,api:created")
}
