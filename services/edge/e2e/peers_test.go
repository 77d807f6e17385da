package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

// A peer is a reverse proxy Slipway's edge is measured against, in front of
// the same backend: plain nginx (no Lua), HAProxy and Caddy, each set up as
// a reverse proxy with upstream keep-alive, no access log and as many
// workers/threads as the edge's nginx mode (2).
type peer struct {
	name string
	addr string
	pids func() []int
	// edgePids, when set, is the slipway-edge process alone among pids
	// (nginx mode), whose CPU is also reported on its own.
	edgePids func() []int
}

const peerWorkers = 2

// waitListening polls until addr accepts connections.
func waitListening(t testing.TB, what, addr string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, what+" listening on "+addr, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// startPeerProcess runs bin with args and returns the pids of it and its
// descendants (nginx's master and workers).
func startPeerProcess(t testing.TB, name, bin string, args []string, env ...string) func() []int {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	pid := cmd.Process.Pid
	return func() []int { return withDescendants([]int{pid}) }
}

// startNginxPeer runs plain nginx proxying to backend: the same proxy
// settings as the edge's nginx mode without the Lua route table.
func startNginxPeer(t testing.TB, backend string) peer {
	t.Helper()
	dir, addr := t.TempDir(), testenv.FreeAddr(t)
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	conf := fmt.Sprintf(`daemon off;
worker_processes %d;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    upstream backend {
        server %[3]s;
        keepalive 256;
        keepalive_requests 100000;
    }
    server {
        listen %[4]s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
`, peerWorkers, dir, backend, addr)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	pids := startPeerProcess(t, "nginx-peer", "/usr/sbin/nginx", []string{"-p", dir, "-c", path})
	waitListening(t, "nginx peer", addr)
	return peer{name: "nginx static", addr: addr, pids: pids}
}

// startHAProxyPeer runs HAProxy in HTTP mode with keep-alive both ways.
func startHAProxyPeer(t testing.TB, backend string) (peer, bool) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return peer{}, false
	}
	dir, addr := t.TempDir(), testenv.FreeAddr(t)
	conf := fmt.Sprintf(`global
    nbthread %d
    maxconn 8192
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    option http-keep-alive
    http-reuse always
frontend web
    bind %s
    option forwardfor
    default_backend app
backend app
    server a %s
`, peerWorkers, addr, backend)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	pids := startPeerProcess(t, "haproxy-peer", bin, []string{"-db", "-f", path})
	waitListening(t, "haproxy peer", addr)
	return peer{name: "HAProxy", addr: addr, pids: pids}, true
}

// startCaddyPeer runs Caddy's reverse_proxy when make tools built it into
// SLIPWAY_BIN (it is skipped otherwise).
func startCaddyPeer(t testing.TB, backend string) (peer, bool) {
	t.Helper()
	bin := filepath.Join(os.Getenv("SLIPWAY_BIN"), "caddy")
	if _, err := os.Stat(bin); err != nil {
		return peer{}, false
	}
	dir, addr := t.TempDir(), testenv.FreeAddr(t)
	conf := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}
http://%s {
	reverse_proxy %s
}
`, addr, backend)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	pids := startPeerProcess(t, "caddy-peer", bin, []string{"run", "--config", path, "--adapter", "caddyfile"},
		"XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, fmt.Sprintf("GOMAXPROCS=%d", peerWorkers))
	waitListening(t, "caddy peer", addr)
	return peer{name: "Caddy", addr: addr, pids: pids}, true
}
