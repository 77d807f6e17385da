package grpcapi

import (
	"fmt"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// SetGateAllowlist bounds the URLs a Deploy may name: analysis gates
// (webhooks, Prometheus servers) and update hooks, every URL of a spec the
// leader sends requests to (the coordinator's -analysis-gate-allow); empty
// allows any.
func (a *API) SetGateAllowlist(l analysis.Allowlist) { a.gateAllow = l }

// gateViolations names every webhook URL and Prometheus address in s's
// analysis blocks, and every hook URL, that the allowlist refuses.
func gateViolations(l analysis.Allowlist, s *deployv1.ServiceSpec) []rpc.FieldViolation {
	if len(l) == 0 {
		return nil
	}
	u := s.GetUpdate()
	type block struct {
		path string
		a    *deployv1.Analysis
	}
	blocks := []block{{"spec.update.canary.analysis", u.GetCanary().GetAnalysis()},
		{"spec.update.blue_green.analysis", u.GetBlueGreen().GetAnalysis()}, {"spec.update.rolling.analysis", u.GetRolling().GetAnalysis()}}
	for i, st := range u.GetCanary().GetSteps() {
		blocks = append(blocks, block{fmt.Sprintf("spec.update.canary.steps[%d].analysis", i), st.GetAnalysis()})
	}
	var vs []rpc.FieldViolation
	for _, b := range blocks {
		for i, w := range b.a.GetWebhooks() {
			if !l.Allows(w.GetUrl()) {
				vs = append(vs, rpc.FieldViolation{Field: fmt.Sprintf("%s.webhooks[%d].url", b.path, i),
					Description: fmt.Sprintf("%q is outside the coordinator's -analysis-gate-allow", w.GetUrl())})
			}
		}
		for i, q := range b.a.GetPrometheus() {
			if !l.Allows(q.GetAddress()) {
				vs = append(vs, rpc.FieldViolation{Field: fmt.Sprintf("%s.prometheus[%d].address", b.path, i),
					Description: fmt.Sprintf("%q is outside the coordinator's -analysis-gate-allow", q.GetAddress())})
			}
		}
	}
	for i, h := range u.GetHooks() {
		if !l.Allows(h.GetUrl()) {
			vs = append(vs, rpc.FieldViolation{Field: fmt.Sprintf("spec.update.hooks[%d].url", i),
				Description: fmt.Sprintf("%q is outside the coordinator's -analysis-gate-allow", h.GetUrl())})
		}
	}
	return vs
}
