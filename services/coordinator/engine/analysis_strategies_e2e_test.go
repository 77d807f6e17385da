package engine_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// analysisStack is a real Consul, coordinator, process-driver node agent
// and an edge (built-in proxy) reporting its golden signals, with v1 of a
// service deployed and serving (with v1env).
func analysisStack(t *testing.T, v1env map[string]string, versions ...string) (e *e2e, edge, host string) {
	t.Helper()
	c := testenv.StartConsul(t, testenv.ConsulACL())
	imgDir := t.TempDir()
	buildDemo(t, imgDir, append([]string{"v1"}, versions...)...)
	co := coordtest.Start(t, c.Addr(), nil)
	edge = startEdge(t, c.Addr(), "-coordinators", co.Config.GRPCAddr, "-signals-interval", "250ms")
	startAgent(t, c.Addr(), imgDir)
	e = newE2E(t, co, c.Addr())
	host = e.name + ".test"
	v1 := e.doDeploy("slipway/demo:v1", v1env, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	waitServes(t, edge, host, "v1")
	return e, edge, host
}

// headerLoad sends requests through the edge, each with header (when set),
// until stopped, and counts the answers per version and status.
type headerLoad struct {
	mu     sync.Mutex
	counts map[string]int // "v2 500"
	stop   chan struct{}
	done   sync.WaitGroup
}

func startHeaderLoad(edge, host, header string, workers int) *headerLoad {
	l := &headerLoad{counts: map[string]int{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	for range workers {
		l.done.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+edge+"/", nil)
				req.Host = host
				if header != "" {
					req.Header.Set(header, "1")
				}
				resp, err := client.Do(req)
				key := "error"
				if err == nil {
					key = fmt.Sprintf("%s %d", resp.Header.Get("X-Slipway-Version"), resp.StatusCode)
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				l.mu.Lock()
				l.counts[key]++
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *headerLoad) end() map[string]int {
	close(l.stop)
	l.done.Wait()
	return l.counts
}

// badAnalysis is the analysis both tests use: 2 s windows, 2 failed ones
// fail the rollout; errors decide (latency is too noisy here for a tight
// ratio).
func badAnalysis() *deployv1.Analysis {
	return &deployv1.Analysis{Interval: durationpb.New(2 * time.Second), MinRequests: 20, FailureLimit: 2,
		SuccessRate: &deployv1.SuccessRateThreshold{Min: 99},
		Compare:     &deployv1.Comparison{MaxErrorRateIncrease: 1, MaxLatencyRatio: 10, Confidence: 0.99}}
}

// checkFailedVerdicts asserts that the rollout's analysis verdicts are
// exactly failure_limit failed ones, of canary against stable.
func checkFailedVerdicts(t *testing.T, e *e2e, id string, canary, stable uint64) []*deployv1.RolloutEvent {
	t.Helper()
	verdicts := e.analysisEvents(id)
	if len(verdicts) != 2 {
		t.Fatalf("%d analysis verdicts, want exactly failure_limit 2 failed ones: %v", len(verdicts), verdicts)
	}
	for i, ev := range verdicts {
		a := ev.GetAnalysis()
		t.Logf("verdict %d: %s", i, ev.GetMessage())
		if a.GetResult() != deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL || a.GetFailures() != int32(i+1) {
			t.Errorf("verdict %d: %v, want failed %d/2", i, a, i+1)
		}
		if a.GetCanaryRelease() != canary || a.GetStableRelease() != stable || a.GetCanary().GetErrors() == 0 || a.GetStable().GetRequests() < 20 {
			t.Errorf("verdict %d evidence: #%d %v against #%d %v", i, a.GetCanaryRelease(), a.GetCanary(), a.GetStableRelease(), a.GetStable())
		}
	}
	return verdicts
}

// TestEngineAnalysisFailsBadPreview: a blue/green preview whose new colour
// answers 5% of requests with 500 (its /healthz passing) is judged on the
// requests the preview header routes to it, failed after failure_limit
// windows and reverted, with auto_promote never switching: no request
// without the header ever reached it.
func TestEngineAnalysisFailsBadPreview(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	e, edge, host := analysisStack(t, nil, "v2")
	users := startHeaderLoad(edge, host, "", 2)
	testers := startHeaderLoad(edge, host, "X-Slipway-Preview", 2)
	v2 := e.doDeploy("slipway/demo:v2", map[string]string{"ERROR_RATE": "5"}, quick(&deployv1.UpdateStrategy{
		Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN, AutoRevert: true, AutoPromote: true,
		BlueGreen: &deployv1.BlueGreenStrategy{Analysis: badAnalysis()}}))
	ro := e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, 90*time.Second)
	t.Logf("preview reverted: %s", ro.GetMessage())
	waitServes(t, edge, host, "v1")
	seen, tested := users.end(), testers.end()
	t.Logf("answers without the header %v, with it %v", seen, tested)
	for k, n := range seen {
		if k != "v1 200" {
			t.Errorf("%d answers %q without the preview header: the preview was switched to or failed users", n, k)
		}
	}
	if tested["v2 500"] == 0 {
		t.Errorf("answers with the preview header %v: want v2's injected 500s", tested)
	}
	for _, ev := range checkFailedVerdicts(t, e, v2, 2, 1) {
		// The canary's requests are the preview's: at most what the
		// testers got from v2.
		if got, max := ev.GetAnalysis().GetCanary().GetRequests(), uint64(tested["v2 200"]+tested["v2 500"]); got > max {
			t.Errorf("verdict counts %d requests of #2, more than the %d preview requests sent", got, max)
		}
	}
}

// TestEngineAnalysisFailsBadBatch: a rolling update whose new release
// answers 5% of requests with 500 is judged after its first batch (both
// releases serving), failed after failure_limit windows before the second
// batch is placed, and reverted: the drained old instance is restored and
// all traffic returns to it.
func TestEngineAnalysisFailsBadBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	testBadBatch(t, &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING, MaxParallel: 1, AutoRevert: true,
		Rolling: &deployv1.RollingStrategy{Analysis: badAnalysis()}}, "batch 1/2")
}

// TestEngineAnalysisFailsBadSurgeBatch: the same bad release in a rolling
// update bounded by max_surge: its first (surge) batch is judged once
// healthy and routed, failed after failure_limit windows before the second
// batch is placed, and reverted.
func TestEngineAnalysisFailsBadSurgeBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	testBadBatch(t, &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING, MaxSurge: "1", MaxUnavailable: "0", AutoRevert: true,
		Rolling: &deployv1.RollingStrategy{Analysis: badAnalysis()}}, "batch 1:")
}

