package consul

import (
	"context"
	"strings"
	"testing"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/testenv"
)

// TestRegisterNamedPorts: an instance with named ports is registered with
// the routed host port as the service port, every port as port_<name>
// meta, and its check on the port the check names; a single unnamed port
// gets no port meta.
func TestRegisterNamedPorts(t *testing.T) {
	if testing.Short() {
		t.Skip("real Consul; skipped by -short")
	}
	t.Parallel()
	c := testenv.StartConsul(t)
	r, err := New(c.Addr(), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := allocation.Spec{ID: "p1", Service: "web", Release: 1, Track: "stable", Port: 8080, PortName: "http",
		Ports: []allocation.Port{{Name: "metrics", Port: 9100}}, Check: allocation.Check{HTTP: "/healthz", Port: "metrics"}}
	inst := allocation.Instance{HostPort: 31000, HostPorts: map[int]int{8080: 31000, 9100: 31001}}
	if err := r.Register(ctx, s, inst, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	single := allocation.Spec{ID: "p2", Service: "web", Release: 1, Track: "stable", Port: 8080, Check: allocation.Check{TCP: true}}
	if err := r.Register(ctx, single, allocation.Instance{HostPort: 31002}, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	svcs, err := r.Client().Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	got := svcs["p1"]
	if got == nil || got.Port != 31000 || got.Meta["port_http"] != "31000" || got.Meta["port_metrics"] != "31001" {
		t.Fatalf("registration %+v, want port 31000, port_http=31000, port_metrics=31001", got)
	}
	for k := range svcs["p2"].Meta {
		if strings.HasPrefix(k, "port_") {
			t.Errorf("a single unnamed port has meta %s", k)
		}
	}
	// Consul's check probes the metrics port: its output names the URL
	// once it has run (whatever it answers).
	testenv.Until(t, 10*time.Second, "check p1 probing :31001", func() string {
		checks, err := r.Client().Agent().Checks()
		if err != nil {
			return err.Error()
		}
		ch := checks["p1:check"]
		if ch == nil {
			return "no check p1:check"
		}
		if !strings.Contains(ch.Output, "127.0.0.1:31001/healthz") {
			return "output " + ch.Output
		}
		return ""
	})
}
