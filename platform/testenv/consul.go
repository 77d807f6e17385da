package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
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

	"github.com/hashicorp/consul/api"

	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/pki"
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
	ports   []int // http (https with ConsulTLS), serf lan, serf wan, server
	logPath string

	// With ConsulACL: the initial management token (also the agent's own
	// token) and the tokens made by Token, re-created after a restart
	// since a dev agent forgets them.
	acl    bool
	mgmt   string
	tokens map[string]consulToken // by Token's name
	// With ConsulTLS: the agent's HTTPS material and a client's.
	tls *consulTLS

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for
	started bool          // ports are fixed once the agent has run
}

type consulToken struct {
	policy, rules, accessor, secret string
}

type consulTLS struct {
	dir                       string
	ca, serverCert, serverKey string
	clientCert, clientKey     string
	clientConfig              *tls.Config
}

// ConsulOption changes how StartConsul starts the agent.
type ConsulOption func(*Consul)

// ConsulACL starts the agent with ACLs enabled and default deny, as a
// production Consul runs: a request without a token is Consul's anonymous
// token, which may do nothing. ManagementToken may do everything; Token and
// ComponentToken make tokens that may do what a policy says.
func ConsulACL() ConsulOption { return func(c *Consul) { c.acl = true } }

// ConsulTLS serves the agent's HTTP API over HTTPS only (plain HTTP off),
// with a certificate from a CA of the test's own, and requires a client
// certificate from that CA (verify_incoming). Config and Flags name the CA
// and a client certificate.
func ConsulTLS() ConsulOption { return func(c *Consul) { c.tls = &consulTLS{} } }

// StartConsul starts a Consul dev agent and waits until it has elected itself
// leader (and, with ConsulACL, set up its ACLs). It is stopped when the test
// ends.
func StartConsul(tb testing.TB, opts ...ConsulOption) *Consul {
	tb.Helper()
	ports, err := freePorts(4)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	c := &Consul{tb: tb, bin: Binary(tb, "consul"), ports: ports, logPath: filepath.Join(tb.TempDir(), "consul.log")}
	for _, o := range opts {
		o(c)
	}
	if c.acl {
		c.mgmt = newUUID()
		c.tokens = map[string]consulToken{}
	}
	if c.tls != nil {
		if err := c.tls.create(tb.TempDir()); err != nil {
			tb.Fatalf("testenv: consul TLS: %v", err)
		}
	}
	tb.Cleanup(func() {
		c.Stop()
		if tb.Failed() {
			if b, err := os.ReadFile(c.logPath); err == nil {
				tb.Logf("consul log (last 4KiB):\n%s", Tail(b, 4096))
			}
		}
	})
	c.Start()
	consulsMu.Lock()
	consuls[c.Addr()] = c
	consulsMu.Unlock()
	tb.Cleanup(func() {
		consulsMu.Lock()
		delete(consuls, c.Addr())
		consulsMu.Unlock()
	})
	return c
}

var (
	consulsMu sync.Mutex
	consuls   = map[string]*Consul{} // by Addr, the agents StartConsul runs in this process
)

// ConsulAt is the agent StartConsul started in this test process at addr
// (host:port), or nil. Harnesses that are handed only an address use it
// to give each component its token and TLS settings.
func ConsulAt(addr string) *Consul {
	consulsMu.Lock()
	defer consulsMu.Unlock()
	return consuls[addr]
}

// ConsulFlagsFor are the -consul-* flags with which slipway-<component>
// reaches the agent at addr: the agent's ComponentFlags when StartConsul
// started it (with the component's token under ConsulACL, the CA and a
// client certificate under ConsulTLS), else -consul-addr alone.
func ConsulFlagsFor(tb testing.TB, addr, component string) []string {
	tb.Helper()
	if c := ConsulAt(addr); c != nil {
		return c.ComponentFlags(tb, component)
	}
	return []string{"-consul-addr", addr}
}

// ConsulEnvFor is ConsulFlagsFor as Consul's own CONSUL_HTTP_* environment
// variables (Env), for a process given its Consul settings that way.
func ConsulEnvFor(tb testing.TB, addr, component string) []string {
	tb.Helper()
	if c := ConsulAt(addr); c != nil {
		return c.Env(c.ComponentToken(tb, component))
	}
	return []string{"CONSUL_HTTP_ADDR=" + addr}
}

// ConsulConfigFor is ConsulFlagsFor as a consulconf.Config, for
// components run in-process.
func ConsulConfigFor(tb testing.TB, addr, component string) consulconf.Config {
	tb.Helper()
	if c := ConsulAt(addr); c != nil {
		return c.ComponentConfig(tb, component)
	}
	return consulconf.Config{Addr: addr}
}

