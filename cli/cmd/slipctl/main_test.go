package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
	"slipway.dev/slipctl/command"
)

// coordinator is a real slipway-coordinator process.
type coordinator struct {
	t    *testing.T
	bin  string
	args []string
	addr string
	log  *syncBuffer
	cmd  *exec.Cmd
	done chan struct{}
	// clientEnv names a client certificate the coordinator trusts.
	clientEnv []string
}

// startCoordinator starts a single-node coordinator on free loopback ports,
// on mutual TLS with tokens required, and stops it when the test ends;
// extra flags come last.
func startCoordinator(t *testing.T, extra ...string) *coordinator {
	t.Helper()
	c := &coordinator{
		t:    t,
		bin:  testenv.BuildBinary(t, "./services/coordinator/cmd/slipway-coordinator"),
		addr: testenv.FreeAddr(t),
		log:  &syncBuffer{},
	}
	c.args = append([]string{"-bootstrap", "-id", "e2e-c1", "-data-dir", t.TempDir(),
		"-grpc-addr", c.addr, "-raft-addr", testenv.FreeAddr(t), "-log-level", "warn", "-engine=false"}, c.tls("e2e-c1")...)
	c.args = append(c.args, extra...)
	c.start()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("coordinator log:\n%s", c.log.String())
		}
	})
	return c
}

// tls makes a CA and certificates for the coordinator id and a client with
// slipctl tls itself, and returns the coordinator's TLS flags; the client's
// files are in c.clientEnv.
func (c *coordinator) tls(id string) []string {
	c.t.Helper()
	dir := c.t.TempDir()
	bin := testenv.BuildBinary(c.t, "./cli/cmd/slipctl")
	for _, args := range [][]string{
		{"tls", "ca", "create", "--dir", dir},
		{"tls", "cert", "create", "--dir", dir, "--role", "coordinator", "--name", id},
		{"tls", "cert", "create", "--dir", dir, "--role", "client", "--name", "e2e"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Env = cleanEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			c.t.Fatalf("slipctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	c.clientEnv = []string{"SLIPWAY_TLS_CA=" + filepath.Join(dir, "ca.pem"),
		"SLIPWAY_TLS_CERT=" + filepath.Join(dir, "client-e2e.pem"), "SLIPWAY_TLS_KEY=" + filepath.Join(dir, "client-e2e-key.pem")}
	return []string{"-tls-ca", filepath.Join(dir, "ca.pem"),
		"-tls-cert", filepath.Join(dir, "coordinator-"+id+".pem"), "-tls-key", filepath.Join(dir, "coordinator-"+id+"-key.pem")}
}

// start starts the process, again after stop with the same data and ports.
func (c *coordinator) start() {
	c.t.Helper()
	c.cmd = exec.Command(c.bin, c.args...)
	c.cmd.Env = cleanEnv()
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("start coordinator: %v", err)
	}
	done := make(chan struct{})
	c.done = done
	cmd := c.cmd
	go func() { _ = cmd.Wait(); close(done) }()
}

// stop ends the coordinator with SIGTERM, then SIGKILL if it lingers.
func (c *coordinator) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// cleanEnv is the test's environment without SLIPWAY_* variables, which
// both binaries read.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLIPWAY_") {
			env = append(env, kv)
		}
	}
	return env
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cli runs the slipctl binary against one coordinator.
type cli struct {
	t    *testing.T
	bin  string
	addr string
	env  []string // SLIPWAY_TLS_* (and SLIPWAY_TOKEN)
}

type result struct {
	code           int
	stdout, stderr string
}

func (c *cli) command(args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(append(cleanEnv(), "SLIPWAY_ADDR="+c.addr, "SLIPWAY_ACTOR=e2e"), c.env...)
	cmd.Dir = testenv.RepoRoot(c.t)
	return cmd
}

