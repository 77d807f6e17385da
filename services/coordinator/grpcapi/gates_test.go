package grpcapi

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/analysis"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Deploy refuses, before anything is proposed, a spec whose analysis gates
// or hooks reach outside -analysis-gate-allow, naming each field.
func TestDeployRefusesGatesOutsideAllowlist(t *testing.T) {
	allow, err := analysis.ParseAllowlist("https://ci.example.com/gates/")
	if err != nil {
		t.Fatal(err)
	}
	min := 1.0
	gates := func(url string) *deployv1.Analysis {
		return &deployv1.Analysis{Webhooks: []*deployv1.WebhookGate{{Name: "ci", Url: url}},
			Prometheus: []*deployv1.PrometheusGate{{Name: "errors", Address: "http://169.254.169.254/", Query: "up", Min: &min}}}
	}
	sp := &deployv1.ServiceSpec{Name: "web", Image: "slipway/demo:v1", Count: 2, Port: 8080,
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, Canary: &deployv1.CanaryStrategy{
			Analysis: gates("https://ci.example.com/gates/canary"),
			Steps:    []*deployv1.CanaryStep{{Weight: 50, Analysis: gates("http://10.0.0.1/admin")}, {Weight: 100}}},
			Hooks: []*deployv1.Hook{{Name: "ok", Type: deployv1.HookType_HOOK_TYPE_ROLLOUT, Url: "https://ci.example.com/gates/step"},
				{Name: "meta", Type: deployv1.HookType_HOOK_TYPE_ROLLBACK, Url: "http://169.254.169.254/latest"}}}}
	s := &deployServer{a: &API{gateAllow: allow}}
	_, err = s.Deploy(context.Background(), &deployv1.DeployRequest{Spec: sp})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Deploy: %v, want InvalidArgument", err)
	}
	for _, f := range []string{"spec.update.canary.analysis.prometheus[0].address", "spec.update.canary.steps[0].analysis.webhooks[0].url",
		"spec.update.canary.steps[0].analysis.prometheus[0].address", "spec.update.hooks[1].url"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("the refusal does not name %s: %v", f, err)
		}
	}
	if strings.Contains(err.Error(), "spec.update.canary.analysis.webhooks[0].url") || strings.Contains(err.Error(), "spec.update.hooks[0].url") {
		t.Errorf("an allowed URL is named: %v", err)
	}
	if vs := gateViolations(nil, sp); len(vs) != 0 {
		t.Errorf("no allowlist: %v", vs)
	}
}
