// Package stack starts and stops the guide's embedded default stack: a
// Consul dev agent, a single-node coordinator, a node agent and an edge, each
// a child process with its log under the state directory, and removes every
// instance the node agent started when it stops.
package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	aclv1 "slipway.dev/proto/slipway/acl/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"

	"slipway.dev/guide/docker"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
)

// ErrPreflight is returned when the machine is not ready for the stack.
var ErrPreflight = errors.New("stack: pre-flight check failed")

// Driver names of the node agent.
const (
	DriverDocker  = "docker"
	DriverProcess = "process"
)

// Config says where the binaries are and which ports to use.
type Config struct {
	// BinDir holds slipway-coordinator, slipway-nodeagent, slipway-edge,
	// slipctl and consul.
	BinDir string
	// StateDir receives every log and data directory; wiped on start.
	StateDir string
	// ProcessDir holds the process driver's executables (bin/images).
	ProcessDir string
	// PolicyDir holds the Consul ACL policy of each component
	// (deployments/consul): the demo Consul runs with ACLs, default deny.
	PolicyDir string
	// Driver is docker or process.
	Driver string
	// NodeID names the node agent; its Docker containers carry the label
	// slipway.node=<NodeID>, by which they are removed on stop.
	NodeID string
	// Ports.
	ConsulHTTP, Coordinator, Agent, EdgeHTTP, EdgeGRPC int
	// Dashboard is the coordinator's web dashboard port (HTTPS).
	Dashboard int
	// Images the demo deploys, checked before anything starts.
	Images []string
	// Logf prints progress.
	Logf func(format string, args ...any)
}

// CoordinatorAddr is the coordinator's gRPC address.
func (c Config) CoordinatorAddr() string { return addr(c.Coordinator) }

// DashboardURL is the coordinator's web dashboard.
func (c Config) DashboardURL() string { return "https://" + addr(c.Dashboard) + "/" }

// EdgeURL is the edge's HTTP URL.
func (c Config) EdgeURL() string { return "http://" + addr(c.EdgeHTTP) + "/" }

// ConsulAddr is the Consul agent's HTTP address.
func (c Config) ConsulAddr() string { return addr(c.ConsulHTTP) }

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func (c Config) bin(name string) string { return filepath.Join(c.BinDir, name) }

// fixedPorts lists the ports the stack listens on, with their owner.
func (c Config) fixedPorts() []portUse {
	return []portUse{
		{c.ConsulHTTP, "Consul HTTP API", "-consul-port"},
		{c.Coordinator, "coordinator gRPC", "-coordinator-port"},
		{c.Coordinator + 1, "coordinator raft", "-coordinator-port"},
		{c.Dashboard, "coordinator web dashboard", "-dashboard-port"},
		{c.Agent, "node agent gRPC", "-agent-port"},
		{c.EdgeGRPC, "edge gRPC (RouteService)", "-edge-grpc-port"},
		{c.EdgeHTTP, "edge HTTP", "-edge-port"},
	}
}

type portUse struct {
	port int
	what string
	// flag moves it elsewhere.
	flag string
}

