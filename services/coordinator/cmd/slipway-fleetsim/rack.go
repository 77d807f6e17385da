package main

// Racks: the simulated nodes run in child processes of this binary (racks
// of at most -rack-size nodes), each with Consul client agents of its own
// (one per -consul-size nodes) joined to the Consul server the coordinators
// ask, as a real fleet has a Consul agent on every host. One process and one
// Consul agent for the whole fleet was no model of one: a Consul agent
// handles each TTL update under its state lock, and while it has changes to
// sync (fresh registrations, a lapsed check) the update's handler makes one
// RPC to the servers per changed check before it answers, so thousands of
// updates queued, the clients gave up (CLOSE-WAIT on Consul's side), TTLs
// lapsed, which made more changes to sync. And one process cannot hold the
// three sockets a simulated node needs (its listener, the leader's
// connection to it, its stream to the leader) for 10,000 nodes under the
// machine's open-file limit.
//
// The parent writes a rack its rackConfig as one JSON line on the rack's
// stdin and keeps stdin open; the rack starts its nodes, prints "ready",
// and when stdin ends (the parent closed it, or died) prints its counts as
// one JSON line ("counts {...}"), stops its nodes and exits.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
)

// rackNode is one node a rack runs.
type rackNode struct {
	ID    string        `json:"id"`
	Kind  behaviour     `json:"kind"`
	Delay time.Duration `json:"delay"` // from the rack's start to the node's
	// CA, Cert and Key are the node's TLS files (issued by the parent).
	CA, Cert, Key string
}

// rackConfig is what the parent tells a rack.
type rackConfig struct {
	Nodes []rackNode `json:"nodes"`
	// Consul are the HTTP addresses of the rack's Consul client agents;
	// node i registers in Consul[i%len(Consul)].
	Consul       []string      `json:"consul"`
	Coordinators []string      `json:"coordinators"`
	AllocStart   time.Duration `json:"alloc_start"`
	SlowDelay    time.Duration `json:"slow_delay"`
	FlapEvery    time.Duration `json:"flap_every"`
	FlapFor      time.Duration `json:"flap_for"`
	TTL          time.Duration `json:"ttl"`
	CPUMHz       int           `json:"cpu_mhz"`
	MemoryMB     int           `json:"memory_mb"`
}

// rackCounts are what a rack's nodes answered, printed when it stops.
type rackCounts struct {
	Started  int64 `json:"started"`
	Syncs    int64 `json:"syncs"`
	Statuses int64 `json:"statuses"`
	// TTLErrors are TTL updates Consul failed or did not answer in time.
	TTLErrors int64 `json:"ttl_errors"`
}

func (c *rackCounts) add(o rackCounts) {
	c.Started += o.Started
	c.Syncs += o.Syncs
	c.Statuses += o.Statuses
	c.TTLErrors += o.TTLErrors
}

// consulTransport is the HTTP transport of a rack's Consul client: every
// concurrent TTL update of its nodes finds an idle connection (the api
// package's default pool keeps GOMAXPROCS+1 idle, so thousands of
// concurrent updates opened and closed connections by the thousand, and
// the agent's side piled up in CLOSE-WAIT).
func consulTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
	}
}

// consulClient is a client of the Consul agent at addr with a pool of
// conns connections.
func consulClient(addr string, conns int) (*api.Client, error) {
	conf := api.DefaultConfig()
	conf.Address = addr
	conf.Transport = consulTransport(conns)
	return api.NewClient(conf)
}

// runRack is the child side: it reads its config from stdin, runs its
// nodes until stdin ends, and prints its counts.
func runRack() error {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("rack: read config: %w", err)
	}
	var rc rackConfig
	if err := json.Unmarshal(line, &rc); err != nil {
		return fmt.Errorf("rack: config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if len(rc.Consul) == 0 {
		return errors.New("rack: consul: no agent address")
	}
	// Up to one connection per node to its Consul agent: a heartbeat
	// never waits for another's.
	cfgs := make([]*nodeConfig, len(rc.Consul))
	counts := nodeCounts{started: &atomic.Int64{}, syncs: &atomic.Int64{}, statuses: &atomic.Int64{}, ttlErrors: &atomic.Int64{}}
	for i, addr := range rc.Consul {
		cc, err := consulClient(addr, max(16, len(rc.Nodes)/len(rc.Consul)+1))
		if err != nil {
			return err
		}
		cfgs[i] = &nodeConfig{consul: cc, logger: logger, allocStart: rc.AllocStart, slowDelay: rc.SlowDelay,
			flapEvery: rc.FlapEvery, flapFor: rc.FlapFor, ttl: rc.TTL, cpuMHz: rc.CPUMHz, memoryMB: rc.MemoryMB,
			coordinators: rc.Coordinators, nodeCounts: counts}
	}
	var (
		mu    sync.Mutex
		nodes []*node
		wg    sync.WaitGroup
	)
	errs := make(chan error, len(rc.Nodes))
	start := time.Now()
	for i, rn := range rc.Nodes {
		cfg := cfgs[i%len(cfgs)]
		wg.Go(func() {
			if d := rn.Delay - time.Since(start); d > 0 {
				time.Sleep(d) // the fleet's start spread, not a synchronisation
			}
			creds, err := rpc.NewCreds(testenv.TLSFiles{CA: rn.CA, Cert: rn.Cert, Key: rn.Key}.Security(), logger)
			if err != nil {
				errs <- err
				return
			}
			n, err := startNode(ctx, rn.ID, rn.Kind, cfg, creds)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, in) // until the parent closes stdin
	b, _ := json.Marshal(rackCounts{Started: counts.started.Load(), Syncs: counts.syncs.Load(), Statuses: counts.statuses.Load(), TTLErrors: counts.ttlErrors.Load()})
	fmt.Printf("counts %s\n", b)
	cancel()
	for _, n := range nodes {
		wg.Go(n.stop)
	}
	wg.Wait()
	return nil
}

// rackProc is the parent's handle of one rack process.
type rackProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	done   chan struct{}
	logf   *os.File
	counts rackCounts
}

// startRack starts a rack process of self (this executable) with rc.
func startRack(self, work string, i int, rc rackConfig) (*rackProc, error) {
	logf, err := os.Create(filepath.Join(work, fmt.Sprintf("rack-%d.log", i)))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-rack")
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start rack %d: %w", i, err)
	}
	r := &rackProc{cmd: cmd, stdin: stdin, lines: make(chan string, 4), done: make(chan struct{}), logf: logf}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	go func() { _ = cmd.Wait(); logf.Close(); close(r.done) }()
	b, _ := json.Marshal(rc)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		r.kill()
		return nil, fmt.Errorf("rack %d: write config: %w", i, err)
	}
	return r, nil
}

