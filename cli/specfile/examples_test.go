package specfile

import (
	"path/filepath"
	"runtime"
	"testing"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"

	"slipway.dev/platform/spec"
)

// TestExamplesAreValid reads every example spec in deployments/examples and
// checks that it parses, passes the coordinator's validation and uses the
// strategy its file name promises.
func TestExamplesAreValid(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "deployments", "examples")
	want := map[string]deployv1.Strategy{
		"rolling.yaml":    deployv1.Strategy_STRATEGY_ROLLING,
		"blue-green.yaml": deployv1.Strategy_STRATEGY_BLUE_GREEN,
		"canary.yaml":     deployv1.Strategy_STRATEGY_CANARY,
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := ReadFile(f)
			if err != nil {
				t.Fatalf("ReadFile: %v", err)
			}
			if vs := spec.Validate(s); vs != nil {
				t.Fatalf("spec.Validate: %v", vs)
			}
			if st, ok := want[filepath.Base(f)]; ok {
				found[filepath.Base(f)] = true
				if got := s.GetUpdate().GetStrategy(); got != st {
					t.Errorf("strategy = %v, want %v", got, st)
				}
			}
		})
	}
	for name := range want {
		if !found[name] {
			t.Errorf("example %s is missing from %s", name, dir)
		}
	}
}
