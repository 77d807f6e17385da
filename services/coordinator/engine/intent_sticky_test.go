package engine_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/rollout"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestIntentCarriesStickinessAndHeaderRoutes: a sticky canary's intent
// names its cookie and max age, and the machine's header-route pins keep
// their cookie and value.
func TestIntentCarriesStickinessAndHeaderRoutes(t *testing.T) {
	spec := &deployv1.ServiceSpec{Name: "web", Route: &deployv1.Route{Host: "web.test", Path: "/"},
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
			Canary: &deployv1.CanaryStrategy{Sticky: &deployv1.Stickiness{Enabled: true, MaxAge: durationpb.New(time.Hour)}}}}
	in := engine.Intent("web", spec, rollout.Traffic{Generation: 3, Weights: map[uint64]int{1: 90, 2: 10},
		Pins: []rollout.Pin{{Cookie: "beta", Value: "1", Release: 2}, {Header: "X-Canary", Release: 2}}})
	if st := in.GetSticky(); st.GetCookie() != "slipway-web" || st.GetMaxAgeSeconds() != 3600 {
		t.Errorf("sticky = %v, want slipway-web for 3600s", st)
	}
	if p := in.GetPins(); len(p) != 2 || p[0].GetCookie() != "beta" || p[0].GetValue() != "1" || p[1].GetHeader() != "X-Canary" || p[1].GetRelease() != 2 {
		t.Errorf("pins = %v", p)
	}
	spec.Update.Strategy = deployv1.Strategy_STRATEGY_ROLLING
	if in := engine.Intent("web", spec, rollout.Traffic{Weights: map[uint64]int{1: 100}}); in.GetSticky() != nil {
		t.Errorf("a rolling update's intent is sticky: %v", in.GetSticky())
	}
}

// TestVolumeConstraints: a service with named volumes runs on docker
// nodes, and on the nodes that hold its volumes once it ran somewhere.
func TestVolumeConstraints(t *testing.T) {
	vols := []*agentv1.Volume{{Name: "data", ContainerPath: "/data"}}
	got := engine.VolumeConstraints("db", vols, nil)
	if len(got) != 1 || got[0].Attribute != "node.driver" || got[0].Value != "docker" {
		t.Fatalf("first placement constraints = %v, want docker only", got)
	}
	allocs := []*agentv1.Allocation{
		{Service: "db", NodeId: "n.2", Volumes: vols},
		{Service: "db", NodeId: "n1", Volumes: vols},
		{Service: "db", NodeId: "n3"},                 // a release without the volume
		{Service: "web", NodeId: "n4", Volumes: vols}, // another service's volume
	}
	got = engine.VolumeConstraints("db", vols, allocs)
	if len(got) != 2 || got[1].Attribute != "node.id" || got[1].Operator != "regexp" || got[1].Value != `^(n\.2|n1)$` {
		t.Fatalf("constraints = %v, want node.id ^(n\\.2|n1)$", got)
	}
}

// TestTemplateCarriesContainerFields: entrypoint, labels, stop signal and
// volumes reach the allocation the agent runs.
func TestTemplateCarriesContainerFields(t *testing.T) {
	a := engine.Template(&deployv1.ServiceSpec{Name: "web", Image: "demo:v1", Port: 80, Entrypoint: []string{"/demo"},
		Labels: map[string]string{"team": "a"}, StopSignal: "SIGINT",
		Volumes: []*deployv1.VolumeMount{{Name: "data", Target: "/data", ReadOnly: true}}}, 1, "stable")
	if len(a.GetEntrypoint()) != 1 || a.GetLabels()["team"] != "a" || a.GetStopSignal() != "SIGINT" ||
		len(a.GetVolumes()) != 1 || a.GetVolumes()[0].GetContainerPath() != "/data" || !a.GetVolumes()[0].GetReadOnly() {
		t.Fatalf("template %v", a)
	}
}

// TestTemplateCarriesStartPeriod: the check's start period reaches the
// allocation the agent runs.
func TestTemplateCarriesStartPeriod(t *testing.T) {
	a := engine.Template(&deployv1.ServiceSpec{Name: "web", Image: "demo:v1", Port: 80,
		Check: &deployv1.HealthCheck{Http: "/healthz", StartPeriod: durationpb.New(7 * time.Second)}}, 1, "stable")
	if got := a.GetCheck().GetStartPeriod().AsDuration(); got != 7*time.Second {
		t.Fatalf("allocation check start period = %s, want 7s", got)
	}
}