// Preflight checks binaries, images and ports, and returns one error
// listing every problem with how to fix it.
func Preflight(ctx context.Context, c Config) error {
	var probs []string
	for _, b := range []string{"consul", "slipway-coordinator", "slipway-nodeagent", "slipway-edge", "slipctl"} {
		if fi, err := os.Stat(c.bin(b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			probs = append(probs, fmt.Sprintf("%s is missing: run `make build` (consul: `make tools`)", c.bin(b)))
		}
	}
	for _, comp := range consulComponents {
		if _, err := os.Stat(filepath.Join(c.PolicyDir, comp+".hcl")); err != nil {
			probs = append(probs, fmt.Sprintf("Consul policy %s is missing: run the guide from the repository root or pass -consul-policies", filepath.Join(c.PolicyDir, comp+".hcl")))
		}
	}
	for _, img := range c.Images {
		if c.Driver == DriverDocker {
			if !docker.ImageExists(ctx, img) {
				probs = append(probs, fmt.Sprintf("Docker image %s is missing: run scripts/demo-images.sh", img))
			}
			continue
		}
		exe := filepath.Join(c.ProcessDir, strings.NewReplacer("/", "_", ":", "_").Replace(img))
		if _, err := os.Stat(exe); err != nil {
			probs = append(probs, fmt.Sprintf("process-driver executable %s is missing: run scripts/demo-images.sh", exe))
		}
	}
	probs = append(probs, BusyPorts(c.fixedPorts())...)
	if len(probs) > 0 {
		return fmt.Errorf("%w:\n  - %s", ErrPreflight, strings.Join(probs, "\n  - "))
	}
	return nil
}

// BusyPorts returns one message per port of uses that cannot be bound on
// the loopback address, naming the owner and how to find the process.
func BusyPorts(uses []portUse) []string {
	var out []string
	for _, u := range uses {
		l, err := net.Listen("tcp", addr(u.port))
		if err != nil {
			out = append(out, fmt.Sprintf("port %d (%s) is busy: find its process with `ss -ltnp 'sport = :%d'` (or `lsof -i :%d`) and stop it (a previous `make run` still running?), or run bin/slipway-guide %s <free port>", u.port, u.what, u.port, u.port, u.flag))
			continue
		}
		l.Close()
	}
	return out
}

// Stack is the running set of processes.
type Stack struct {
	cfg   Config
	procs []*Proc
	// TLS is the stack's throwaway CA and certificates.
	TLS TLS
	// Token is the management token bootstrapped on the new coordinator,
	// also in TokenFile (mode 0600).
	Token, TokenFile string
	// Dashboard is the web dashboard's URL, empty when the coordinator has
	// none.
	Dashboard string
	// ConsulToken is the demo Consul's management token (for its UI), also
	// in ConsulTokenFile (mode 0600).
	ConsulToken, ConsulTokenFile string
	// KeyringFile is the coordinator's keyring (secrets and configs), empty
	// when none could be made.
	KeyringFile string
}

// Start wipes StateDir, kills what a previous guide left behind, starts
// Consul, the coordinator, the node agent and the edge, and waits for each
// to be ready. On error everything started so far is stopped.
func Start(ctx context.Context, c Config) (_ *Stack, err error) {
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	s := &Stack{cfg: c}
	s.cleanLeftovers(ctx)
	if err := os.RemoveAll(c.StateDir); err != nil {
		return nil, fmt.Errorf("stack: wipe %s: %w", c.StateDir, err)
	}
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("stack: state dir: %w", err)
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	if s.TLS, err = makeTLS(filepath.Join(c.StateDir, "tls"), c.NodeID); err != nil {
		return nil, err
	}
	s.ConsulToken = newUUID()
	operator, err := s.TLS.OperatorCreds()
	if err != nil {
		return nil, err
	}

	serf, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	if err := s.start(ctx, "consul", c.bin("consul"), []string{"agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(c.ConsulHTTP),
		"-serf-lan-port", strconv.Itoa(serf[0]), "-serf-wan-port", strconv.Itoa(serf[1]),
		"-server-port", strconv.Itoa(serf[2]), "-dns-port", "-1", "-grpc-port", "-1",
		"-node", "slipway-guide", "-log-level", "warn", "-hcl", consulACLConfig(s.ConsulToken),
	}, nil, func(ctx context.Context) error { return consulLeader(ctx, c.ConsulAddr()) }); err != nil {
		return nil, err
	}
	consulTokens, err := setupConsulACL(ctx, c.ConsulAddr(), s.ConsulToken, c.PolicyDir, s.TLS.Dir)
	if err != nil {
		return nil, err
	}
	s.ConsulTokenFile = filepath.Join(s.TLS.Dir, "consul-management.token")
	if err := os.WriteFile(s.ConsulTokenFile, []byte(s.ConsulToken+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	c.Logf("Consul dev agent on http://%s with ACLs, default deny; a token per component from %s (log .run/consul.log)", c.ConsulAddr(), c.PolicyDir)

	coordArgs := []string{"-id", "guide-1", "-bootstrap", "-data-dir", filepath.Join(c.StateDir, "coordinator"),
		"-grpc-addr", c.CoordinatorAddr(), "-raft-addr", addr(c.Coordinator + 1), "-log-level", "warn"}
	coordArgs = append(coordArgs, s.TLS.flags(s.TLS.Coordinator)...)
	if hasFlag(c.bin("slipway-coordinator"), "consul-addr") {
		coordArgs = append(coordArgs, "-consul-addr", c.ConsulAddr(), "-consul-token-file", consulTokens["coordinator"])
	} else {
		c.Logf("warning: slipway-coordinator has no -consul-addr flag: it cannot discover the node agent (rollout engine missing?)")
	}
	// A throwaway keyring, so that secrets and configs work in the demo
	// (slipctl secret create ... --service web).
	keyringFile := filepath.Join(c.StateDir, "keyring.json")
	if out, err := exec.CommandContext(ctx, c.bin("slipway-coordinator"), "keyring", "init", "-file", keyringFile).CombinedOutput(); err != nil {
		c.Logf("warning: no keyring for the coordinator (keyring init: %v: %s): secrets and configs are refused", err, strings.TrimSpace(string(out)))
	} else {
		coordArgs = append(coordArgs, "-keyring-file", keyringFile)
		s.KeyringFile = keyringFile
	}
	dashboard := hasFlag(c.bin("slipway-coordinator"), "dashboard-addr")
	if dashboard {
		coordArgs = append(coordArgs, "-dashboard-addr", addr(c.Dashboard))
	}
	if err := s.start(ctx, "coordinator", c.bin("slipway-coordinator"), coordArgs, nil, func(ctx context.Context) error {
		tok, err := bootstrapToken(ctx, c.CoordinatorAddr(), operator)
		if err == nil {
			s.Token = tok
		}
		return err
	}); err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(s.TLS.Dir, "token")
	if err := os.WriteFile(tokenFile, []byte(s.Token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	s.TokenFile = tokenFile
	c.Logf("single-node coordinator on %s (raft %s, log .run/coordinator.log)", c.CoordinatorAddr(), addr(c.Coordinator+1))
	if s.KeyringFile != "" {
		c.Logf("secrets and configs sealed with a throwaway keyring (%s)", filepath.Join(filepath.Base(c.StateDir), filepath.Base(s.KeyringFile)))
	}
	if dashboard {
		s.Dashboard = c.DashboardURL()
		c.Logf("web dashboard on %s", s.Dashboard)
	}

	agentArgs := []string{
		"-node-id", c.NodeID, "-grpc-addr", addr(c.Agent), "-consul-addr", c.ConsulAddr(), "-consul-token-file", consulTokens["nodeagent"],
		"-driver", c.Driver, "-process-dir", c.ProcessDir, "-advertise", "127.0.0.1",
		"-data-dir", filepath.Join(c.StateDir, "nodeagent"), "-labels", "zone=a", "-log-level", "warn",
	}
	if hasFlag(c.bin("slipway-nodeagent"), "coordinators") {
		// Heartbeats and statuses streamed to the leader, which judges
		// the node by them (down after -node-ttl without one).
		agentArgs = append(agentArgs, "-coordinators", c.CoordinatorAddr())
	}
	if err := s.start(ctx, "nodeagent", c.bin("slipway-nodeagent"), append(agentArgs, s.TLS.flags(s.TLS.NodeAgent)...), nil, func(ctx context.Context) error { return agentRegistered(ctx, c.ConsulAddr(), s.ConsulToken, c.NodeID) }); err != nil {
		return nil, err
	}
	c.Logf("node agent %s (%s driver) on %s (log .run/nodeagent.log)", c.NodeID, c.Driver, addr(c.Agent))

	edgeArgs := []string{"-id", "guide-edge", "-consul-addr", c.ConsulAddr(), "-consul-token-file", consulTokens["edge"], "-mode", "proxy",
		"-http-addr", addr(c.EdgeHTTP), "-grpc-addr", addr(c.EdgeGRPC), "-log-level", "warn"}
	if hasFlag(c.bin("slipway-edge"), "coordinators") {
		// Requests and errors per release, for the dashboard's chart and
		// canary analysis.
		edgeArgs = append(edgeArgs, "-coordinators", c.CoordinatorAddr())
	}
	if err := s.start(ctx, "edge", c.bin("slipway-edge"), append(edgeArgs, s.TLS.flags(s.TLS.Edge)...), nil, func(ctx context.Context) error { return listening(ctx, addr(c.EdgeHTTP)) }); err != nil {
		return nil, err
	}
	c.Logf("edge (built-in proxy) on %s, RouteService on %s (log .run/edge.log)", c.EdgeURL(), addr(c.EdgeGRPC))
	return s, nil
}

// start launches one process, records its pid for a later guide to clean
// up, and waits for ready (bounded, failing fast if the process exits).
func (s *Stack) start(ctx context.Context, name, bin string, args, env []string, ready func(context.Context) error) error {
	p, err := startProc(name, s.cfg.StateDir, bin, args, env)
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	s.writePids()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		err := ready(rctx)
		rcancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("stack: %s exited (%v); last lines of %s:\n%s", name, p.ExitErr(), p.LogPath, p.Tail(15))
		case <-ctx.Done():
			return fmt.Errorf("stack: %s not ready after 60s (%v); last lines of %s:\n%s", name, err, p.LogPath, p.Tail(15))
		case <-time.After(100 * time.Millisecond): // poll interval
		}
	}
}

// Died returns a channel that receives the name of the first process of the
// stack to exit unexpectedly.
func (s *Stack) Died() <-chan string {
	ch := make(chan string, 1)
	for _, p := range s.procs {
		go func() {
			<-p.Exited()
			select {
			case ch <- p.Name:
			default:
			}
		}()
	}
	return ch
}

// Proc returns the process named name, or nil.
func (s *Stack) Proc(name string) *Proc {
	for _, p := range s.procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Stop stops the edge, the node agent, the coordinator and Consul (in that
// order), then removes every instance the node agent started: containers
// labelled slipway.node=<NodeID> and process-driver children. It returns
// what it removed, for the user to see that nothing is left.
func (s *Stack) Stop() []string {
	var done []string
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop(15 * time.Second)
		done = append(done, s.procs[i].Name)
	}
	s.procs = nil
	done = append(done, s.removeInstances(context.Background())...)
	_ = os.Remove(filepath.Join(s.cfg.StateDir, "pids"))
	return done
}

func (s *Stack) removeInstances(ctx context.Context) []string {
	var out []string
	if docker.Available(ctx) {
		ids, err := docker.RemoveLabelled(ctx, "slipway.node", s.cfg.NodeID)
		if err != nil {
			s.cfg.Logf("warning: %v", err)
		}
		if len(ids) > 0 {
			out = append(out, fmt.Sprintf("%d container(s) labelled slipway.node=%s", len(ids), s.cfg.NodeID))
		}
	}
	states, _ := filepath.Glob(filepath.Join(s.cfg.StateDir, "nodeagent", "process", "*.json"))
	n := 0
	for _, f := range states {
		var r struct {
			PID int `json:"pid"`
		}
		b, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(b, &r) != nil {
			continue
		}
		if killGroup(r.PID, s.cfg.ProcessDir, 5*time.Second) {
			n++
		}
	}
	if n > 0 {
		out = append(out, fmt.Sprintf("%d process-driver instance(s)", n))
	}
	return out
}

// writePids records the process groups for cleanLeftovers.
func (s *Stack) writePids() {
	var b strings.Builder
	for _, p := range s.procs {
		fmt.Fprintf(&b, "%d\n", p.PID())
	}
	_ = os.WriteFile(filepath.Join(s.cfg.StateDir, "pids"), []byte(b.String()), 0o644)
}

// cleanLeftovers stops what a guide killed without cleaning up (SIGKILL)
// left behind: its processes (recorded in <state>/pids) and instances.
func (s *Stack) cleanLeftovers(ctx context.Context) {
	b, err := os.ReadFile(filepath.Join(s.cfg.StateDir, "pids"))
	if err == nil {
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && killGroup(pid, s.cfg.BinDir, 10*time.Second) {
				s.cfg.Logf("stopped process %d left by a previous run", pid)
			}
		}
	}
	for _, what := range s.removeInstances(ctx) {
		s.cfg.Logf("removed %s left by a previous run", what)
	}
}

// hasFlag reports whether `bin -h` lists -name.
func hasFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	return strings.Contains(string(out), "-"+name+" ") || strings.Contains(string(out), "-"+name+"\n")
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("stack: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func listening(ctx context.Context, a string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", a)
	if err != nil {
		return err
	}
	return c.Close()
}

func httpGet(ctx context.Context, url, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, b)
	}
	return b, nil
}

