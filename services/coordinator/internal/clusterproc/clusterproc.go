// Package clusterproc runs a cluster of real slipway-coordinator processes
// on loopback, for the integration test and the benchmark.
package clusterproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"slipway.dev/coordinator/internal/acltest"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
)

// Proc is one coordinator process.
type Proc struct {
	// ID is its raft id.
	ID string
	// GRPCAddr and RaftAddr are its loopback addresses.
	GRPCAddr, RaftAddr string
	// DataDir is its data directory, kept across restarts.
	DataDir string
	// LogPath is the file its stderr goes to.
	LogPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	conn    *grpc.ClientConn
	exitErr error
}

// Cluster is a set of coordinator processes formed with -bootstrap-expect.
type Cluster struct {
	// Bin is the slipway-coordinator executable.
	Bin string
	// Procs are the coordinators, in start order.
	Procs []*Proc
	// Args are extra flags given to every coordinator after the defaults
	// (a later flag wins, e.g. "-engine=true").
	Args []string
	// PKI is the cluster's CA (under dir/pki): each coordinator runs with a
	// coordinator certificate named after its id. Nil for an insecure cluster.
	PKI *testenv.PKI
	// Client are the credentials of Conn: a client certificate from PKI,
	// or plaintext.
	Client *rpc.Creds
	join   string

	insecure bool
	tokenMu  sync.Mutex
	token    string // sent on every Conn once Bootstrap set it
}

// Bootstrap bootstraps the cluster's ACLs (coordinators run with tokens
// required, as in production) once a leader is known, and from then on
// sends the management token on every Conn. It returns the token's secret.
func (c *Cluster) Bootstrap(ctx context.Context) (string, error) {
	secret, err := acltest.Bootstrap(ctx, c.Conn(0), 30*time.Second)
	if err != nil {
		return "", fmt.Errorf("clusterproc: %w", err)
	}
	c.tokenMu.Lock()
	c.token = secret
	c.tokenMu.Unlock()
	return secret, nil
}

// GetRequestMetadata sends the bootstrapped token, if any.
func (c *Cluster) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	if c.token == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}

// RequireTransportSecurity is false: insecure clusters send the token too.
func (c *Cluster) RequireTransportSecurity() bool { return false }

// New prepares n coordinators with free loopback ports, data directories
// under dir and TLS certificates from a new CA; they require tokens, so
// call Bootstrap once a leader is up. Start them with StartAll.
func New(bin, dir string, n int) (*Cluster, error) { return newCluster(bin, dir, n, false, nil) }

// NewWithPKI is New with certificates from ca, so that the coordinators
// trust the agents and edges a test started with the same CA.
func NewWithPKI(bin, dir string, n int, ca *testenv.PKI) (*Cluster, error) {
	return newCluster(bin, dir, n, false, ca)
}

// NewInsecure is New for plaintext coordinators without tokens (-insecure
// -acl=false), the baseline of the benchmark.
func NewInsecure(bin, dir string, n int) (*Cluster, error) { return newCluster(bin, dir, n, true, nil) }

func newCluster(bin, dir string, n int, insecure bool, ca *testenv.PKI) (*Cluster, error) {
	ports, err := testenv.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Bin: bin, Client: rpc.InsecureCreds(), insecure: insecure}
	if !insecure {
		c.PKI = ca
		if c.PKI == nil {
			if c.PKI, err = testenv.NewPKIAt(filepath.Join(dir, "pki")); err != nil {
				return nil, fmt.Errorf("clusterproc: %w", err)
			}
		}
		files, err := c.PKI.IssueFiles(pki.RoleClient, "clusterproc")
		if err != nil {
			return nil, fmt.Errorf("clusterproc: %w", err)
		}
		if c.Client, err = rpc.NewCreds(files.Security(), nil); err != nil {
			return nil, fmt.Errorf("clusterproc: %w", err)
		}
	}
	var join []string
	for i := range n {
		id := "c" + strconv.Itoa(i)
		p := &Proc{
			ID:       id,
			GRPCAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i]),
			RaftAddr: "127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			DataDir:  filepath.Join(dir, id),
			LogPath:  filepath.Join(dir, id+".log"),
		}
		conn, err := rpc.Dial(p.GRPCAddr, c.Client, rpc.ExpectRole(pki.RoleCoordinator), grpc.WithPerRPCCredentials(c))
		if err != nil {
			return nil, err
		}
		p.conn = conn
		join = append(join, p.GRPCAddr)
		c.Procs = append(c.Procs, p)
	}
	c.join = strings.Join(join, ",")
	return c, nil
}

// StartAll starts every coordinator.
func (c *Cluster) StartAll() error {
	for i := range c.Procs {
		if err := c.Start(i); err != nil {
			return err
		}
	}
	return nil
}

