package process

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/testenv"
)

// TestNamedPortsProcess: the process driver binds a host port for each
// named port and tells the process each one as PORT_<NAME> (the routed
// one as PORT too); the demo serves its app on one and /metrics on the
// other, both answering on the host, and an adopted instance (List) keeps
// them.
func TestNamedPortsProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the demo and runs it; skipped by -short")
	}
	// A directory the children's user (nobody, when the agent runs as
	// root) can reach.
	dir, err := os.MkdirTemp("", "slipway-ports-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(testenv.RepoRoot(t), "scripts", "demo-images.sh"))
	cmd.Env = append(os.Environ(), "DEMO_VERSIONS=p1:teal", "SLIPWAY_IMAGES_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/demo-images.sh: %v\n%s", err, out)
	}
	d, err := New(dir, t.TempDir(), "127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := allocation.Spec{ID: "ports-1", NodeID: "n1", Service: "ports", Release: 1, Image: "slipway/demo:p1", MemoryMB: 64,
		Port: 8080, PortName: "http", Ports: []allocation.Port{{Name: "metrics", Port: 9100}}}
	inst, err := d.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), inst, time.Second) })
	metrics := s.HostPortOf(inst, "metrics")
	if inst.HostPort == 0 || metrics == 0 || metrics == inst.HostPort {
		t.Fatalf("host ports: routed %d, metrics %d", inst.HostPort, metrics)
	}
	get := func(port int, path, want string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, fmt.Sprintf("GET :%d%s", port, path), func() error {
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
				return fmt.Errorf("status %d: %q, want %q", resp.StatusCode, b, want)
			}
			return nil
		})
	}
	get(inst.HostPort, "/", "from p1 (teal)")
	get(metrics, "/metrics", `demo_requests_total{version="p1",colour="teal"}`)
	list, err := d.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].HostPort != inst.HostPort || s.HostPortOf(list[0], "metrics") != metrics {
		t.Errorf("List = %+v, want routed %d and metrics %d", list, inst.HostPort, metrics)
	}
}
