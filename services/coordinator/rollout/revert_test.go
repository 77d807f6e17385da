package rollout

import (
	"testing"
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestRevertWithdrawsSameStepPlacements guards the revert path against the
// second half of the "promote --full after a long manual wait" bug: the
// Step placed the full count and reverted at once, and the placed
// instances, committed with the reverted State, were never drained. A Step
// whose rollout reverts (or fails) must withdraw what it placed for the new
// release. The State is built by hand: since a promote restarts the
// progress clock, the scripts no longer reach it.
func TestRevertWithdrawsSameStepPlacements(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := Config{Strategy: deployv1.Strategy_STRATEGY_CANARY, ProgressDeadline: time.Minute,
		HealthyDeadline: 30 * time.Second, Steps: []CanaryStep{{Weight: 50, Manual: true}}}.WithDefaults()
	for _, revert := range []bool{true, false} {
		cfg.AutoRevert = revert
		s := State{Service: "web", From: 1, To: 2, FromCount: 2, Count: 2, Config: cfg,
			Phase: phaseRunning, Stage: StageFinal, Step: 1, Promoted: true,
			StartedAt: t0, ProgressAt: t0, Ordered: map[uint64]int{2: 1}, Healthy: []string{"v2-1"},
			Weights: map[uint64]int{1: 50, 2: 50}, Generation: 2}
		obs := Observation{Now: t0.Add(time.Hour), AckedGeneration: 2, Instances: []Instance{
			{ID: "v1-1", Release: 1, Health: HealthPassing, Since: t0.Add(-time.Hour), CreatedAt: t0.Add(-time.Hour)},
			{ID: "v1-2", Release: 1, Health: HealthPassing, Since: t0.Add(-time.Hour), CreatedAt: t0.Add(-time.Hour)},
			{ID: "v2-1", Release: 2, Health: HealthPassing, Since: t0, CreatedAt: t0},
		}}
		next, plan := Step(s, obs)
		want := phaseFailed
		if revert {
			want = phaseReverted
		}
		if next.Phase != want {
			t.Fatalf("auto_revert %v: phase %s (%s), want %s", revert, phaseName(next.Phase), next.Message, phaseName(want))
		}
		if len(plan.Place) != 0 {
			t.Errorf("auto_revert %v: the Step that ended the rollout placed %+v", revert, plan.Place)
		}
		if next.Ordered[2] != 1 {
			t.Errorf("auto_revert %v: Ordered[v2] = %d, want 1 (the withdrawn placement is not counted)", revert, next.Ordered[2])
		}
	}
}