// Start starts (or restarts) coordinator i with its data directory.
func (c *Cluster) Start(i int) error {
	p := c.Procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("clusterproc: %s already running", p.ID)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("clusterproc: %w", err)
	}
	cmd := exec.Command(c.Bin, "-id", p.ID, "-data-dir", p.DataDir, "-grpc-addr", p.GRPCAddr, "-raft-addr", p.RaftAddr,
		"-bootstrap-expect", strconv.Itoa(len(c.Procs)), "-join", c.join, "-log-level", "info",
		// Only the raft/API core is exercised: no engine acting on whatever
		// Consul answers at the default address.
		"-engine=false")
	if c.insecure {
		// The plaintext baseline of the benchmark: no TLS, no tokens.
		cmd.Args = append(cmd.Args, "-insecure", "-acl=false")
	} else {
		files, err := c.PKI.IssueFiles(pki.RoleCoordinator, p.ID)
		if err != nil {
			logf.Close()
			return fmt.Errorf("clusterproc: %w", err)
		}
		cmd.Args = append(cmd.Args, files.Flags()...)
	}
	cmd.Args = append(cmd.Args, c.Args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("clusterproc: start %s: %w", p.ID, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		p.exitErr = err
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// Pid is the process id of the running coordinator, or 0.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to coordinator i, waits up to 10s for it to exit and
// returns how it exited (nil for status 0; an error for SIGKILL).
func (c *Cluster) Signal(i int, sig syscall.Signal) error {
	p := c.Procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.cmd, p.done = nil, nil
		return fmt.Errorf("clusterproc: %s did not exit within 10s of %v", p.ID, sig)
	}
	p.cmd, p.done = nil, nil
	return p.exitErr
}

// Freeze stops coordinator i with SIGSTOP (a paused process: its peers
// see it vanish without a closed connection); Thaw resumes it.
func (c *Cluster) Freeze(i int) error { return c.pause(i, syscall.SIGSTOP) }

// Thaw resumes coordinator i after Freeze with SIGCONT.
func (c *Cluster) Thaw(i int) error { return c.pause(i, syscall.SIGCONT) }

func (c *Cluster) pause(i int, sig syscall.Signal) error {
	p := c.Procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("clusterproc: %s is not running", p.ID)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("clusterproc: %v to %s: %w", sig, p.ID, err)
	}
	return nil
}

// Close kills every coordinator and closes the client connections.
func (c *Cluster) Close() {
	for i, p := range c.Procs {
		_ = c.Signal(i, syscall.SIGKILL)
		if p.conn != nil {
			p.conn.Close()
		}
	}
}

// Conn is a client connection to coordinator i.
func (c *Cluster) Conn(i int) *grpc.ClientConn { return c.Procs[i].conn }

// CoordinatorConn is a new connection to coordinator i holding a
// coordinator certificate named name (for InternalService); the caller
// closes it.
func (c *Cluster) CoordinatorConn(i int, name string) (*grpc.ClientConn, error) {
	creds := c.Client
	if c.PKI != nil {
		files, err := c.PKI.IssueFiles(pki.RoleCoordinator, name)
		if err != nil {
			return nil, fmt.Errorf("clusterproc: %w", err)
		}
		if creds, err = rpc.NewCreds(files.Security(), nil); err != nil {
			return nil, fmt.Errorf("clusterproc: %w", err)
		}
	}
	return rpc.Dial(c.Procs[i].GRPCAddr, creds, rpc.ExpectRole(pki.RoleCoordinator))
}

// Index returns the position of the coordinator with raft id id, or -1.
func (c *Cluster) Index(id string) int {
	for i, p := range c.Procs {
		if p.ID == id {
			return i
		}
	}
	return -1
}

// WaitLeader polls the coordinators in among until all of them name the same
// leader, itself one of them, and returns its index.
func (c *Cluster) WaitLeader(ctx context.Context, among []int) (int, error) {
	var last error
	for {
		leader, err := c.agreedLeader(ctx, among)
		if err == nil {
			return leader, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("clusterproc: no agreed leader: %w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) agreedLeader(ctx context.Context, among []int) (int, error) {
	leader := ""
	for _, i := range among {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := clusterv1.NewClusterServiceClient(c.Conn(i)).GetLeader(cctx, &clusterv1.GetLeaderRequest{})
		cancel()
		if err != nil {
			return -1, err
		}
		switch {
		case resp.GetLeaderId() == "":
			return -1, fmt.Errorf("%s knows no leader", c.Procs[i].ID)
		case resp.GetGrpcAddress() == "":
			return -1, fmt.Errorf("%s does not know the leader's gRPC address yet", c.Procs[i].ID)
		case leader == "":
			leader = resp.GetLeaderId()
		case leader != resp.GetLeaderId():
			return -1, fmt.Errorf("leaders differ: %s and %s", leader, resp.GetLeaderId())
		}
	}
	idx := c.Index(leader)
	for _, i := range among {
		if i == idx {
			return idx, nil
		}
	}
	return -1, fmt.Errorf("leader %s is not among the live coordinators", leader)
}
