package engine_test

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// startStatusLoad sends requests through the edge until stopped and counts
// the answers per version and status ("v2 500").
func startStatusLoad(edge, host string, workers int) *headerLoad {
	return startHeaderLoad(edge, host, "", workers)
}

// analysisEvents reads a final rollout's events and returns its analysis
// verdicts in order.
func (e *e2e) analysisEvents(id string) []*deployv1.RolloutEvent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.deploy.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: id})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*deployv1.RolloutEvent
	for {
		msg, err := stream.Recv()
		if err != nil {
			return out
		}
		if ev := msg.GetEvent(); ev.GetKind() == "analysis" {
			out = append(out, ev)
		}
	}
}

// TestEngineAnalysisRevertsBadCanary runs a real coordinator, Consul, node
// agent (process driver) and an edge reporting its golden signals, under
// load: a canary answering 5% of its requests with 500 (its /healthz
// passing) is failed by analysis after failure_limit failed windows and
// reverted; a healthy canary with the same analysis passes and is promoted.
// The edge runs its built-in proxy, and in a second run nginx (signals
// counted by log_by_lua).
func TestEngineAnalysisRevertsBadCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	t.Run("proxy", func(t *testing.T) { testAnalysis(t, "proxy") })
	t.Run("nginx", func(t *testing.T) {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx not installed (make tools)")
		}
		testAnalysis(t, "nginx")
	})
}

func testAnalysis(t *testing.T, mode string) {
	c := testenv.StartConsul(t, testenv.ConsulACL())
	imgDir := t.TempDir()
	buildDemo(t, imgDir, "v1", "v2", "v3")
	co := coordtest.Start(t, c.Addr(), nil)
	flags := []string{"-coordinators", co.Config.GRPCAddr, "-signals-interval", "250ms", "-mode", mode}
	if mode == "nginx" {
		flags = append(flags, "-nginx-dir", t.TempDir(), "-nginx-control-addr", testenv.FreeAddr(t), "-nginx-workers", "1")
	}
	edge := startEdge(t, c.Addr(), flags...)
	startAgent(t, c.Addr(), imgDir)
	e := newE2E(t, co, c.Addr())
	host := e.name + ".test"

	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	waitServes(t, edge, host, "v1")

	const interval, limit = 2 * time.Second, 2
	canary := func() *deployv1.UpdateStrategy {
		return quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true,
			Canary: &deployv1.CanaryStrategy{
				// Errors decide here; latency on a shared 2-core machine is
				// too noisy for a tight ratio.
				Analysis: &deployv1.Analysis{Interval: durationpb.New(interval), MinRequests: 20, FailureLimit: limit,
					Compare: &deployv1.Comparison{MaxErrorRateIncrease: 1, MaxLatencyRatio: 10, Confidence: 0.99}},
				Steps: []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(interval)}, {Weight: 100, Analysis: &deployv1.Analysis{Disabled: true}}}}})
	}

	// A bad canary: 5% of its answers are 500s.
	l := startStatusLoad(edge, host, 4)
	v2 := e.doDeploy("slipway/demo:v2", map[string]string{"ERROR_RATE": "5"}, canary())
	began := time.Now()
	ro := e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, 90*time.Second)
	t.Logf("v2 reverted after %s: %s", time.Since(began).Round(time.Millisecond), ro.GetMessage())
	// The reverted canary drains: the edge may route to it until its
	// instance is deregistered, so the healthy run starts once v1 alone
	// answers.
	waitServesOnly(t, edge, host, "v1", 40)
	counts := l.end()
	t.Logf("answers during the bad canary: %v", counts)
	if counts["v2 500"] == 0 || counts["v1 500"] != 0 {
		t.Errorf("answers %v: want v2's injected 500s and none from v1", counts)
	}
	verdicts := e.analysisEvents(v2)
	if len(verdicts) != limit {
		t.Fatalf("%d analysis verdicts, want exactly failure_limit %d failed ones: %v", len(verdicts), limit, verdicts)
	}
	for i, ev := range verdicts {
		a := ev.GetAnalysis()
		if a.GetResult() != deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL || a.GetFailures() != int32(i+1) || a.GetFailureLimit() != limit {
			t.Errorf("verdict %d: %v, want failed %d/%d", i, a, i+1, limit)
		}
		if a.GetCanary().GetErrors() == 0 || a.GetStable().GetRequests() < 20 || a.GetCanaryRelease() != 2 || a.GetStableRelease() != 1 {
			t.Errorf("verdict %d evidence: canary %v stable %v", i, a.GetCanary(), a.GetStable())
		}
		if got := a.GetWindowEnd().AsTime().Sub(a.GetWindowStart().AsTime()); got != interval {
			t.Errorf("verdict %d window %s, want %s", i, got, interval)
		}
		t.Logf("verdict %d: %s", i, ev.GetMessage())
	}
	if len(verdicts) == limit {
		// Detected within failure_limit windows of the canary's weight
		// taking effect: the windows are consecutive.
		if verdicts[1].GetAnalysis().GetWindowStart().AsTime() != verdicts[0].GetAnalysis().GetWindowEnd().AsTime() {
			t.Errorf("failed windows are not consecutive: %v then %v", verdicts[0].GetAnalysis(), verdicts[1].GetAnalysis())
		}
	}

	// A healthy canary passes the same analysis and is promoted.
	l = startStatusLoad(edge, host, 4)
	v3 := e.doDeploy("slipway/demo:v3", nil, canary())
	e.waitState(v3, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	waitServes(t, edge, host, "v3")
	counts = l.end()
	t.Logf("answers during the healthy canary: %v", counts)
	for k, n := range counts {
		if k != "v1 200" && k != "v3 200" {
			t.Errorf("%d answers %q during the healthy canary", n, k)
		}
	}
	verdicts = e.analysisEvents(v3)
	if len(verdicts) == 0 {
		t.Fatal("no analysis verdict for the healthy canary")
	}
	last := verdicts[len(verdicts)-1].GetAnalysis()
	if last.GetResult() != deployv1.AnalysisResult_ANALYSIS_RESULT_PASS || last.GetCanary().GetRequests() < 20 {
		t.Errorf("the healthy canary's last verdict: %v", last)
	}
}