// ConsulAdminClientFor is an API client that may do everything on the agent
// at addr (its AdminClient when StartConsul started it), for tests that
// inspect or fake Consul state.
func ConsulAdminClientFor(tb testing.TB, addr string) *api.Client {
	tb.Helper()
	if c := ConsulAt(addr); c != nil {
		return c.AdminClient(tb)
	}
	cl, err := (consulconf.Config{Addr: addr}).Client()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return cl
}

// Addr is the agent's HTTP API address, host:port (for consul/api's
// Config.Address); HTTPS with ConsulTLS.
func (c *Consul) Addr() string { return "127.0.0.1:" + strconv.Itoa(c.ports[0]) }

// URL is the agent's HTTP API base URL (https:// with ConsulTLS).
func (c *Consul) URL() string {
	if c.tls != nil {
		return "https://" + c.Addr()
	}
	return "http://" + c.Addr()
}

// ACL reports whether the agent runs with ACLs (ConsulACL).
func (c *Consul) ACL() bool { return c.acl }

// ManagementToken is the initial management token of an agent started with
// ConsulACL ("" without): it may do everything.
func (c *Consul) ManagementToken() string { return c.mgmt }

// Config is how a component reaches this agent with token ("" is the
// anonymous token): its address and, with ConsulTLS, the CA and a client
// certificate.
func (c *Consul) Config(token string) consulconf.Config {
	cfg := consulconf.Config{Addr: c.Addr(), Token: token}
	if c.tls != nil {
		cfg.Scheme = "https"
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = c.tls.ca, c.tls.clientCert, c.tls.clientKey
	}
	return cfg
}

// Flags are the -consul-* flags of Config(token), for a component's command
// line.
func (c *Consul) Flags(token string) []string {
	f := []string{"-consul-addr", c.Addr()}
	if token != "" {
		f = append(f, "-consul-token", token)
	}
	if c.tls != nil {
		f = append(f, "-consul-scheme", "https", "-consul-ca", c.tls.ca, "-consul-cert", c.tls.clientCert, "-consul-key", c.tls.clientKey)
	}
	return f
}

// Env is Config(token) as Consul's own environment variables
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, and with ConsulTLS CONSUL_HTTP_SSL,
// CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY), for a process that
// reads them (consul/api's DefaultConfig).
func (c *Consul) Env(token string) []string {
	env := []string{"CONSUL_HTTP_ADDR=" + c.Addr(), "CONSUL_HTTP_TOKEN=" + token}
	if c.tls != nil {
		env = append(env, "CONSUL_HTTP_SSL=true", "CONSUL_CACERT="+c.tls.ca,
			"CONSUL_CLIENT_CERT="+c.tls.clientCert, "CONSUL_CLIENT_KEY="+c.tls.clientKey)
	}
	return env
}

// Client is a Consul API client of this agent with token.
func (c *Consul) Client(tb testing.TB, token string) *api.Client {
	tb.Helper()
	cl, err := c.Config(token).Client()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return cl
}

// AdminClient is a Consul API client that may do everything: with the
// management token under ConsulACL. Tests inspect and fake Consul state
// with it.
func (c *Consul) AdminClient(tb testing.TB) *api.Client {
	tb.Helper()
	return c.Client(tb, c.mgmt)
}

