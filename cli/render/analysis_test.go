package render

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestAnalysisEventShowsItsEvidence(t *testing.T) {
	at := time.Date(2026, 12, 2, 0, 56, 53, 0, time.UTC)
	fail := deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL
	ev := &deployv1.RolloutEvent{Kind: "analysis", At: timestamppb.New(at), State: deployv1.RolloutState_ROLLOUT_STATE_RUNNING,
		Message: "the long message with every number",
		Analysis: &deployv1.AnalysisVerdict{Result: fail, Counted: fail, Failures: 1, FailureLimit: 2,
			Reason:      "compare.error_rate: canary 4.97% vs stable 0.00%",
			WindowStart: timestamppb.New(at.Add(-2 * time.Second)), WindowEnd: timestamppb.New(at),
			CanaryRelease: 2, StableRelease: 1,
			Canary: &deployv1.SignalSummary{Requests: 2616, Errors: 130, ErrorRate: 4.97, P50: durationpb.New(200 * time.Microsecond), P99: durationpb.New(1800 * time.Microsecond)},
			Stable: &deployv1.SignalSummary{Requests: 2616, P50: durationpb.New(200 * time.Microsecond), P99: durationpb.New(3900 * time.Microsecond)},
			Checks: []*deployv1.AnalysisCheck{{Name: "compare.error_rate", Result: fail, Test: "two_proportion_z", PValue: 3.9e-31,
				Detail: "canary 4.97% vs stable 0.00% (+4.97 points, max +1.00), two_proportion_z p=3.9e-31 < 0.01"}}}}
	line := EventLine(ev, 2)
	if !strings.Contains(line, "analysis fail 1/2: compare.error_rate: canary 4.97% vs stable 0.00%") || strings.Contains(line, "long message") {
		t.Errorf("event line %q: want the verdict's summary instead of its long message", line)
	}
	var b bytes.Buffer
	NewProgress(&b, false, time.Now).Event(&deployv1.WatchRolloutResponse{Event: ev})
	out := b.String()
	for _, want := range []string{"canary #2      2616 req    130 err   4.97%  p50 200µs  p99 1.8ms", "stable #1      2616 req      0 err", "compare.error_rate fail", "two_proportion_z p=3.9e-31"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch output lacks %q:\n%s", want, out)
		}
	}
}