func consulLeader(ctx context.Context, a string) error {
	b, err := httpGet(ctx, "http://"+a+"/v1/status/leader", "")
	if err != nil {
		return err
	}
	if s := strings.Trim(strings.TrimSpace(string(b)), `"`); s == "" {
		return errNotReady
	}
	return nil
}

func agentRegistered(ctx context.Context, a, token, nodeID string) error {
	b, err := httpGet(ctx, "http://"+a+"/v1/catalog/service/"+catalog.AgentService, token)
	if err != nil {
		return err
	}
	var svcs []struct {
		ServiceMeta map[string]string
	}
	if err := json.Unmarshal(b, &svcs); err != nil {
		return err
	}
	for _, s := range svcs {
		if s.ServiceMeta[catalog.MetaNodeID] == nodeID {
			return nil
		}
	}
	return errNotReady
}

// bootstrapToken waits for the new coordinator to lead, then bootstraps its
// ACLs and returns the management token's secret.
func bootstrapToken(ctx context.Context, a string, creds *rpc.Creds) (string, error) {
	conn, err := rpc.Dial(a, creds, rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	resp, err := aclv1.NewAclServiceClient(conn).Bootstrap(ctx, &aclv1.BootstrapRequest{})
	if err != nil {
		return "", err
	}
	return resp.GetSecret(), nil
}

// WaitNode waits until the coordinator lists node id (the leader engine
// discovered the agent through Consul), bounded by timeout.
func WaitNode(ctx context.Context, conn grpc.ClientConnInterface, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := clusterv1.NewClusterServiceClient(conn)
	var last error
	for {
		resp, err := client.ListNodes(ctx, &clusterv1.ListNodesRequest{})
		if err == nil {
			for _, n := range resp.GetNodes() {
				if n.GetId() == id {
					return nil
				}
			}
			last = fmt.Errorf("node %s not among %d known node(s)", id, len(resp.GetNodes()))
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack: the coordinator does not list node agent %s after %s (%v): is the rollout engine discovering nodes from Consul?", id, timeout, last)
		case <-time.After(200 * time.Millisecond): // poll interval
		}
	}
}