func (c *cli) run(args ...string) result {
	c.t.Helper()
	cmd := c.command(args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run slipctl %v: %v", args, err)
	}
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// must runs slipctl and fails the test unless it exits with code.
func (c *cli) must(code int, args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != code {
		c.t.Fatalf("slipctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

// mustJSON runs slipctl with -o json, expecting exit 0, and decodes stdout.
func (c *cli) mustJSON(v any, args ...string) {
	c.t.Helper()
	r := c.must(0, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		c.t.Fatalf("slipctl %s -o json: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
}

func contains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

// background is a slipctl process running while the test goes on.
type background struct {
	cmd         *exec.Cmd
	out, errOut *syncBuffer
	done        chan struct{}
	err         error
}

// start runs slipctl in the background, killed at the end of the test if
// it is still running.
func (c *cli) start(args ...string) *background {
	c.t.Helper()
	b := &background{cmd: c.command(args...), out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.errOut
	if err := b.cmd.Start(); err != nil {
		c.t.Fatalf("start slipctl %v: %v", args, err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.done) }()
	c.t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// exitCode waits for the process to end and returns its exit code.
func (b *background) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(timeout):
		t.Fatalf("slipctl %v still running after %s; stdout:\n%s\nstderr:\n%s", b.cmd.Args[1:], timeout, b.out.String(), b.errOut.String())
	}
	var ee *exec.ExitError
	if errors.As(b.err, &ee) {
		return ee.ExitCode()
	}
	if b.err != nil {
		t.Fatalf("slipctl %v: %v", b.cmd.Args[1:], b.err)
	}
	return 0
}

// waitOutput waits until b has printed want on stdout.
func (b *background) waitOutput(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, fmt.Sprintf("slipctl %v to print %q", b.cmd.Args[1:], want), func() error {
		if out := b.out.String(); !strings.Contains(out, want) {
			return fmt.Errorf("stdout so far:\n%s\nstderr so far:\n%s", out, b.errOut.String())
		}
		return nil
	})
}

// failed describes a slipctl run for a wait that is not over yet.
func (r result) failed() error {
	return fmt.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

type rolloutJSON struct {
	ID       string `json:"id"`
	Service  string `json:"service"`
	State    string `json:"state"`
	Strategy string `json:"strategy"`
	Commands []struct {
		Kind   string `json:"kind"`
		By     string `json:"by"`
		Reason string `json:"reason"`
	} `json:"commands"`
}

type deployJSON struct {
	Release struct {
		Service   string `json:"service"`
		Number    string `json:"number"`
		RequestID string `json:"requestId"`
	} `json:"release"`
	Rollout  rolloutJSON `json:"rollout"`
	Replayed bool        `json:"replayed"`
}

// TestSlipctlAgainstCoordinator drives the real slipctl binary against a
// real single-node coordinator, in both output modes, checking output and
// exit codes.
func TestSlipctlAgainstCoordinator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coordinator")
	}
	coord := startCoordinator(t)
	c := &cli{t: t, bin: testenv.BuildBinary(t, "./cli/cmd/slipctl"), addr: coord.addr, env: coord.clientEnv}

	testenv.Eventually(t, 30*time.Second, "a raft leader", func() error {
		r := c.run("cluster", "leader", "-o", "json", "--timeout", "1s")
		var leader struct {
			LeaderID string `json:"leaderId"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &leader) != nil || leader.LeaderID != "e2e-c1" {
			return r.failed()
		}
		return nil
	})
	// Tokens are required: bootstrap the management token, as an operator
	// would, and use it from here on.
	var boot struct {
		Secret string `json:"secret"`
	}
	c.mustJSON(&boot, "acl", "bootstrap")
	c.env = append(c.env, "SLIPWAY_TOKEN="+boot.Secret)

	// cluster peers, both modes.
	r := c.must(0, "cluster", "peers")
	contains(t, "cluster peers", r.stdout, "ID", "RAFT ADDRESS", "e2e-c1", "leader", "leader e2e-c1, term")
	var peers struct {
		Peers []struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		} `json:"peers"`
		LeaderID string `json:"leaderId"`
	}
	c.mustJSON(&peers, "cluster", "peers")
	if len(peers.Peers) != 1 || peers.Peers[0].ID != "e2e-c1" || peers.Peers[0].Role != "PEER_ROLE_LEADER" || peers.LeaderID != "e2e-c1" {
		t.Errorf("cluster peers -o json = %+v, want e2e-c1 as the only peer and leader", peers)
	}

	// plan: a dry run that commits nothing (the deploy below is still #1).
	canary := filepath.Join("deployments", "examples", "canary.yaml")
	r = c.must(0, "plan", "-f", canary)
	contains(t, "plan stdout", r.stdout, "plan: service api, release #1 (slipway/demo:v2), first deploy as rollout api-1",
		"1/1  100%  4 inst  start 4 instance(s) of #1", "nothing was deployed")

	// deploy, then its idempotent retry.
	r = c.must(0, "deploy", "-f", canary, "--request-id", "ci-42", "--reason", "first release")
	contains(t, "deploy stdout", r.stdout, "release api #1 created", "rollout api-1 PENDING (canary")
	contains(t, "deploy stderr", r.stderr, "request id ci-42")
	var dep deployJSON
	c.mustJSON(&dep, "deploy", "-f", canary, "--request-id", "ci-42")
	if !dep.Replayed || dep.Release.Number != "1" || dep.Rollout.ID != "api-1" || dep.Release.RequestID != "ci-42" {
		t.Errorf("retried deploy -o json = %+v, want release 1 replayed", dep)
	}

	// The same request id with another spec is refused (exit 4, conflict),
	// naming the id and the release it made; nothing is deployed.
	r = c.must(4, "deploy", "-f", filepath.Join("deployments", "examples", "rolling.yaml"), "--request-id", "ci-42", "--supersede")
	contains(t, "reused request id stderr", r.stderr, "already exists", `request_id "ci-42" was used for release 1 of service "api" with a different spec`)

	// A second rollout while one is active is a conflict.
	r = c.must(4, "deploy", "-f", canary)
	contains(t, "conflicting deploy stderr", r.stderr, "failed precondition", "api-1")

	// plan against the active rollout: the diff, the canary's steps with
	// the command that moves the manual one on, and exit 4 as deploy would.
	changed := filepath.Join(t.TempDir(), "api.yaml")
	spec, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), canary))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(changed, []byte(strings.ReplaceAll(string(spec), "slipway/demo:v2", "slipway/demo:v3")), 0o644); err != nil {
		t.Fatal(err)
	}
	r = c.must(4, "plan", "-f", changed)
	contains(t, "plan of a change", r.stdout, "release #2 (slipway/demo:v3)", "changes from #1:", "~ image: slipway/demo:v2 -> slipway/demo:v3",
		"rollout api-1 is active: deploy would be refused")
	r = c.must(0, "plan", "-f", changed, "--supersede", "-o", "json")
	var plan struct {
		Release uint64 `json:"release"`
		Changes []struct{ Field, From, To string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil || plan.Release != 2 || len(plan.Changes) != 1 || plan.Changes[0].Field != "image" {
		t.Errorf("plan -o json: %v\n%s", err, r.stdout)
	}
	// The coordinator's rules, offline, at their lines.
	r = c.must(2, "plan", "-f", filepath.Join(t.TempDir(), "missing.yaml"))
	contains(t, "plan of a missing file", r.stderr, "no such file")

	// A spec the server rejects lists every violation, one per line.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: Bad_Name\nimage: slipway/demo:v2\ncount: -1\nport: 70000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = c.must(2, "deploy", "-f", bad)
	// Violations found by the coordinator are named at their lines of the file.
	contains(t, "invalid deploy stderr", r.stderr, "invalid argument: 3 violation(s):\n",
		"\n  "+bad+":1: name: \"Bad_Name\" is not a DNS label", "\n  "+bad+":3: count: must be between 0 and 1000, got -1\n", "\n  "+bad+":4: port: must be between 1 and 65535, got 70000")
	// A spec file with an unknown field never reaches the server.
	if err := os.WriteFile(bad, []byte("name: web\nimage: slipway/demo:v2\nport: 80\nreplicas: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = c.must(2, "deploy", "-f", bad)
	contains(t, "unknown field stderr", r.stderr, bad+`:4: replicas: unknown field "replicas"`)

	var web deployJSON
	c.mustJSON(&web, "deploy", "-f", filepath.Join("deployments", "examples", "rolling.yaml"))
	if web.Rollout.ID != "web-1" || web.Rollout.Strategy != "STRATEGY_ROLLING" || web.Replayed {
		t.Errorf("deploy rolling.yaml -o json = %+v, want new rollout web-1", web)
	}

	// services and service.
	r = c.must(0, "services")
	contains(t, "services", r.stdout, "NAME", "ACTIVE ROLLOUT", "api-1", "web-1", "slipway/demo:v2")
	var svcs struct {
		Services []struct {
			Name          string `json:"name"`
			LatestRelease string `json:"latestRelease"`
			ActiveRollout string `json:"activeRollout"`
		} `json:"services"`
	}
	c.mustJSON(&svcs, "services", "--leader-read")
	if len(svcs.Services) != 2 || svcs.Services[0].Name != "api" || svcs.Services[1].Name != "web" || svcs.Services[0].ActiveRollout != "api-1" {
		t.Errorf("services -o json = %+v, want api (active api-1) and web", svcs)
	}
	r = c.must(0, "service", "api")
	contains(t, "service api", r.stdout, "active rollout:  api-1", "route:           api.local/", "strategy:        canary")
	c.must(3, "service", "nope")

	// history.
	r = c.must(0, "history", "api")
	contains(t, "history", r.stdout, "RELEASE", "#1", "e2e", "first release", "ACTION", "deploy")
	var hist struct {
		Releases []struct {
			Number    string `json:"number"`
			CreatedBy string `json:"createdBy"`
			Reason    string `json:"reason"`
		} `json:"releases"`
		Audit []struct {
			Action string `json:"action"`
		} `json:"audit"`
	}
	c.mustJSON(&hist, "history", "api")
	if len(hist.Releases) != 1 || hist.Releases[0].CreatedBy != "e2e" || hist.Releases[0].Reason != "first release" || len(hist.Audit) == 0 {
		t.Errorf("history api -o json = %+v, want release 1 by e2e with its audit trail", hist)
	}

	// rollout get, list, pause.
	r = c.must(0, "rollout", "get", "api-1")
	contains(t, "rollout get", r.stdout, "rollout:   api-1", "strategy:  canary", "state:     ", "STEP", "created release 1")
	r = c.must(0, "rollout", "list")
	contains(t, "rollout list", r.stdout, "ID", "STATE", "api-1", "web-1")
	var list struct {
		Rollouts []rolloutJSON `json:"rollouts"`
	}
	c.mustJSON(&list, "rollout", "list", "--service", "api", "--active")
	if len(list.Rollouts) != 1 || list.Rollouts[0].ID != "api-1" {
		t.Errorf("rollout list --service api --active = %+v, want only api-1", list)
	}
	r = c.must(0, "rollout", "pause", "api-1", "--reason", "hold on")
	contains(t, "rollout pause", r.stdout, "pause recorded for rollout api-1")
	var got struct {
		Rollout rolloutJSON `json:"rollout"`
	}
	c.mustJSON(&got, "rollout", "get", "api-1")
	if cmds := got.Rollout.Commands; len(cmds) != 1 || cmds[0].Kind != "COMMAND_KIND_PAUSE" || cmds[0].By != "e2e" || cmds[0].Reason != "hold on" {
		t.Errorf("rollout get api-1 commands = %+v, want the pause by e2e", cmds)
	}
	c.must(3, "rollout", "get", "api-404")
	c.must(3, "rollout", "pause", "api-404")

	// deploy --wait follows the rollout and fails when it is superseded.
	wait := c.start("deploy", "-f", canary, "--supersede", "--wait")
	wait.waitOutput(t, "created release 2", 20*time.Second)
	c.must(0, "deploy", "-f", canary, "--supersede", "--reason", "newer")
	if code := wait.exitCode(t, 20*time.Second); code != 1 {
		t.Errorf("deploy --wait on a superseded rollout: exit %d, want 1", code)
	}
	contains(t, "deploy --wait stdout", wait.out.String(), "release api #2 created", "superseded", "rollout api-2 SUPERSEDED after")
	contains(t, "deploy --wait stderr", wait.errOut.String(), "rollout api-2 ended SUPERSEDED: superseded by api-3")

	// rollout watch survives a coordinator restart: it resumes after the
	// last event it saw, without repeating one.
	watch := c.start("rollout", "watch", "api-3", "--timeout", "60s")
	watch.waitOutput(t, "created release 3", 20*time.Second)
	coord.stop()
	watch.waitOutput(t, "watch interrupted", 20*time.Second) // the coordinator is gone
	coord.start()
	testenv.Eventually(t, 30*time.Second, "the restarted coordinator to lead", func() error {
		if r := c.run("deploy", "-f", canary, "--supersede", "--request-id", "after-restart", "--timeout", "1s"); r.code != 0 {
			return r.failed()
		}
		return nil
	})
	if code := watch.exitCode(t, 30*time.Second); code != 1 {
		t.Errorf("rollout watch of a superseded rollout: exit %d, want 1", code)
	}
	if out := watch.out.String(); strings.Count(out, "created release 3") != 1 || !strings.Contains(out, "superseded by api-4") {
		t.Errorf("rollout watch across a restart should show each event once and end superseded by api-4:\n%s", out)
	}

	// rollback, and the operator commands on its rollout.
	var rb struct {
		Release struct {
			Number     string `json:"number"`
			RollbackOf string `json:"rollbackOf"`
		} `json:"release"`
		Rollout rolloutJSON `json:"rollout"`
	}
	c.mustJSON(&rb, "rollback", "api", "--to", "1", "--supersede", "--reason", "back to one")
	if rb.Release.Number != "5" || rb.Release.RollbackOf != "1" || rb.Rollout.ID != "api-5" {
		t.Errorf("rollback api --to 1 -o json = %+v, want release 5 re-deploying release 1", rb)
	}
	c.must(4, "rollback", "api")
	c.must(3, "rollback", "nope")
	r = c.must(0, "rollout", "promote", "api-5", "--full")
	contains(t, "rollout promote", r.stdout, "full promote recorded for rollout api-5")
	c.must(0, "rollout", "resume", "api-5")
	r = c.must(0, "rollout", "abort", "api-5", "--reason", "stop")
	contains(t, "rollout abort", r.stdout, "abort recorded for rollout api-5")
	r = c.must(0, "rollout", "get", "api-5")
	contains(t, "rollout get api-5", r.stdout, "COMMAND", "promote (full)", "resume", "abort", "stop")

	r = c.must(0, "cluster", "leader")
	contains(t, "cluster leader", r.stdout, "leader e2e-c1 (raft 127.0.0.1:", "grpc "+coord.addr)
	r = c.must(0, "cluster", "nodes")
	contains(t, "cluster nodes", r.stdout, "ID", "STATUS", "DRAINING")
	c.must(3, "cluster", "drain", "nope")

	// rollout watch of a finished rollout replays its events and exits 1.
	r = c.must(1, "rollout", "watch", "api-1")
	contains(t, "rollout watch", r.stdout, "created", "command", "pause requested", "rollout api-1 SUPERSEDED")
	r = c.must(1, "rollout", "watch", "api-1", "-o", "json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var last struct {
		Event struct {
			Kind  string `json:"kind"`
			State string `json:"state"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Event.State != "ROLLOUT_STATE_SUPERSEDED" || len(lines) < 3 {
		t.Errorf("rollout watch -o json: %v; want JSON lines ending with the superseded event, got:\n%s", err, r.stdout)
	}

	// rollout get --watch: plain lines when not a terminal, like watch...
	r = c.must(1, "rollout", "get", "api-1", "--watch")
	contains(t, "rollout get --watch (no terminal)", r.stdout, "created", "pause requested", "rollout api-1 SUPERSEDED")
	// ...and on a terminal the live tree, with the releases' images, from
	// the real coordinator (slipctl in-process, its stdout a "terminal").
	var tree bytes.Buffer
	env := map[string]string{"SLIPWAY_ADDR": coord.addr, "SLIPWAY_TOKEN": boot.Secret}
	for _, kv := range coord.clientEnv {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := command.Main(ctx, []string{"rollout", "get", "api-1", "--watch"}, command.Env{
		Stdout: &tree, Stderr: &tree, Getenv: func(k string) string { return env[k] }, Terminal: true, Width: 120,
	})
	if code != 1 {
		t.Errorf("rollout get api-1 --watch on a terminal: exit %d, want 1 (superseded)\n%s", code, tree.String())
	}
	contains(t, "rollout get --watch tree", tree.String(), "rollout api-1  canary  SUPERSEDED", "├── new     #1   slipway/demo:v2",
		"│   └── ✗ 1/1  start 4 instance(s) of #1", "└── events", "superseded by api-2", "\033[")

	// Without a coordinator: exit code 5.
	coord.stop()
	r = c.must(5, "services", "--timeout", "2s")
	contains(t, "services without coordinator", r.stderr, "unavailable")
}

func TestClusterLeaderExitsUnavailableWithoutLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coordinator")
	}
	// A coordinator that neither bootstraps nor joins never has a leader.
	coord := &coordinator{
		t:    t,
		bin:  testenv.BuildBinary(t, "./services/coordinator/cmd/slipway-coordinator"),
		addr: testenv.FreeAddr(t),
		log:  &syncBuffer{},
	}
	coord.args = append([]string{"-id", "lonely", "-data-dir", t.TempDir(),
		"-grpc-addr", coord.addr, "-raft-addr", testenv.FreeAddr(t), "-log-level", "warn", "-engine=false"}, coord.tls("lonely")...)
	coord.start()
	t.Cleanup(coord.stop)
	c := &cli{t: t, bin: testenv.BuildBinary(t, "./cli/cmd/slipctl"), addr: coord.addr, env: coord.clientEnv}

	var r result
	testenv.Eventually(t, 30*time.Second, "the coordinator to answer", func() error {
		r = c.run("cluster", "leader", "--timeout", "1s")
		if !strings.Contains(r.stdout, "leader") {
			return r.failed()
		}
		return nil
	})
	if r.code != 5 {
		t.Fatalf("cluster leader with no leader: exit %d, want 5\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	contains(t, "cluster leader stderr", r.stderr, "lonely knows no leader yet")
}
