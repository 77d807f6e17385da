package faults

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Ports every host uses on its own address.
const (
	consulHTTPS   = "8501"
	coordGRPC     = "7400"
	coordRaft     = "7401"
	agentGRPC     = "7410"
	agentMetrics  = "7411"
	edgeHTTP      = "8080"
	edgeGRPC      = "7420"
	demoVersions  = 4
	coordinators  = 3
	processAgents = 2
)

// consulToken is a Consul ACL token the suite made, re-made with the same
// secret after Consul lost its data.
type consulToken struct{ policy, rules, accessor, secret string }

// cluster is the system under test: Consul, three coordinators, node
// agents and two edges, each on its own host, on mutual TLS with tokens
// (Slipway's and Consul's ACLs, default deny).
type cluster struct {
	t    testing.TB
	topo *topology
	dir  string
	pki  *testenv.PKI
	bin  string // our binaries
	imgs string // process driver executables

	consul       *proc
	consulHost   *host
	consulData   string
	consulMgmt   string
	consulTokens map[string]consulToken // by component
	coords       []*proc
	coordHosts   []*host
	coordData    []string
	agents       []*agentProc
	edges        []*proc
	edgeHosts    []*host
	docker       *dockerProxy
	services     []service
	// Refused stale fencing tokens: totals and the last scrape per node.
	staleLast                 map[string]int
	staleTotal, staleReported int
	// Checker state kept across episodes.
	startedReported, tokensReported int

	token  string // Slipway management token
	conns  []*grpc.ClientConn
	client *rpc.Creds
	// scraper reads the agents' /metrics (HTTPS, a metrics-role certificate).
	scraper *http.Client

	mu sync.Mutex
}

// agentProc is a node agent and what the suite knows of it.
type agentProc struct {
	*proc
	node   string
	driver string
	data   string
}

// hostNames are the test hosts: Consul, 3 coordinators, 2 process-driver
// agents, 1 Docker agent, 2 edges.
var hostNames = []string{"consul", "c0", "c1", "c2", "a0", "a1", "a2", "e0", "e1"}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// buildImages builds the demo app as process-driver executables
// slipway_demo_v<N>, readable by the user the agent runs them as.
func buildImages(t testing.TB, dir string) {
	t.Helper()
	root := testenv.RepoRoot(t)
	for v := 1; v <= demoVersions; v++ {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", fmt.Sprintf("-X main.version=v%d", v),
			"-o", filepath.Join(dir, fmt.Sprintf("slipway_demo_v%d", v)), ".")
		cmd.Dir = filepath.Join(root, "deployments", "demo")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build demo v%d: %v\n%s", v, err, out)
		}
	}
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
}