// Token returns the secret of a token holding a policy with the given
// rules, both created on the first call for name (policy "test-<name>") and
// re-created with the same secret after a restart. Without ConsulACL it is
// "" (every request may do everything).
func (c *Consul) Token(tb testing.TB, name, rules string) string {
	tb.Helper()
	if !c.acl {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tokens[name]; ok {
		return t.secret
	}
	t := consulToken{policy: "test-" + name, rules: rules, accessor: newUUID(), secret: newUUID()}
	if err := c.createToken(t); err != nil {
		tb.Fatalf("testenv: consul token %s: %v", name, err)
	}
	c.tokens[name] = t
	return t.secret
}

// ComponentToken is Token with the documented minimal policy of a Slipway
// component, deployments/consul/<component>.hcl: "coordinator",
// "nodeagent" or "edge".
func (c *Consul) ComponentToken(tb testing.TB, component string) string {
	tb.Helper()
	if !c.acl {
		return ""
	}
	rules, err := os.ReadFile(filepath.Join(RepoRoot(tb), "deployments", "consul", component+".hcl"))
	if err != nil {
		tb.Fatalf("testenv: consul policy of %s: %v", component, err)
	}
	return c.Token(tb, "slipway-"+component, string(rules))
}

// ComponentConfig is Config(ComponentToken(component)).
func (c *Consul) ComponentConfig(tb testing.TB, component string) consulconf.Config {
	tb.Helper()
	return c.Config(c.ComponentToken(tb, component))
}

// ComponentFlags is Flags(ComponentToken(component)): how a harness starts
// slipway-<component> against this agent, with or without ACLs and TLS.
func (c *Consul) ComponentFlags(tb testing.TB, component string) []string {
	tb.Helper()
	return c.Flags(c.ComponentToken(tb, component))
}

// createToken creates t's policy and t with the management token. c.mu is
// held (or the agent is starting).
func (c *Consul) createToken(t consulToken) error {
	cl, err := c.Config(c.mgmt).Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, _, err := cl.ACL().PolicyCreate(&api.ACLPolicy{Name: t.policy, Rules: t.rules}, w); err != nil {
		return fmt.Errorf("create policy %s: %w", t.policy, err)
	}
	if _, _, err := cl.ACL().TokenCreate(&api.ACLToken{AccessorID: t.accessor, SecretID: t.secret, Description: t.policy,
		Policies: []*api.ACLTokenPolicyLink{{Name: t.policy}}}, w); err != nil {
		return fmt.Errorf("create token for %s: %w", t.policy, err)
	}
	return nil
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// create writes a CA, the agent's certificate (localhost, 127.0.0.1) and a
// client certificate into dir.
func (t *consulTLS) create(dir string) error {
	caPEM, caKey, err := pki.CreateCA(pki.CAOptions{CommonName: "Consul test CA"})
	if err != nil {
		return err
	}
	ca, err := pki.LoadCA(caPEM, caKey)
	if err != nil {
		return err
	}
	t.dir, t.ca = dir, filepath.Join(dir, "consul-ca.pem")
	if err := os.WriteFile(t.ca, caPEM, 0o644); err != nil {
		return err
	}
	// Slipway's issuer serves our purpose: ECDSA P-256, localhost and
	// 127.0.0.1 SANs, server and client authentication.
	issue := func(name string) (string, string, error) {
		cert, key, err := ca.CreateCert(pki.CertOptions{Identity: pki.Identity{Role: pki.RoleCoordinator, Name: name}})
		if err != nil {
			return "", "", err
		}
		return pki.WritePair(dir, name, cert, key, true)
	}
	if t.serverCert, t.serverKey, err = issue("consul-server"); err != nil {
		return err
	}
	if t.clientCert, t.clientKey, err = issue("consul-client"); err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(t.clientCert, t.clientKey)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	t.clientConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return nil
}

// hcl is the agent's extra configuration for the options.
func (c *Consul) hcl() []string {
	var out []string
	if c.acl {
		out = append(out, "-hcl", fmt.Sprintf(`acl { enabled = true default_policy = "deny" enable_token_persistence = false tokens { initial_management = %q agent = %q } }`, c.mgmt, c.mgmt))
	}
	if c.tls != nil {
		out = append(out, "-hcl", fmt.Sprintf(`tls { defaults { ca_file = %q cert_file = %q key_file = %q } https { verify_incoming = true } }`,
			c.tls.ca, c.tls.serverCert, c.tls.serverKey))
	}
	return out
}

// httpClient is how testenv itself asks the agent whether it is up.
func (c *Consul) httpClient() *http.Client {
	if c.tls == nil {
		return http.DefaultClient
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls.clientConfig}, Timeout: 5 * time.Second}
}

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
	httpPorts := []string{"-http-port", strconv.Itoa(c.ports[0])}
	if c.tls != nil {
		httpPorts = []string{"-http-port", "-1", "-https-port", strconv.Itoa(c.ports[0])}
	}
	args := append([]string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1"}, httpPorts...)
	args = append(args,
		"-serf-lan-port", strconv.Itoa(c.ports[1]),
		"-serf-wan-port", strconv.Itoa(c.ports[2]),
		"-server-port", strconv.Itoa(c.ports[3]),
		"-dns-port", "-1", "-grpc-port", "-1",
		"-node", fmt.Sprintf("test-%d", c.ports[0]),
		"-log-level", "warn",
	)
	cmd := exec.Command(c.bin, append(args, c.hcl()...)...)
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
		if c.ready(ctx) {
			if err := c.restoreTokens(); err != nil {
				c.killLocked()
				return fmt.Errorf("agent on %s: restore ACL tokens: %w", c.Addr(), err)
			}
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

// ready reports whether the agent has a leader and, with ACLs, knows its
// management token (the leader creates it shortly after its election).
func (c *Consul) ready(ctx context.Context) bool {
	hc := c.httpClient()
	if !leaderKnownWith(ctx, hc, c.URL()) {
		return false
	}
	if !c.acl {
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL()+"/v1/acl/token/self", nil)
	if err != nil {
		return false
	}
	req.Header.Set("X-Consul-Token", c.mgmt)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// restoreTokens re-creates, after a restart, the tokens made by Token.
// c.mu is held.
func (c *Consul) restoreTokens() error {
	var errs []error
	for _, t := range c.tokens {
		errs = append(errs, c.createToken(t))
	}
	return errors.Join(errs...)
}

func leaderKnown(ctx context.Context, base string) bool {
	return leaderKnownWith(ctx, http.DefaultClient, base)
}

func leaderKnownWith(ctx context.Context, hc *http.Client, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/status/leader", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && len(b) > 4 // `""` when no leader
}