// waitReady waits until the rack said it started every node.
func (r *rackProc) waitReady(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case l, ok := <-r.lines:
		if !ok {
			return fmt.Errorf("rack exited before its nodes started (see %s)", r.logf.Name())
		}
		if l != "ready" {
			return fmt.Errorf("rack: unexpected %q", l)
		}
		return nil
	}
}

// finish ends the rack (its nodes deregister and stop) and reads its
// counts.
func (r *rackProc) finish() error {
	_ = r.stdin.Close()
	t := time.NewTimer(2 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.kill()
			return errors.New("rack did not stop within 2 minutes")
		case l, ok := <-r.lines:
			if !ok {
				<-r.done
				return nil
			}
			if rest, found := strings.CutPrefix(l, "counts "); found {
				if err := json.Unmarshal([]byte(rest), &r.counts); err != nil {
					return fmt.Errorf("rack counts: %w", err)
				}
			}
		}
	}
}

func (r *rackProc) kill() {
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
}

// consulProc is a Consul agent on free loopback ports: the dev server the
// coordinators ask, or a client agent of a rack joined to it.
type consulProc struct {
	cmd      *exec.Cmd
	addr     string // HTTP
	serfAddr string // LAN gossip, for clients to join
	client   *api.Client
	done     chan struct{}
}

func (c *consulProc) pid() int { return c.cmd.Process.Pid }

func (c *consulProc) stop() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// startConsul starts the dev server agent (join empty) or a client agent
// joined to the server at join (its LAN gossip address), named name, with
// its data under dataDir.
func startConsul(bin, work, dataDir, name, join string) (*consulProc, error) {
	ports, err := testenv.FreePorts(4)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(work, name+".log"))
	if err != nil {
		return nil, err
	}
	args := []string{"agent", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports[0]), "-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]), "-dns-port", "-1", "-grpc-port", "-1", "-log-level", "warn",
		"-node", name + "-" + strconv.Itoa(ports[0]), "-disable-host-node-id",
		// Every client on loopback is 127.0.0.1 to Consul: lift the cap
		// of connections per client address.
		"-hcl", "limits { http_max_conns_per_client = 8192 }"}
	if join == "" {
		args = append(args, "-dev")
	} else {
		dir := filepath.Join(dataDir, name+"-data")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			logf.Close()
			return nil, err
		}
		args = append(args, "-data-dir", dir, "-retry-join", join, "-retry-interval", "1s")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start consul %s: %w", name, err)
	}
	c := &consulProc{cmd: cmd, addr: "127.0.0.1:" + strconv.Itoa(ports[0]), serfAddr: "127.0.0.1:" + strconv.Itoa(ports[1]), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(c.done) }()
	if c.client, err = consulClient(c.addr, 128); err != nil {
		c.stop()
		return nil, err
	}
	// A client agent answers the leader's address once it has joined.
	err = waitFor(context.Background(), 60*time.Second, "consul "+name+" joined, with a leader", func(context.Context) (bool, string, error) {
		l, err := c.client.Status().Leader()
		return err == nil && l != "", "no leader", err
	})
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, logf.Name())
	}
	return c, nil
}

// consulDataDir is where the racks' Consul client agents keep their data:
// a new directory on tmpfs (/dev/shm) when the machine has one, else in
// work. A client agent persists every TTL update to a file while it holds
// its state lock (each host's agent in a real fleet persists one node's);
// the returned cleanup removes the directory.
func consulDataDir(work string) (string, func(), error) {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "fleetsim-consul-")
		if err == nil {
			return dir, func() { _ = os.RemoveAll(dir) }, nil
		}
	}
	return work, func() {}, nil
}

// spreadOffset is a node's random phase within every, so that the fleet's
// heartbeats do not arrive in bursts.
func spreadOffset(every time.Duration) time.Duration {
	if every <= 0 {
		return 0
	}
	return rand.N(every)
}
