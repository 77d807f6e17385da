package allocation

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNamedPorts: the agent checks an allocation's named ports by the
// rule Deploy uses, and resolves each name (the check's too) to the
// instance's host port.
func TestNamedPorts(t *testing.T) {
	good := Spec{ID: "web-1", NodeID: "n1", Service: "web", Image: "slipway/demo:v1", MemoryMB: 64,
		Port: 8080, PortName: "http", Ports: []Port{{Name: "metrics", Port: 9100, HostPort: 19100}},
		Check: Check{HTTP: "/healthz", Port: "metrics"}}
	if vs := good.Validate("n1"); len(vs) != 0 {
		t.Fatalf("good spec: %v", vs)
	}
	inst := Instance{HostPort: 32000, HostPorts: map[int]int{8080: 32000, 9100: 19100}}
	if got := good.CheckHostPort(inst); got != 19100 {
		t.Errorf("check host port %d, want 19100 (metrics)", got)
	}
	for name, want := range map[string]int{"": 32000, "http": 32000, "metrics": 19100, "nope": 0} {
		if got := good.HostPortOf(inst, name); got != want {
			t.Errorf("HostPortOf(%q) = %d, want %d", name, got, want)
		}
	}
	bad := good
	bad.PortName = ""
	bad.Ports = []Port{{Name: "metrics", Port: 8080, HostPort: 70000}, {Name: "metrics", Port: 9100}}
	bad.Check.Port = "admin"
	bad.Env = map[string]string{"PORT_METRICS": "1"}
	var fields []string
	for _, v := range bad.Validate("n1") {
		fields = append(fields, v.Field+": "+v.Description)
	}
	want := []string{
		"port_name: is required",
		"ports[0].port: 8080 is the container port of the routed port too",
		"ports[0].host_port: must be 0 (ephemeral) or between 1 and 65535, got 70000",
		`ports[1].name: "metrics" is the name of ports[0] too`,
		`check.port: "admin" is not the name of a port of the allocation`,
		"env[PORT_METRICS]: is set by the node agent for the port metrics",
	}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	single := Spec{ID: "web-1", NodeID: "n1", Service: "web", Image: "x", MemoryMB: 64, Port: 8080, Check: Check{Port: "metrics"}}
	if vs := single.Validate("n1"); len(vs) != 1 || vs[0].Field != "check.port" {
		t.Errorf("single port with a check port: %v", vs)
	}
	// A spec without named ports keeps its fingerprint (no restart of the
	// instances running when the agent is upgraded).
	b, err := json.Marshal(Spec{ID: "a", Image: "x", Port: 8080, Check: Check{HTTP: "/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"port_name"`, `"ports"`, `"check":{"http":"/"}`} {
		if strings.Contains(string(b), k) == (k != `"check":{"http":"/"}`) {
			t.Errorf("the spec of a single port marshals as %s: the new fields must be omitted (fingerprint)", b)
		}
	}
}