func testBadBatch(t *testing.T, u *deployv1.UpdateStrategy, firstBatch string) {
	e, edge, host := analysisStack(t, nil, "v2")
	l := startHeaderLoad(edge, host, "", 4)
	v2 := e.doDeploy("slipway/demo:v2", map[string]string{"ERROR_RATE": "5"}, quick(u))
	ro := e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, 90*time.Second)
	t.Logf("rolling update reverted: %s", ro.GetMessage())
	waitServes(t, edge, host, "v1")
	counts := l.end()
	t.Logf("answers %v", counts)
	if counts["v2 500"] == 0 || counts["v1 500"] != 0 || counts["error"] != 0 {
		t.Errorf("answers %v: want v2's injected 500s, none from v1 and no failed request", counts)
	}
	checkFailedVerdicts(t, e, v2, 2, 1)
	for _, ev := range eventsOf(t, e, v2, "step") {
		t.Logf("step: %s", ev.GetMessage())
		if !strings.Contains(ev.GetMessage(), firstBatch) {
			t.Errorf("step %q: only the first batch should have moved traffic", ev.GetMessage())
		}
	}
}

// eventsOf reads a final rollout's events of one kind.
func eventsOf(t *testing.T, e *e2e, id, kind string) []*deployv1.RolloutEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.deploy.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	var out []*deployv1.RolloutEvent
	for {
		msg, err := stream.Recv()
		if err != nil {
			return out
		}
		if ev := msg.GetEvent(); ev.GetKind() == kind {
			out = append(out, ev)
		}
	}
}
