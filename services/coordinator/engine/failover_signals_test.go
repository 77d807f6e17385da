package engine_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/signals"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// A leader failover mid-canary does not judge the window the new leader
// only saw part of: its signals store (in memory) starts empty, and the
// part of the window the old leader received is gone. Under no_data fail
// with failure_limit 1 a partial window (too few requests) would revert a
// healthy canary; instead the new leader waits for a window it saw whole,
// which passes, and the canary succeeds.
func TestFailoverDoesNotJudgePartialWindow(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	store := signals.New(0)
	h.signals = store
	h.newLeader()
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	u := fast(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true, Canary: &deployv1.CanaryStrategy{
		Analysis: &deployv1.Analysis{Interval: durationpb.New(4 * time.Second), MinRequests: 60, FailureLimit: 1,
			NoData: deployv1.NoDataPolicy_NO_DATA_POLICY_FAIL, SuccessRate: &deployv1.SuccessRateThreshold{Min: 99}},
		Steps: []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(10 * time.Second)}, {Weight: 100}}}})
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, u))
	// Each 500 ms the edge reports 10 requests of each release: 80 per 4 s
	// window, 60 needed.
	report := func() {
		if err := store.Add(h.clock.Now(), &edgev1.ReportSignalsRequest{EdgeId: "e1", Period: durationpb.New(500 * time.Millisecond),
			Signals: []*edgev1.ReleaseSignals{{Service: "web", Release: 1, Requests: 10}, {Service: "web", Release: 2, Requests: 10}}}); err != nil {
			t.Fatal(err)
		}
	}
	failedOver := false
	for i := 0; i < 200 && h.rollout(v2).GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED; i++ {
		if !failedOver && h.rollout(v2).GetStep() == 0 && len(analysisVerdicts(h, v2)) == 1 {
			// One window judged (passed); the leader fails over 1.5 s
			// into the next window, and the new one's store is empty.
			h.clock.Add(1500 * time.Millisecond)
			store = signals.New(0)
			h.signals = store
			h.newLeader()
			failedOver = true
		}
		report()
		h.pass()
		if st := h.rollout(v2).GetState(); st == deployv1.RolloutState_ROLLOUT_STATE_REVERTED || st == deployv1.RolloutState_ROLLOUT_STATE_FAILED {
			t.Fatalf("canary %s after the failover: %s", st, h.rollout(v2).GetMessage())
		}
		h.clock.Add(500 * time.Millisecond)
	}
	if !failedOver {
		t.Fatal("the leader never failed over mid-step")
	}
	if st := h.rollout(v2).GetState(); st != deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
		t.Fatalf("canary %s: %s", st, h.rollout(v2).GetMessage())
	}
	for _, v := range analysisVerdicts(h, v2) {
		if !strings.Contains(v, "passed") {
			t.Errorf("verdict %q: every window judged was whole and passed", v)
		}
	}
}

// analysisVerdicts are the messages of a rollout's analysis events.
func analysisVerdicts(h *harness, id string) []string {
	h.t.Helper()
	res, err := h.fsm.EventsAfter(id, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, ev := range res.Events {
		if ev.GetKind() == "analysis" {
			out = append(out, ev.GetMessage())
		}
	}
	return out
}
