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
		Confidence:   0.3,
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
		"spec.update.canary.analysis.confidence",
	} {
		if !got[f] {
			t.Errorf("no violation for %s (got %v)", f, got)
		}
	}
	hooks := &deployv1.Analysis{Webhooks: []*deployv1.WebhookGate{
		{Name: "gate", Url: "https://ci.example/gate", Timeout: dur(time.Second)},
		{Name: "gate", Url: "ftp://x", Timeout: dur(time.Minute), Retries: 9},
		{Name: "Bad_Name", Url: "/relative"},
	}}
	got = map[string]bool{}
	for _, v := range Validate(canarySpec(hooks)) {
		got[v.Field] = true
	}
	for _, f := range []string{"webhooks[1].name", "webhooks[1].url", "webhooks[1].timeout", "webhooks[1].retries", "webhooks[2].name", "webhooks[2].url"} {
		if !got["spec.update.canary.analysis."+f] {
			t.Errorf("no violation for %s (got %v)", f, got)
		}
	}
	if got["spec.update.canary.analysis.webhooks[0].name"] || got["spec.update.canary.analysis.webhooks[0].url"] {
		t.Errorf("the valid webhook was refused: %v", got)
	}
	one, nan := 1.0, math.NaN()
	proms := &deployv1.Analysis{Prometheus: []*deployv1.PrometheusGate{
		{Name: "p", Address: "http://prom:9090", Query: "up", Max: &one},
		{Name: "q", Address: "prom:9090", Query: "", Min: &nan},
		{Name: "r", Address: "http://prom:9090", Query: "up"},
	}}
	got = map[string]bool{}
	for _, v := range Validate(canarySpec(proms)) {
		got[v.Field] = true
	}
	for _, f := range []string{"prometheus[1].address", "prometheus[1].query", "prometheus[1].min", "prometheus[2]"} {
		if !got["spec.update.canary.analysis."+f] {
			t.Errorf("no violation for %s (got %v)", f, got)
		}
	}
	if got["spec.update.canary.analysis.prometheus[0].address"] || got["spec.update.canary.analysis.prometheus[0]"] {
		t.Errorf("the valid query was refused: %v", got)
	}
	n := Normalize(canarySpec(&deployv1.Analysis{Webhooks: []*deployv1.WebhookGate{{Name: "gate", Url: "http://x/"}}}))
	if a := n.GetUpdate().GetCanary().GetAnalysis(); a.GetCompare() != nil || a.GetWebhooks()[0].GetTimeout().AsDuration() != 5*time.Second {
		t.Errorf("a webhook-only analysis normalized to %v; want no default comparison and a 5s timeout", a)
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

func TestValidateHooks(t *testing.T) {
	s := canarySpec(nil)
	s.Update.Hooks = []*deployv1.Hook{
		{Name: "smoke", Type: deployv1.HookType_HOOK_TYPE_PRE_ROLLOUT, Url: "https://ci.example/smoke"},
		{Name: "confirm", Type: deployv1.HookType_HOOK_TYPE_CONFIRM_PROMOTION, Url: "http://gate:8080/ok", Timeout: dur(time.Second), Retries: 2, Interval: dur(5 * time.Second)},
		{Name: "smoke", Type: deployv1.HookType_HOOK_TYPE_UNSPECIFIED, Url: "ftp://x", Timeout: dur(time.Minute), Retries: 6, Interval: dur(time.Millisecond)},
	}
	got := map[string]bool{}
	for _, v := range Validate(s) {
		got[v.Field] = true
	}
	for _, f := range []string{"name", "type", "url", "timeout", "retries", "interval"} {
		if !got["spec.update.hooks[2]."+f] {
			t.Errorf("no violation for hooks[2].%s (got %v)", f, got)
		}
	}
	for f := range got {
		if f != "" && (len(f) > 17 && f[:17] == "spec.update.hooks" && f[18] != '2') {
			t.Errorf("a valid hook was refused: %s", f)
		}
	}
	// rollout hooks need canary steps or rolling batches; confirm_promotion
	// a promotion.
	r := valid()
	r.Update = &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING, Hooks: []*deployv1.Hook{
		{Name: "step", Type: deployv1.HookType_HOOK_TYPE_ROLLOUT, Url: "http://h/x"},
		{Name: "confirm", Type: deployv1.HookType_HOOK_TYPE_CONFIRM_PROMOTION, Url: "http://h/x"},
		{Name: "post", Type: deployv1.HookType_HOOK_TYPE_POST_ROLLOUT, Url: "http://h/x"},
	}}
	got = map[string]bool{}
	for _, v := range Validate(r) {
		got[v.Field] = true
	}
	if got["spec.update.hooks[0].type"] || !got["spec.update.hooks[1].type"] || got["spec.update.hooks[2].type"] {
		t.Errorf("rolling hooks: violations %v, want hooks[1].type only (rollout hooks gate rolling batches)", got)
	}
	// Blue/green has no steps or batches for a rollout hook to gate.
	r.Update.Strategy = deployv1.Strategy_STRATEGY_BLUE_GREEN
	got = map[string]bool{}
	for _, v := range Validate(r) {
		got[v.Field] = true
	}
	if !got["spec.update.hooks[0].type"] || got["spec.update.hooks[1].type"] {
		t.Errorf("blue/green hooks: violations %v, want hooks[0].type only", got)
	}
}

// rollback_window.releases is 0 to MaxRollbackWindow; unset reads as the
// default.
func TestValidateRollbackWindow(t *testing.T) {
	s := canarySpec(nil)
	if got := RollbackWindow(s.GetUpdate()); got != int(DefaultRollbackWindow) {
		t.Errorf("unset window reads %d, want %d", got, DefaultRollbackWindow)
	}
	for _, n := range []int32{-1, MaxRollbackWindow + 1} {
		s.Update.RollbackWindow = &deployv1.RollbackWindow{Releases: n}
		if vs := Validate(s); len(vs) != 1 || vs[0].Field != "spec.update.rollback_window.releases" {
			t.Errorf("window %d: %v, want one violation naming spec.update.rollback_window.releases", n, vs)
		}
	}
	s.Update.RollbackWindow = &deployv1.RollbackWindow{}
	if vs := Validate(s); len(vs) != 0 || RollbackWindow(s.GetUpdate()) != 0 {
		t.Errorf("window 0 (off): %v, reads %d", vs, RollbackWindow(s.GetUpdate()))
	}
}

// rolling.analysis judges max_surge batches too: accepted beside max_surge
// and max_unavailable.
func TestValidateRollingAnalysisWithSurge(t *testing.T) {
	r := valid()
	r.Update = &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING, MaxSurge: "25%", MaxUnavailable: "0",
		Rolling: &deployv1.RollingStrategy{Analysis: &deployv1.Analysis{SuccessRate: &deployv1.SuccessRateThreshold{Min: 99}}}}
	if vs := Validate(r); len(vs) != 0 {
		t.Errorf("rolling.analysis with max_surge refused: %v", vs)
	}
}
