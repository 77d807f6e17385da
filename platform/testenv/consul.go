package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Consul is a real Consul agent in -dev mode (server and client in one, state
// in memory) on free loopback ports.
type Consul struct {
	tb      testing.TB
	bin     string
	ports   []int // http, serf lan, serf wan, server
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for
	started bool          // ports are fixed once the agent has run
}

// StartConsul starts a Consul dev agent and waits until it has elected itself
// leader. It is stopped when the test ends.
func StartConsul(tb testing.TB) *Consul {
	tb.Helper()
	ports, err := freePorts(4)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	c := &Consul{tb: tb, bin: Binary(tb, "consul"), ports: ports, logPath: filepath.Join(tb.TempDir(), "consul.log")}
	tb.Cleanup(func() {
		c.Stop()
		if tb.Failed() {
			if b, err := os.ReadFile(c.logPath); err == nil {
				tb.Logf("consul log (last 4KiB):\n%s", tail(b, 4096))
			}
		}
	})
	c.Start()
	return c
}

// Addr is the agent's HTTP API address, host:port (for consul/api's Config.Address).
func (c *Consul) Addr() string { return "127.0.0.1:" + strconv.Itoa(c.ports[0]) }

// URL is the agent's HTTP API base URL.
func (c *Consul) URL() string { return "http://" + c.Addr() }

// Start (re)starts the agent and waits for a leader. A restart keeps the
// same ports; a dev agent keeps nothing else across it. An agent that exits
// while starting (another process took one of its ports in the meantime) is
// started again: on fresh ports the first time, on the same ports after a
// Stop, since callers already hold its address.
func (c *Consul) Start() {
	c.tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return
	}
	const attempts = 5
	for i := 1; ; i++ {
		err := c.startOnce()
		if err == nil {
			c.started = true
			return
		}
		if i == attempts {
			c.tb.Fatalf("testenv: consul: %v (log: %s)", err, c.logPath)
		}
		c.tb.Logf("testenv: consul attempt %d: %v; retrying", i, err)
		if !c.started {
			ports, perr := freePorts(4)
			if perr != nil {
				c.tb.Fatalf("testenv: %v", perr)
			}
			c.ports = ports
		} else {
			time.Sleep(200 * time.Millisecond) // let the port holder go; bounded by attempts
		}
	}
}

// startOnce starts the agent on c.ports and waits until it has a leader, or
// reports why not. c.mu is held.
func (c *Consul) startOnce() error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, "agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(c.ports[0]),
		"-serf-lan-port", strconv.Itoa(c.ports[1]),
		"-serf-wan-port", strconv.Itoa(c.ports[2]),
		"-server-port", strconv.Itoa(c.ports[3]),
		"-dns-port", "-1", "-grpc-port", "-1",
		"-node", fmt.Sprintf("test-%d", c.ports[0]),
		"-log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	c.cmd, c.exited = cmd, exited
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if leaderKnown(ctx, c.URL()) {
			return nil
		}
		select {
		case <-exited:
			c.cmd = nil
			return fmt.Errorf("agent on %s exited while starting", c.Addr())
		case <-ctx.Done():
			c.killLocked()
			return fmt.Errorf("agent on %s elected no leader within 30s", c.Addr())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop kills the agent. It may be started again with Start.
func (c *Consul) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killLocked()
}

func (c *Consul) killLocked() {
	if c.cmd == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	// Reading cmd.ProcessState here would race with the Wait goroutine.
	select {
	case <-c.exited:
	case <-time.After(2 * time.Second):
	}
	c.cmd = nil
}

func leaderKnown(ctx context.Context, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/status/leader", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && len(b) > 4 // `""` when no leader
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
