package spec

import (
	"math"
	"testing"
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func canarySpec(a *deployv1.Analysis, stepAnalysis ...*deployv1.Analysis) *deployv1.ServiceSpec {
	s := valid()
	s.Update = &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, Canary: &deployv1.CanaryStrategy{Analysis: a,
		Steps: []*deployv1.CanaryStep{{Weight: 10, Pause: dur(30 * time.Second)}, {Weight: 50, Pause: dur(30 * time.Second)}, {Weight: 100}}}}
	for i, sa := range stepAnalysis {
		s.Update.Canary.Steps[i].Analysis = sa
	}
	return s
}

func TestValidateAnalysis(t *testing.T) {
	bad := &deployv1.Analysis{
		Interval:     dur(500 * time.Millisecond),
		FailureLimit: -1,
		NoData:       deployv1.NoDataPolicy(9),
		SuccessRate:  &deployv1.SuccessRateThreshold{Min: math.NaN()},
		LatencyP99:   &deployv1.LatencyThreshold{},
		Compare:      &deployv1.Comparison{MaxErrorRateIncrease: -1, MaxLatencyRatio: 0.5, Confidence: 1},
	}
	got := map[string]bool{}
	for _, v := range Validate(canarySpec(bad, nil, &deployv1.Analysis{SuccessRate: &deployv1.SuccessRateThreshold{Min: 101}})) {
		got[v.Field] = true
	}
	for _, f := range []string{
		"spec.update.canary.analysis.interval", "spec.update.canary.analysis.failure_limit", "spec.update.canary.analysis.no_data",
		"spec.update.canary.analysis.success_rate.min", "spec.update.canary.analysis.latency_p99.max",
		"spec.update.canary.analysis.compare.max_error_rate_increase", "spec.update.canary.analysis.compare.max_latency_ratio",
		"spec.update.canary.analysis.compare.confidence", "spec.update.canary.steps[1].analysis.success_rate.min",
	} {
		if !got[f] {
			t.Errorf("no violation for %s (got %v)", f, got)
		}
	}
	if vs := Validate(canarySpec(&deployv1.Analysis{SuccessRate: &deployv1.SuccessRateThreshold{Min: 99}})); len(vs) != 0 {
		t.Errorf("a valid analysis: %v", vs)
	}
	rolling := canarySpec(&deployv1.Analysis{})
	rolling.Update.Strategy = deployv1.Strategy_STRATEGY_ROLLING
	if vs := Validate(rolling); len(vs) != 1 || vs[0].Field != "spec.update.canary.analysis" {
		t.Errorf("analysis on a rolling update: %v, want one violation naming spec.update.canary.analysis", vs)
	}
}
