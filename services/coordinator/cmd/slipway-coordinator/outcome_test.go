package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// A Deploy the leader appended but could not commit (both followers
// paused: it steps down after its lease) is not reported to slipctl as
// "unavailable, not deployed": slipctl is told OUTCOME_UNKNOWN, says so,
// retries with the same request id, and once the followers are back the
// retry settles it: exit 0 and exactly one release.
func TestSlipctlRetriesAnUnknownOutcome(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-coordinator cluster of processes")
	}
	// A leader lease long enough for slipctl's call to reach the leader
	// after its followers froze and before it steps down.
	c := startCluster(t, 3, "-raft-heartbeat-timeout", "2s", "-raft-election-timeout", "2s", "-raft-leader-lease-timeout", "2s")
	slipctlBin := testenv.BuildBinary(t, "./cli/cmd/slipctl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	secret, err := c.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader, err := c.WaitLeader(ctx, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	// Something committed first, so that the leader has served a write.
	deployRetrying(ctx, t, deployv1.NewDeployServiceClient(c.Conn(leader)), &deployv1.DeployRequest{Spec: webSpec("warm", "slipway/demo:v1"), RequestId: "warm-1"})

	specFile := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(specFile, []byte("name: web\nimage: slipway/demo:v1\ncount: 2\nport: 8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	client := c.PKI.Issue(t, pki.RoleClient, "ci")
	for _, i := range others(3, leader) {
		if err := c.Freeze(i); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Thaw(i) })
	}

	slipctl := exec.Command(slipctlBin, "deploy", "-f", specFile, "--request-id", "ci-run-77", "--retry-for", "90s", "--timeout", "10s")
	slipctl.Env = append(cleanEnv(), "SLIPWAY_ADDR="+c.Procs[leader].GRPCAddr, "SLIPWAY_TOKEN="+secret,
		"SLIPWAY_TLS_CA="+client.CA, "SLIPWAY_TLS_CERT="+client.Cert, "SLIPWAY_TLS_KEY="+client.Key)
	var stdout, stderr testenv.LockedBuffer
	slipctl.Stdout, slipctl.Stderr = &stdout, &stderr
	if err := slipctl.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- slipctl.Wait() }()
	t.Cleanup(func() { _ = slipctl.Process.Kill() })

	testenv.Eventually(t, 30*time.Second, "slipctl to report the unknown outcome", func() error {
		if !strings.Contains(stderr.String(), "outcome unknown") {
			return fmt.Errorf("slipctl stderr so far:\n%s", stderr.String())
		}
		return nil
	})
	if !strings.Contains(stderr.String(), "retrying with request id ci-run-77") {
		t.Errorf("slipctl does not say which request id it retries with:\n%s", stderr.String())
	}
	for _, i := range others(3, leader) {
		if err := c.Thaw(i); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("slipctl deploy: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("slipctl did not finish\nstderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "settled it") {
		t.Errorf("slipctl does not say the retry settled it:\n%s", stderr.String())
	}
	newLeader, err := c.WaitLeader(ctx, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	list, err := deployv1.NewDeployServiceClient(c.Conn(newLeader)).ListReleases(ctx, &deployv1.ListReleasesRequest{Service: "web", Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetReleases()); n != 1 || list.GetReleases()[0].GetRequestId() != "ci-run-77" {
		t.Errorf("releases of web = %v, want exactly one, from request ci-run-77", list.GetReleases())
	}
}

// cleanEnv is the environment without SLIPWAY_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLIPWAY_") {
			env = append(env, kv)
		}
	}
	return env
}
