package engine_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/engine"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestTemplateCarriesNamedPorts: the routed port stays in port and
// host_port (what Consul and the edges use), the others follow in ports,
// and the check names its port unless it is the routed one.
func TestTemplateCarriesNamedPorts(t *testing.T) {
	spec := &deployv1.ServiceSpec{Name: "web", Image: "demo:v1", RoutePort: "http",
		Ports: []*deployv1.Port{{Name: "metrics", Port: 9100, HostPort: 19100}, {Name: "http", Port: 8080, HostPort: 80}, {Name: "admin", Port: 9000}},
		Check: &deployv1.HealthCheck{Http: "/metrics", Port: "metrics"}}
	a := engine.Template(spec, 1, "stable")
	want := &agentv1.Allocation{Port: 8080, HostPort: 80, PortName: "http",
		Ports: []*agentv1.NamedPort{{Name: "metrics", Port: 9100, HostPort: 19100}, {Name: "admin", Port: 9000}}}
	got := &agentv1.Allocation{Port: a.GetPort(), HostPort: a.GetHostPort(), PortName: a.GetPortName(), Ports: a.GetPorts()}
	if !proto.Equal(got, want) {
		t.Errorf("template ports = %v, want %v", got, want)
	}
	if a.GetCheck().GetPort() != "metrics" {
		t.Errorf("check port = %q, want metrics", a.GetCheck().GetPort())
	}
	spec.Check.Port = "http"
	if p := engine.Template(spec, 1, "stable").GetCheck().GetPort(); p != "" {
		t.Errorf("a check of the routed port names %q, want the default", p)
	}
	// Without ports: as before, one unnamed port.
	b := engine.Template(&deployv1.ServiceSpec{Name: "web", Image: "demo:v1", Port: 8080}, 1, "stable")
	if b.GetPort() != 8080 || b.GetPortName() != "" || len(b.GetPorts()) != 0 || b.GetHostPort() != 0 {
		t.Errorf("single port template = %v", b)
	}
}

// TestStaticHostPortClash: two instances needing the same static host
// port (of a port that is not the routed one) never share a node: with one
// node the second is not placed and the reason says so; a second node
// takes it.
func TestStaticHostPortClash(t *testing.T) {
	h := newHarness(t, "n1")
	s := webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{}))
	s.Port = 0
	s.Ports = []*deployv1.Port{{Name: "http", Port: 8080}, {Name: "metrics", Port: 9100, HostPort: 19100}}
	id := h.deploy(s)
	h.pass()
	if n := len(h.allocs(1)); n != 0 {
		t.Fatalf("%d allocations placed on one node, want none (the plan is all or nothing)", n)
	}
	ev, _ := h.fsm.EventsAfter(id, 0)
	var reason string
	for _, e := range ev.Events {
		if e.GetKind() == "placement_failed" {
			reason = e.GetMessage()
		}
	}
	if !strings.Contains(reason, "port") {
		t.Fatalf("placement_failed event %q, want a host port clash", reason)
	}
	h.nodes.set(engine.Node{ID: "n1", Addr: "n1:7410", CPU: 4000, MemoryMB: 4096, Driver: "process"},
		engine.Node{ID: "n2", Addr: "n2:7410", CPU: 4000, MemoryMB: 4096, Driver: "process"})
	h.run(500*time.Millisecond, "v1 succeeded on two nodes", h.phase(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	as := h.allocs(1)
	if len(as) != 2 || as[0].GetNodeId() == as[1].GetNodeId() {
		t.Fatalf("allocations = %v, want 2 on distinct nodes", as)
	}
	for _, a := range as {
		if a.GetPortName() != "http" || a.GetPort() != 8080 || len(a.GetPorts()) != 1 || a.GetPorts()[0].GetHostPort() != 19100 {
			t.Errorf("allocation ports = %v %d %v", a.GetPortName(), a.GetPort(), a.GetPorts())
		}
	}
}
