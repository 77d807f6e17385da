package engine_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// FastRollback: a rollback to one of the window latest releases skips the
// steps; older ones, non-rollbacks and a zero window do not.
func TestFastRollbackWindow(t *testing.T) {
	for _, tc := range []struct {
		number, of uint64
		window     int
		fast       bool
	}{
		{8, 7, 3, true}, {8, 5, 3, true}, {8, 4, 3, false}, {8, 0, 3, false},
		{8, 7, 0, false}, {3, 1, 3, true}, {4, 1, 1, false}, {2, 1, 1, true},
	} {
		got := engine.FastRollback(tc.number, tc.of, tc.window)
		if (got != "") != tc.fast {
			t.Errorf("release %d rolling back to %d with window %d: %q, want fast %v", tc.number, tc.of, tc.window, got, tc.fast)
		}
	}
}

// TestRollbackWindowSkipsManualSteps runs a real coordinator, Consul, node
// agent and edge: release 1 and 2 are canaries with a manual step (2 is
// promoted by hand); `slipctl rollback --to 1 --wait` returns to release 1
// within the default rollback window, so its copy (release 3) skips the
// manual step and slipctl exits 0 without anyone promoting.
func TestRollbackWindowSkipsManualSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL())
	imgDir := t.TempDir()
	buildDemo(t, imgDir, "v1", "v2")
	co := coordtest.Start(t, c.Addr(), nil)
	edge := startEdge(t, c.Addr())
	startAgent(t, c.Addr(), imgDir)
	e := newE2E(t, co, c.Addr())
	host := e.name + ".test"
	manual := func() *deployv1.UpdateStrategy {
		return quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50, Manual: true}, {Weight: 100, Pause: durationpb.New(time.Hour)}}}})
	}
	v1 := e.doDeploy("slipway/demo:v1", nil, manual())
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second) // a first deploy has no steps
	v2 := e.doDeploy("slipway/demo:v2", nil, manual())
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.deploy.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: v2, Full: true, By: "e2e"}); err != nil {
		t.Fatal(err)
	}
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	waitServes(t, edge, host, "v2")

	files := testenv.ProcessPKI(t).Files(t, pki.RoleClient, "test")
	wctx, wcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer wcancel()
	cmd := exec.CommandContext(wctx, testenv.BuildBinary(t, "./cli/cmd/slipctl"), "rollback", e.name, "--to", "1", "--wait", "--reason", "e2e")
	cmd.Env = append(os.Environ(), "SLIPWAY_ADDR="+co.Config.GRPCAddr, "SLIPWAY_TOKEN="+co.Secret,
		"SLIPWAY_TLS_CA="+files.CA, "SLIPWAY_TLS_CERT="+files.Cert, "SLIPWAY_TLS_KEY="+files.Key)
	out, err := cmd.CombinedOutput()
	t.Logf("slipctl rollback --wait:\n%s", out)
	if err != nil {
		t.Fatalf("slipctl rollback --wait: %v (a rollback within the window must not wait for a promote)", err)
	}
	waitServes(t, edge, host, "v1")
	lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer lcancel()
	lr, err := e.deploy.ListRollouts(lctx, &deployv1.ListRolloutsRequest{Service: e.name})
	if err != nil {
		t.Fatal(err)
	}
	var back *deployv1.Rollout
	for _, ro := range lr.GetRollouts() {
		if ro.GetToRelease() == 3 {
			back = ro
		}
	}
	if back.GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
		t.Fatalf("rollback rollout %v, want succeeded", back)
	}
	var skipped bool
	for _, ev := range eventsOf(t, e, back.GetId(), "promoted") {
		skipped = skipped || strings.Contains(ev.GetMessage(), "rollback to #1 within rollback_window 3")
	}
	for _, ev := range eventsOf(t, e, back.GetId(), "paused") {
		t.Errorf("the fast rollback paused: %s", ev.GetMessage())
	}
	if !skipped {
		t.Error("no event says the rollback skipped its steps")
	}
}