// startCluster starts everything and waits until the coordinators have a
// leader, the ACLs are bootstrapped and every agent is a ready node.
func startCluster(t testing.TB, withDocker bool) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), bin: testenv.BinDir(t), consulTokens: map[string]consulToken{}}
	if keep := os.Getenv("FAULTS_LOGS"); keep != "" {
		// Logs and state kept after the run, for a reader of a failure.
		d, err := os.MkdirTemp(keep, "faults-")
		if err != nil {
			t.Fatal(err)
		}
		c.dir = d
		t.Logf("logs and state in %s (FAULTS_LOGS)", d)
	}
	for _, b := range []string{"slipway-coordinator", "slipway-nodeagent", "slipway-edge"} {
		if _, err := os.Stat(filepath.Join(c.bin, b)); err != nil {
			t.Fatalf("%s not in %s: run 'make build' (or set SLIPWAY_BIN)", b, c.bin)
		}
	}
	c.topo = newTopology(t, hostNames...)
	c.pki = testenv.NewPKI(t)
	files := c.pki.Issue(t, pki.RoleClient, "faults")
	var err error
	if c.client, err = rpc.NewCreds(files.Security(), nil); err != nil {
		t.Fatal(err)
	}
	c.scraper = c.pki.MetricsClient(t)
	c.imgs = filepath.Join(c.dir, "images")
	buildImages(t, c.imgs)
	// Each coordinator's data directory is a small tmpfs of its own, so
	// that a scenario can fill it (removed after the processes stopped).
	for i := range coordinators {
		d := filepath.Join(c.dir, fmt.Sprintf("c%d", i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := sh("mount", "-t", "tmpfs", "-o", "size=256m", c.topo.run+"-c"+fmt.Sprint(i), d); err != nil {
			t.Fatalf("tmpfs for c%d: %v", i, err)
		}
		t.Cleanup(func() { _ = sh("umount", "-l", d) })
	}
	t.Cleanup(func() {
		// Logs of a failed run are kept next to nothing else: print tails.
		if t.Failed() {
			for _, p := range c.all() {
				b, _ := os.ReadFile(p.logPath)
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				t.Logf("--- %s log (tail):\n%s", p.name, b)
			}
		}
		for _, p := range c.all() {
			p.kill()
		}
	})

	c.startConsul()
	coordToken := c.componentToken("coordinator")
	var join []string
	for i := range coordinators {
		h := c.topo.host(fmt.Sprintf("c%d", i))
		c.coordHosts = append(c.coordHosts, h)
		join = append(join, h.ip+":"+coordGRPC)
	}
	for i, h := range c.coordHosts {
		id := fmt.Sprintf("c%d", i)
		data := filepath.Join(c.dir, id)
		c.coordData = append(c.coordData, data)
		tok := c.writeFile(id+".consul-token", coordToken)
		args := []string{"-id", id, "-data-dir", data, "-grpc-addr", h.ip + ":" + coordGRPC, "-raft-addr", h.ip + ":" + coordRaft,
			"-bootstrap-expect", fmt.Sprint(coordinators), "-join", strings.Join(join, ","), "-log-format", "json",
			"-node-grace", "4s", "-node-ttl", "4s", "-consul-token-file", tok}
		args = append(args, c.consulFlags(pki.RoleCoordinator, id)...)
		args = append(args, c.pki.Files(t, pki.RoleCoordinator, id).Flags()...)
		p := &proc{name: id, h: h, bin: filepath.Join(c.bin, "slipway-coordinator"), args: args, logPath: filepath.Join(c.dir, id+".log")}
		c.coords = append(c.coords, p)
		conn, err := rpc.Dial(h.ip+":"+coordGRPC, c.client, rpc.ExpectRole(pki.RoleCoordinator), grpc.WithPerRPCCredentials(c))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c.conns = append(c.conns, conn)
	}
	for _, p := range c.coords {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	c.bootstrapACL()

	agentToken := c.componentToken("nodeagent")
	nAgents := processAgents
	if withDocker {
		nAgents++
	}
	for i := range nAgents {
		name := fmt.Sprintf("a%d", i)
		h := c.topo.host(name)
		node := c.topo.run + "-" + name
		a := &agentProc{node: node, driver: "process", data: filepath.Join(c.dir, name)}
		args := []string{"-node-id", node, "-grpc-addr", h.ip + ":" + agentGRPC, "-metrics-addr", h.ip + ":" + agentMetrics,
			"-data-dir", a.data, "-drain-window", "300ms", "-drain-timeout", "5s", "-log-format", "json",
			"-consul-token-file", c.writeFile(name+".consul-token", agentToken),
			// Heartbeats and statuses stream to the leader (any coordinator
			// redirects there), which judges the node by them.
			"-coordinators", strings.Join(join, ","), "-advertise", h.ip}
		var env []string
		if i < processAgents {
			args = append(args, "-driver", "process", "-process-dir", c.imgs)
		} else {
			a.driver = "docker"
			env = append(env, "DOCKER_HOST=unix://"+c.dockerProxy(t).path)
			// Containers publish on the host's bridge address (the root
			// namespace), where every test host reaches them.
			args[len(args)-1] = c.topo.subnet + "1"
			args = append(args, "-driver", "docker")
		}
		args = append(args, c.consulFlags(pki.RoleNodeAgent, node)...)
		args = append(args, c.pki.Files(t, pki.RoleNodeAgent, node).Flags()...)
		a.proc = &proc{name: name, h: h, bin: filepath.Join(c.bin, "slipway-nodeagent"), args: args, env: env, logPath: filepath.Join(c.dir, name+".log")}
		if a.driver == "docker" {
			t.Cleanup(func() { removeContainers(t, node) })
		}
		if err := a.start(); err != nil {
			t.Fatal(err)
		}
		c.agents = append(c.agents, a)
	}

	edgeToken := c.componentToken("edge")
	for i := range 2 {
		name := fmt.Sprintf("e%d", i)
		h := c.topo.host(name)
		id := c.topo.run + "-" + name
		args := []string{"-id", id, "-mode", "proxy", "-http-addr", h.ip + ":" + edgeHTTP, "-grpc-addr", h.ip + ":" + edgeGRPC,
			"-session-ttl", "10s", "-log-format", "json", "-consul-token-file", c.writeFile(name+".consul-token", edgeToken)}
		args = append(args, c.consulFlags(pki.RoleEdge, id)...)
		args = append(args, c.pki.Files(t, pki.RoleEdge, id).Flags()...)
		p := &proc{name: name, h: h, bin: filepath.Join(c.bin, "slipway-edge"), args: args, logPath: filepath.Join(c.dir, name+".log")}
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		c.edges = append(c.edges, p)
		c.edgeHosts = append(c.edgeHosts, h)
	}
	c.waitNodes(60 * time.Second)
	return c
}

// all returns every process of the cluster.
func (c *cluster) all() []*proc {
	out := []*proc{}
	if c.consul != nil {
		out = append(out, c.consul)
	}
	out = append(out, c.coords...)
	for _, a := range c.agents {
		out = append(out, a.proc)
	}
	return append(out, c.edges...)
}

func (c *cluster) writeFile(name, content string) string {
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// GetRequestMetadata sends the management token once bootstrapped.
func (c *cluster) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}

// RequireTransportSecurity is true: the token goes over mutual TLS only.
func (c *cluster) RequireTransportSecurity() bool { return true }

// consulFlags are the -consul-* flags (HTTPS, the component's own
// certificate as Consul client certificate) for a component.
func (c *cluster) consulFlags(role pki.Role, name string) []string {
	f := c.pki.Files(c.t, role, name)
	return []string{"-consul-addr", c.consulHost.ip + ":" + consulHTTPS, "-consul-scheme", "https",
		"-consul-ca", f.CA, "-consul-cert", f.Cert, "-consul-key", f.Key}
}

// consulConfig is how the suite itself reaches Consul, with the
// management token.
func (c *cluster) consulClient() *api.Client {
	f := c.pki.Files(c.t, pki.RoleClient, "faults")
	cl, err := (consulconf.Config{Addr: c.consulHost.ip + ":" + consulHTTPS, Scheme: "https", Token: c.consulMgmt,
		CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}).Client()
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// startConsul writes Consul's configuration (a single server with its data
// on disk, ACLs default deny, HTTPS only with verify_incoming) and starts it.
func (c *cluster) startConsul() {
	t := c.t
	c.consulHost = c.topo.host("consul")
	c.consulMgmt = newUUID()
	c.consulData = filepath.Join(c.dir, "consul-data")
	ip := net.ParseIP(c.consulHost.ip)
	srv := c.pki.Issue(t, pki.RoleCoordinator, "consul", func(o *pki.CertOptions) { o.IPs = []net.IP{ip} })
	hcl := fmt.Sprintf(`node_name = "consul"
server = true
bootstrap_expect = 1
data_dir = %q
bind_addr = %q
client_addr = %q
advertise_addr = %q
disable_update_check = true
log_level = "warn"
ports { http = -1 https = %s dns = -1 grpc = -1 }
performance { raft_multiplier = 1 }
acl { enabled = true default_policy = "deny" enable_token_persistence = false tokens { initial_management = %q agent = %q } }
tls { defaults { ca_file = %q cert_file = %q key_file = %q } https { verify_incoming = true } }
`, c.consulData, c.consulHost.ip, c.consulHost.ip, c.consulHost.ip, consulHTTPS, c.consulMgmt, c.consulMgmt, srv.CA, srv.Cert, srv.Key)
	cfg := c.writeFile("consul.hcl", hcl)
	c.consul = &proc{name: "consul", h: c.consulHost, bin: testenv.Binary(t, "consul"), args: []string{"agent", "-config-file", cfg},
		logPath: filepath.Join(c.dir, "consul.log")}
	if err := c.consul.start(); err != nil {
		t.Fatal(err)
	}
	if err := c.waitConsul(60 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitConsul waits until Consul has a leader and knows the management
// token, then (re)creates the component tokens.
func (c *cluster) waitConsul(d time.Duration) error {
	cl := c.consulClient()
	err := testenv.Poll(d, func() error {
		if !c.consul.running() {
			return fmt.Errorf("consul exited; see %s", c.consul.logPath)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		q := (&api.QueryOptions{}).WithContext(ctx)
		if _, _, err := cl.ACL().TokenReadSelf(q); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("consul not ready: %w", err)
	}
	for _, tok := range c.consulTokens {
		if err := c.createConsulToken(cl, tok); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) createConsulToken(cl *api.Client, t consulToken) error {
	return testenv.Poll(20*time.Second, func() error {
		// Consul answers a missing policy or token with 403 "ACL not
		// found": create, and take "already exists" as done.
		if _, _, err := cl.ACL().PolicyCreate(&api.ACLPolicy{Name: t.policy, Rules: t.rules}, nil); err != nil && !strings.Contains(err.Error(), "already exists") {
			return err
		}
		_, _, err := cl.ACL().TokenCreate(&api.ACLToken{AccessorID: t.accessor, SecretID: t.secret, Description: t.policy,
			Policies: []*api.ACLTokenPolicyLink{{Name: t.policy}}}, nil)
		if err != nil && !strings.Contains(err.Error(), "already") {
			return err
		}
		return nil
	})
}

// componentToken makes a Consul token holding the component's documented
// policy (deployments/consul/<component>.hcl).
func (c *cluster) componentToken(component string) string {
	rules, err := os.ReadFile(filepath.Join(testenv.RepoRoot(c.t), "deployments", "consul", component+".hcl"))
	if err != nil {
		c.t.Fatal(err)
	}
	tok := consulToken{policy: "slipway-" + component, rules: string(rules), accessor: newUUID(), secret: newUUID()}
	if err := c.createConsulToken(c.consulClient(), tok); err != nil {
		c.t.Fatalf("consul token for %s: %v", component, err)
	}
	c.consulTokens[component] = tok
	return tok.secret
}

// bootstrapACL waits for a leader and bootstraps Slipway's ACLs.
func (c *cluster) bootstrapACL() {
	t := c.t
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.waitLeader(ctx, nil); err != nil {
		t.Fatal(err)
	}
	err := testenv.Poll(30*time.Second, func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		resp, err := aclv1.NewAclServiceClient(c.conns[0]).Bootstrap(cctx, &aclv1.BootstrapRequest{})
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.token = resp.GetSecret()
		c.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatalf("acl bootstrap: %v", err)
	}
}

// waitLeader polls the coordinators among (nil: all running ones) until
// they agree on a leader among them and returns its index.
func (c *cluster) waitLeader(ctx context.Context, among []int) (int, error) {
	var last error
	for {
		ids := among
		if ids == nil {
			for i, p := range c.coords {
				if p.running() {
					ids = append(ids, i)
				}
			}
		}
		leader, err := c.agreedLeader(ctx, ids)
		if err == nil {
			return leader, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no agreed leader: %v", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *cluster) agreedLeader(ctx context.Context, among []int) (int, error) {
	leader := ""
	for _, i := range among {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := clusterv1.NewClusterServiceClient(c.conns[i]).GetLeader(cctx, &clusterv1.GetLeaderRequest{})
		cancel()
		switch {
		case err != nil:
			return -1, fmt.Errorf("c%d: %w", i, err)
		case resp.GetLeaderId() == "" || resp.GetGrpcAddress() == "":
			return -1, fmt.Errorf("c%d knows no leader", i)
		case leader == "":
			leader = resp.GetLeaderId()
		case leader != resp.GetLeaderId():
			return -1, fmt.Errorf("leaders differ: %s and %s", leader, resp.GetLeaderId())
		}
	}
	for _, i := range among {
		if fmt.Sprintf("c%d", i) == leader {
			return i, nil
		}
	}
	return -1, fmt.Errorf("leader %s is not among %v", leader, among)
}

// waitNodes waits until the leader lists every agent as a ready node.
func (c *cluster) waitNodes(d time.Duration) {
	c.t.Helper()
	testenv.Eventually(c.t, d, "every node agent a ready node", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := clusterv1.NewClusterServiceClient(c.conns[0]).ListNodes(ctx, &clusterv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		ready := map[string]bool{}
		for _, n := range resp.GetNodes() {
			ready[n.GetId()] = n.GetStatus() == clusterv1.NodeStatus_NODE_STATUS_READY
		}
		for _, a := range c.agents {
			if !ready[a.node] {
				return fmt.Errorf("node %s not ready (nodes: %v)", a.node, resp.GetNodes())
			}
		}
		return nil
	})
}

// deploy is a DeployService client through coordinator i.
func (c *cluster) deploy(i int) deployv1.DeployServiceClient {
	return deployv1.NewDeployServiceClient(c.conns[i])
}
