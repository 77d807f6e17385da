package docker_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-connections/nat"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/docker"
	"slipway.dev/nodeagent/internal/nodetest"
	"slipway.dev/platform/testenv"
)

// portsImage is the demo built from this tree (with its METRICS_PORT)
// under a tag of its own, so the shared v1-v5 images are left alone.
const portsImage = "slipway/demo:p1"

func buildPortsImage(t *testing.T) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(testenv.RepoRoot(t), "scripts", "demo-images.sh"))
	cmd.Env = append(os.Environ(), "DEMO_VERSIONS=p1:teal", "SLIPWAY_IMAGES_DIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/demo-images.sh: %v\n%s", err, out)
	}
}

func get(t *testing.T, port int, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	var body string
	testenv.Eventually(t, 10*time.Second, "GET 127.0.0.1:"+strconv.Itoa(port)+path, func() error {
		resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return nil
	})
	return body
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNamedPortsPublished: a spec with two named ports gets both
// published on the host (the routed one ephemeral, the other at its static
// host port), each answering from outside the container, PORT_<NAME> in
// the env; List and inspect keep the routed port's host port as the
// instance's.
func TestNamedPortsPublished(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real Docker; skipped by -short")
	}
	buildPortsImage(t)
	cli := nodetest.Docker(t)
	node := nodetest.NodeID(t)
	nodetest.CleanupContainers(t, cli, node)
	d := docker.New(cli, node, "127.0.0.1", nil)
	static := freePort(t)
	s := allocation.Spec{ID: node + "-p", NodeID: node, Service: "ports-" + node, Release: 1, Track: "stable",
		Image: portsImage, MemoryMB: 64, CPUMHz: 100, KillTimeout: time.Second,
		Port: 8080, PortName: "http", Ports: []allocation.Port{{Name: "metrics", Port: 9100, HostPort: static}}}
	ctx := context.Background()
	inst, err := d.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), inst, time.Second) })
	if inst.HostPort == 0 || inst.HostPort == static || inst.HostPorts[9100] != static || inst.HostPorts[8080] != inst.HostPort {
		t.Fatalf("instance ports: routed %d, by container port %v; want an ephemeral routed one and 9100 at %d", inst.HostPort, inst.HostPorts, static)
	}
	if body := get(t, inst.HostPort, "/"); !strings.Contains(body, "from p1 (teal)") {
		t.Errorf("routed port answers %q", body)
	}
	if body := get(t, static, "/metrics"); !strings.Contains(body, `demo_requests_total{version="p1",colour="teal"}`) {
		t.Errorf("metrics port answers %q", body)
	}
	if s.HostPortOf(inst, "metrics") != static {
		t.Errorf("HostPortOf(metrics) = %d", s.HostPortOf(inst, "metrics"))
	}
	c, err := cli.ContainerInspect(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(c.Config.Env, " ")
	for _, want := range []string{"PORT=8080", "PORT_HTTP=8080", "PORT_METRICS=9100"} {
		if !strings.Contains(env, want) {
			t.Errorf("env %q lacks %s", env, want)
		}
	}
	if _, ok := c.Config.ExposedPorts[nat.Port("9100/tcp")]; !ok {
		t.Errorf("exposed ports %v lack 9100/tcp", c.Config.ExposedPorts)
	}
	// The routed port is told apart by its label in every listing, whatever
	// order Docker lists the ports in.
	for range 5 {
		list, err := d.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].HostPort != inst.HostPort || list[0].HostPorts[9100] != static {
			t.Fatalf("List = %+v, want routed host port %d and 9100 at %d", list, inst.HostPort, static)
		}
	}
	// A second instance needing the same static host port fails to start,
	// and says which port.
	s2 := s
	s2.ID = node + "-q"
	if _, err := d.Start(ctx, s2); err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(static)) {
		t.Errorf("second start with host port %d taken: %v, want an error naming it", static, err)
	}
}
