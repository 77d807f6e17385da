package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// latencyCanary is a canary whose first step (50%) is judged every 3 s by
// the comparison alone (no threshold) and paused for pause; the last step
// is not judged (stable serves nothing to compare with).
func latencyCanary(pause time.Duration, ratio float64, limit int32) *deployv1.UpdateStrategy {
	return quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true,
		Canary: &deployv1.CanaryStrategy{
			Analysis: &deployv1.Analysis{Interval: durationpb.New(3 * time.Second), MinRequests: 20, FailureLimit: limit,
				Compare: &deployv1.Comparison{MaxErrorRateIncrease: 1, MaxLatencyRatio: ratio, Confidence: 0.99}},
			Steps: []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(pause)}, {Weight: 100, Analysis: &deployv1.Analysis{Disabled: true}}}}})
}

func checkResult(a *deployv1.AnalysisVerdict, name string) deployv1.AnalysisResult {
	for _, c := range a.GetChecks() {
		if c.GetName() == name {
			return c.GetResult()
		}
	}
	return deployv1.AnalysisResult_ANALYSIS_RESULT_UNSPECIFIED
}

// TestEngineAnalysisFailsSlowCanary: a canary answering in 200 ms where
// stable answers in 100 ms (the demo's LATENCY; 2x at p99, a difference no
// scheduling noise here closes) fails the latency comparison
// (Mann-Whitney U, max_latency_ratio 1.3) and is reverted. Its step is
// paused for an hour, so a window that passed by chance could not promote
// it: only failed windows end the step.
func TestEngineAnalysisFailsSlowCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	e, edge, host := analysisStack(t, map[string]string{"LATENCY": "100ms"}, "v2")
	l := startHeaderLoad(edge, host, "", 16)
	v2 := e.doDeploy("slipway/demo:v2", map[string]string{"LATENCY": "200ms"}, latencyCanary(time.Hour, 1.3, 2))
	ro := e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, 90*time.Second)
	t.Logf("slow canary reverted: %s", ro.GetMessage())
	waitServes(t, edge, host, "v1")
	t.Logf("answers %v", l.end())
	verdicts := e.analysisEvents(v2)
	if len(verdicts) < 2 {
		t.Fatalf("%d analysis verdicts, want at least failure_limit 2", len(verdicts))
	}
	failed := 0
	for i, ev := range verdicts {
		a := ev.GetAnalysis()
		t.Logf("verdict %d: %s", i, ev.GetMessage())
		if a.GetResult() != deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL {
			continue
		}
		failed++
		if checkResult(a, "compare.latency") != deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL || checkResult(a, "compare.error_rate") == deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL {
			t.Errorf("verdict %d failed on %v, want the latency comparison alone", i, a.GetChecks())
		}
		if c, s := a.GetCanary().GetP99().AsDuration(), a.GetStable().GetP99().AsDuration(); c < 200*time.Millisecond || s < 100*time.Millisecond {
			t.Errorf("verdict %d: p99 canary %s stable %s, want at least the injected 200ms and 100ms", i, c, s)
		}
	}
	if failed != 2 {
		t.Errorf("%d failed verdicts, want failure_limit 2", failed)
	}
}

// TestEngineAnalysisPassesSharedSlowdown: stable and canary, identical,
// both slowed from 5 ms to over 150 ms at once while the canary is judged
// (the demo's LATENCY_FILE, one file both read: a slowdown hitting every
// release alike, as a load spike or a slow shared dependency does). A fixed
// p99 threshold (say 100 ms) would fail the canary in every window; the
// comparison of canary against stable in the same window passes it and it
// is promoted.
func TestEngineAnalysisPassesSharedSlowdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // the agent runs the demo as nobody
		t.Fatal(err)
	}
	spike := filepath.Join(dir, "latency")
	env := map[string]string{"LATENCY": "5ms", "LATENCY_FILE": spike}
	e, edge, host := analysisStack(t, env, "v2")
	l := startHeaderLoad(edge, host, "", 16)
	if err := os.WriteFile(spike, []byte("150ms"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := e.doDeploy("slipway/demo:v2", env, latencyCanary(3*time.Second, 1.5, 3))
	ro := e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	t.Logf("canary under the slowdown: %s", ro.GetMessage())
	waitServes(t, edge, host, "v2")
	t.Logf("answers %v", l.end())
	passed := 0
	for i, ev := range e.analysisEvents(v2) {
		a := ev.GetAnalysis()
		t.Logf("verdict %d: %s", i, ev.GetMessage())
		if a.GetResult() != deployv1.AnalysisResult_ANALYSIS_RESULT_PASS {
			continue
		}
		passed++
		if c, s := a.GetCanary().GetP99().AsDuration(), a.GetStable().GetP99().AsDuration(); c < 150*time.Millisecond || s < 150*time.Millisecond {
			t.Errorf("passing verdict %d: p99 canary %s stable %s, want both slowed past 150ms", i, c, s)
		}
	}
	if passed == 0 {
		t.Error("no passing verdict")
	}
}

// TestEngineAnalysisNoTrafficHolds: with no traffic at all, every window is
// inconclusive and no_data hold keeps the canary at its step (past its
// pause, weights unchanged); once requests arrive a window passes and the
// canary is promoted.
func TestEngineAnalysisNoTrafficHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	e, edge, host := analysisStack(t, nil, "v2")
	u := latencyCanary(time.Second, 10, 2)
	u.Canary.Analysis.Interval = durationpb.New(2 * time.Second)
	u.Canary.Analysis.NoData = deployv1.NoDataPolicy_NO_DATA_POLICY_HOLD
	v2 := e.doDeploy("slipway/demo:v2", nil, u)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.deploy.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: v2})
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for held < 3 {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		ev := msg.GetEvent()
		if ev.GetKind() != "analysis" {
			continue
		}
		t.Logf("verdict: %s", ev.GetMessage())
		if a := ev.GetAnalysis(); a.GetResult() != deployv1.AnalysisResult_ANALYSIS_RESULT_INCONCLUSIVE || a.GetCounted() != deployv1.AnalysisResult_ANALYSIS_RESULT_INCONCLUSIVE {
			t.Fatalf("verdict without traffic: %v, want inconclusive and held", a)
		}
		held++
	}
	cancel()
	if ro := e.rollout(v2); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_RUNNING || ro.GetStep() != 0 || e.weights() != "1:50 2:50" {
		t.Fatalf("after 3 held windows (6s, the pause 1s): %s step %d weights %s, want running at step 0, 1:50 2:50", ro.GetState(), ro.GetStep(), e.weights())
	}
	l := startHeaderLoad(edge, host, "", 4)
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	t.Logf("answers %v", l.end())
	verdicts := e.analysisEvents(v2)
	if last := verdicts[len(verdicts)-1].GetAnalysis(); last.GetResult() != deployv1.AnalysisResult_ANALYSIS_RESULT_PASS {
		t.Errorf("last verdict %v, want the pass that promoted it", last)
	}
}
