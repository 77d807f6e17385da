package allocation

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	good := Spec{ID: "web-1", NodeID: "n1", Service: "web", Image: "slipway/demo:v1", Port: 8080, MemoryMB: 64}
	if vs := good.Validate("n1"); len(vs) != 0 {
		t.Fatalf("good spec: %v", vs)
	}
	bad := good
	bad.NodeID = "n2"
	bad.Env = map[string]string{"A=B": "x", "PORT": "1"}
	bad.Port = 0
	bad.Check.HTTP = "healthz"
	bad.CapAdd = []string{"NET_ADMIN", "FLY"}
	bad.Mounts = []Mount{{HostPath: "/data/../etc", ContainerPath: "rel"}}
	bad.Restart = &Restart{Attempts: 101, Interval: time.Second, Delay: time.Minute, Mode: "sometimes"}
	got := bad.Validate("n1")
	var fields []string
	for _, v := range got {
		fields = append(fields, v.Field)
	}
	want := []string{"node_id", "port", "env[A=B]", "env[PORT]", "check.http", "restart.attempts", "restart.interval", "restart.mode",
		"cap_add[1]", "mounts[0].host_path", "mounts[0].container_path"}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	if err := Error(got); !errors.Is(err, ErrInvalid) {
		t.Errorf("Error() = %v, want ErrInvalid", err)
	}
	noMem := good
	noMem.MemoryMB = 0
	if vs := noMem.Validate("n1"); len(vs) != 1 || vs[0].Field != "memory_mb" {
		t.Errorf("memory 0: violations %v, want memory_mb", vs)
	}
}

func TestFingerprint(t *testing.T) {
	a := Spec{ID: "a", Image: "x", Env: map[string]string{"A": "1", "B": "2"}}
	b := Spec{ID: "a", Image: "x", Env: map[string]string{"B": "2", "A": "1"}, Stopped: true}
	if a.Fingerprint() != b.Fingerprint() {
		t.Error("same spec, different fingerprints")
	}
	b.Image = "y"
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("different image, same fingerprint")
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want string
	}{
		{"", ""},
		{"a\n\n  b  \nc\nd\ne\nf\n", "b | c | d | e | f"},
		{"one line", "one line"},
		{strings.Repeat("x", 50) + "\nend", "..." + strings.Repeat("x", 17) + " | end"},
	} {
		if got := LastLines([]byte(tc.out), 5, 23); got != tc.want {
			t.Errorf("LastLines(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}
