package rollout_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/platform/spec"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func canarySpec(a *deployv1.Analysis, stepAnalysis ...*deployv1.Analysis) *deployv1.ServiceSpec {
	s := &deployv1.ServiceSpec{Name: "web", Image: "slipway/demo:v2", Count: 2, Port: 8080,
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, Canary: &deployv1.CanaryStrategy{Analysis: a,
			Steps: []*deployv1.CanaryStep{{Weight: 10, Pause: dur(30 * time.Second)}, {Weight: 50, Pause: dur(30 * time.Second)}, {Weight: 100}}}}}
	for i, sa := range stepAnalysis {
		s.Update.Canary.Steps[i].Analysis = sa
	}
	return s
}

// The spec's documented defaults are the analysis package's.
func TestAnalysisDefaultsAgree(t *testing.T) {
	if spec.DefaultAnalysisInterval != analysis.DefaultInterval || spec.DefaultMinRequests != analysis.DefaultMinRequests ||
		spec.DefaultFailureLimit != analysis.DefaultFailureLimit || spec.DefaultMaxErrorRateIncrease != analysis.DefaultMaxErrorRateIncrease ||
		spec.DefaultMaxLatencyRatio != analysis.DefaultMaxLatencyRatio || spec.DefaultConfidence != analysis.DefaultConfidence {
		t.Error("platform/spec's analysis defaults differ from package analysis's")
	}
}

// Normalize fills the defaults, and the rollout machine's config resolves a
// step's own analysis over the canary-level one (disabled: none).
func TestAnalysisDefaultsAndPerStep(t *testing.T) {
	n := spec.Normalize(canarySpec(&deployv1.Analysis{SuccessRate: &deployv1.SuccessRateThreshold{Min: 99}}, nil,
		&deployv1.Analysis{Disabled: true}, &deployv1.Analysis{FailureLimit: 5, Compare: &deployv1.Comparison{Confidence: 0.99}}))
	want := &deployv1.Analysis{Interval: dur(10 * time.Second), MinRequests: 100, FailureLimit: 2, NoData: deployv1.NoDataPolicy_NO_DATA_POLICY_HOLD,
		SuccessRate: &deployv1.SuccessRateThreshold{Min: 99}}
	if diff := cmp.Diff(want, n.GetUpdate().GetCanary().GetAnalysis(), protocmp.Transform()); diff != "" {
		t.Errorf("normalized analysis (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(n, spec.Normalize(n), protocmp.Transform()); diff != "" {
		t.Errorf("Normalize is not idempotent:\n%s", diff)
	}
	cfg, err := rollout.ConfigFromSpec(n.GetUpdate())
	if err != nil {
		t.Fatal(err)
	}
	s0, s1, s2 := cfg.Steps[0].Analysis, cfg.Steps[1].Analysis, cfg.Steps[2].Analysis
	if s0 == nil || s0.SuccessRateMin != 99 || s0.Compare != nil || s0.FailureLimit != 2 {
		t.Errorf("step 0 (canary-level analysis): %+v", s0)
	}
	if s1 != nil {
		t.Errorf("step 1 disabled its analysis, got %+v", s1)
	}
	if s2 == nil || s2.FailureLimit != 5 || s2.Compare == nil || s2.Compare.Confidence != 0.99 || s2.Compare.MaxLatencyRatio != 1.3 || s2.SuccessRateMin != 0 {
		t.Errorf("step 2 (its own analysis, defaults filled): %+v %+v", s2, s2.Compare)
	}
}

// A blue/green preview's and a rolling update's analysis reach the machine
// with their defaults; each belongs to its strategy only.
func TestAnalysisOfPreviewsAndBatches(t *testing.T) {
	for _, tc := range []struct {
		name string
		u    *deployv1.UpdateStrategy
	}{
		{"blue_green", &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN,
			BlueGreen: &deployv1.BlueGreenStrategy{Analysis: &deployv1.Analysis{SuccessRate: &deployv1.SuccessRateThreshold{Min: 99}}}}},
		{"rolling", &deployv1.UpdateStrategy{Rolling: &deployv1.RollingStrategy{Analysis: &deployv1.Analysis{SuccessRate: &deployv1.SuccessRateThreshold{Min: 99}}}}},
	} {
		s := canarySpec(nil)
		s.Update = tc.u
		if vs := spec.Validate(s); len(vs) != 0 {
			t.Fatalf("%s: %v", tc.name, vs)
		}
		cfg, err := rollout.ConfigFromSpec(spec.Normalize(s).GetUpdate())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if a := cfg.Analysis; a == nil || a.SuccessRateMin != 99 || a.Interval != 10*time.Second || a.FailureLimit != 2 {
			t.Errorf("%s: analysis %+v", tc.name, a)
		}
	}
	s := canarySpec(nil)
	s.Update = &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		BlueGreen: &deployv1.BlueGreenStrategy{Analysis: &deployv1.Analysis{}}, Rolling: &deployv1.RollingStrategy{Analysis: &deployv1.Analysis{}}}
	vs := spec.Validate(s)
	if len(vs) != 2 || vs[0].Field != "spec.update.blue_green.analysis" || vs[1].Field != "spec.update.rolling.analysis" {
		t.Errorf("preview and batch analysis under a canary: %v, want two violations naming them", vs)
	}
}
