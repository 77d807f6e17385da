package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestBuildBinaryCachesAndPrunesEndedProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	parent := filepath.Join(os.TempDir(), "slipway-test-bin")
	// A directory left by a test process that has ended (no such pid).
	stale := filepath.Join(parent, strconv.Itoa(1<<22+7))
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	p := BuildBinary(t, "./deployments/demo")
	if filepath.Base(p) != "demo" {
		t.Errorf("binary %s, want it named demo", p)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	if again := BuildBinary(t, "./deployments/demo"); again != p {
		t.Errorf("second build %s, want the cached %s", again, p)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale directory of an ended process still there (%v)", err)
	}
}
