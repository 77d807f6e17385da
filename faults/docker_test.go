package faults

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"slipway.dev/platform/testenv"
)

// dockerProxy is a Unix socket in front of the Docker Engine's: a node
// agent pointed at it (DOCKER_HOST) loses its daemon when the proxy is cut
// (listener closed, every connection broken) and finds it again on heal.
type dockerProxy struct {
	path, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
	wg           sync.WaitGroup
}

func (c *cluster) dockerProxy(t testing.TB) *dockerProxy {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("Docker Engine not answering (docker info: %v)", err)
	}
	requireDemoImages(t)
	p := &dockerProxy{path: filepath.Join(c.dir, "docker.sock"), target: "/var/run/docker.sock", conns: map[net.Conn]bool{}}
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		p.target = strings.TrimPrefix(h, "unix://")
	}
	if err := p.heal(); err != nil {
		t.Fatal(err)
	}
	c.docker = p
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

// heal listens again.
func (p *dockerProxy) heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return nil
	}
	_ = os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		return err
	}
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", p.target)
			if err != nil {
				conn.Close()
				continue
			}
			p.mu.Lock()
			p.conns[conn], p.conns[up] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(up, conn); up.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(conn, up); conn.Close() }()
		}
	}()
	return nil
}

// cut closes the listener and every connection: the daemon is unreachable.
func (p *dockerProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
	_ = os.Remove(p.path)
}

// requireDemoImages builds slipway/demo:v1..v4 with scripts/demo-images.sh
// when any is missing.
func requireDemoImages(t testing.TB) {
	t.Helper()
	for v := 1; v <= demoVersions; v++ {
		if exec.Command("docker", "image", "inspect", "slipway/demo:v"+string(rune('0'+v))).Run() != nil {
			root := testenv.RepoRoot(t)
			cmd := exec.Command("bash", filepath.Join(root, "scripts", "demo-images.sh"))
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("scripts/demo-images.sh: %v\n%s", err, out)
			}
			return
		}
	}
}

// removeContainers removes every container of node (label slipway.node).
func removeContainers(t testing.TB, node string) {
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=slipway.node="+node).Output()
	if err != nil {
		return
	}
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		if out, err := exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).CombinedOutput(); err != nil {
			t.Logf("cleanup: docker rm: %v\n%s", err, out)
		}
	}
}

// containers lists the allocation ids of node's running containers.
func containers(node string) ([]string, error) {
	out, err := exec.Command("docker", "ps", "--filter", "label=slipway.node="+node,
		"--format", `{{.Label "slipway.allocation"}}`).Output()
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}
