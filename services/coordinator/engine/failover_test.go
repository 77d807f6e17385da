package engine_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/internal/clusterproc"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestEngineFailoverMidCanary runs three real coordinator processes with the
// engine on, a real Consul and a real node agent. The leader is SIGKILLed
// while a canary waits at a manual step; the new leader resumes the same
// step (nothing placed twice), takes the promote and finishes the rollout.
func TestEngineFailoverMidCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, three coordinators, a node agent and demo processes")
	}
	c := testenv.StartConsul(t)
	imgDir := t.TempDir()
	buildDemo(t, imgDir, "v1", "v2")
	startAgent(t, c.Addr(), imgDir)

	bin := testenv.BuildBinary(t, "./services/coordinator/cmd/slipway-coordinator")
	cl, err := clusterproc.New(bin, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	cl.Args = []string{"-engine=true", "-consul-addr", c.Addr(), "-node-grace", "30s"}
	t.Cleanup(func() {
		cl.Close()
		if t.Failed() {
			for _, p := range cl.Procs {
				b, _ := os.ReadFile(p.LogPath)
				t.Logf("==> %s log:\n%s", p.ID, tailBytes(b, 6000))
			}
		}
	})
	if err := cl.StartAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := cl.WaitLeader(wctx, []int{0, 1, 2})
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	co := &coordProc{conn: cl.Conn(follower)}
	e := newE2E(t, co, c.Addr())

	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	v2 := e.doDeploy("slipway/demo:v2", nil, quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50, Manual: true}, {Weight: 100}}}}))
	e.waitWeights("1:50 2:50", 60*time.Second)
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 10*time.Second)
	before := e.instanceIDs(2)
	if len(before) != 1 {
		t.Fatalf("v2 instances at 50%% of 2 = %v, want 1", before)
	}

	if err := cl.Signal(leader, syscall.SIGKILL); err == nil {
		t.Log("leader exited cleanly on SIGKILL?")
	}
	wctx, wcancel = context.WithTimeout(ctx, 30*time.Second)
	newLeader, err := cl.WaitLeader(wctx, []int{follower, (leader + 2) % 3})
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %s killed; new leader %s", cl.Procs[leader].ID, cl.Procs[newLeader].ID)
	// The new leader holds the manual step: same weights, same instance.
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 10*time.Second)
	if w := e.weights(); w != "1:50 2:50" {
		t.Fatalf("weights after failover = %s", w)
	}
	poll(t, 30*time.Second, "promote through the new leader", func() string {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		_, err := e.deploy.PromoteRollout(pctx, &deployv1.PromoteRolloutRequest{Id: v2, By: "e2e"})
		if err != nil && status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("promote: %v", err)
		}
		if err != nil {
			return err.Error()
		}
		return ""
	})
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	e.waitWeights("2:100", 5*time.Second)
	poll(t, 30*time.Second, "only v2 serving", func() string {
		if got := e.passing(); got[1] != 0 || got[2] != 2 {
			return fmt.Sprintf("passing %v", got)
		}
		return ""
	})
	after := e.instanceIDs(2)
	if len(after) != 2 || !slices.Contains(after, before[0]) {
		t.Errorf("v2 instances = %v, want 2 including %s placed by the old leader", after, before[0])
	}
	ro := e.rollout(v2)
	for _, c := range ro.GetCommands() {
		if !c.GetApplied() {
			t.Errorf("command %v not applied", c)
		}
	}
}
