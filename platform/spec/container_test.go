package spec

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/platform/rpc"
)

func TestValidateContainer(t *testing.T) {
	s := valid()
	s.Entrypoint = []string{"/demo", "-v"}
	s.Labels = map[string]string{"team": "payments", "com.example/tier": "1"}
	s.StopSignal = "SIGINT"
	if vs := Validate(s); vs != nil {
		t.Fatalf("valid: %v", vs)
	}
	s.Entrypoint = []string{"", "a\x00"}
	s.Labels = map[string]string{"slipway.service": "x", "a b": "c"}
	s.StopSignal = "SIGKILL"
	want := []rpc.FieldViolation{
		{Field: "spec.entrypoint[1]", Description: "contains a NUL byte"},
		{Field: "spec.entrypoint[0]", Description: "the program is empty"},
		{Field: `spec.labels["a b"]`, Description: `"a b": a key is printable ASCII without spaces`},
		{Field: `spec.labels["slipway.service"]`, Description: `"slipway.service" is in the slipway. namespace, which the node agent's own labels use`},
		{Field: "spec.stop_signal", Description: `"SIGKILL" is not one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH`},
	}
	if diff := cmp.Diff(want, Validate(s)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}
