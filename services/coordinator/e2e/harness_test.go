package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/coordinator/server"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// seq makes node, edge and service names unique within the test binary; the
// process id makes them unique across binaries running at the same time.
var seq atomic.Int64

func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid()%100000, seq.Add(1))
}

// requireDocker skips when no Docker Engine answers and builds the demo
// images with scripts/demo-images.sh, once per test binary: the script is
// quick when they are up to date (it keeps an image whose source label
// matches the demo's sources) and rebuilds them when the demo changed.
func requireDocker(t testing.TB) {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("Docker Engine not answering (docker info: %v)", err)
	}
	demoImages.Do(func() {
		cmd := exec.Command("bash", filepath.Join(testenv.RepoRoot(t), "scripts", "demo-images.sh"))
		cmd.Dir = testenv.RepoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			demoImagesErr = fmt.Errorf("scripts/demo-images.sh: %v\n%s", err, out)
		}
	})
	if demoImagesErr != nil {
		t.Fatal(demoImagesErr)
	}
}

var (
	demoImages    sync.Once
	demoImagesErr error
)

// buildDemoImage builds the demo from this tree's sources as
// slipway/demo:<version> with the given colour (scripts/demo-images.sh
// DEMO_VERSIONS), a tag of a test's own, so that the v1-v4 images other
// tests share are left as they are.
func buildDemoImage(t *testing.T, version, colour string) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(testenv.RepoRoot(t), "scripts", "demo-images.sh"))
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "DEMO_VERSIONS="+version+":"+colour, "SLIPWAY_IMAGES_DIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/demo-images.sh: %v\n%s", err, out)
	}
}

// removeContainers removes every container of a node (label
// slipway.node=<id>), whatever state the test left them in.
func removeContainers(t testing.TB, node string) {
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=slipway.node="+node).Output()
	if err != nil {
		t.Logf("cleanup: list containers of %s: %v", node, err)
		return
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return
	}
	if out, err := exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).CombinedOutput(); err != nil {
		t.Logf("cleanup: docker rm %v: %v\n%s", ids, err, out)
	}
}

// proc is a child process whose output goes to a log file shown on failure.
type proc struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// startProc starts bin in its own process group; stop sends SIGTERM, then
// SIGKILL to the group after 15s.
func startProc(t testing.TB, name, bin string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, name, bin, nil, args...)
}

// startProcEnv is startProc with env added to the test's environment.
func startProcEnv(t testing.TB, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, logPath: filepath.Join(t.TempDir(), name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.exited) }()
	return p
}

func (p *proc) stop(t testing.TB) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Logf("%s did not exit on SIGTERM; killing its process group", p.name)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	if t.Failed() {
		b, _ := os.ReadFile(p.logPath)
		t.Logf("%s log:\n%s", p.name, testenv.Tail(b, 6000))
	}
}

// edge is a running slipway-edge.
type edge struct {
	id, httpAddr string
}

// startEdge runs a real slipway-edge in mode (proxy or nginx), with extra
// flags appended.
func startEdge(t testing.TB, consulAddr, mode string, extra ...string) *edge {
	t.Helper()
	bin := testenv.BuildBinary(t, "./services/edge/cmd/slipway-edge")
	ed := &edge{id: unique("edge-" + mode), httpAddr: testenv.FreeAddr(t)}
	dir := t.TempDir()
	args := []string{"-id", ed.id, "-consul-addr", consulAddr, "-mode", mode, "-http-addr", ed.httpAddr,
		"-grpc-addr", testenv.FreeAddr(t), "-session-ttl", "10s"}
	args = append(args, testenv.TLSFlags(t, pki.RoleEdge, ed.id)...)
	args = append(args, extra...)
	if mode == "nginx" {
		args = append(args, "-nginx-dir", dir, "-nginx-control-addr", testenv.FreeAddr(t), "-nginx-worker-shutdown-timeout", "5s")
	}
	// Its Consul token and TLS files come as Consul's own CONSUL_HTTP_*
	// variables (the node agent and the coordinator get -consul-* flags).
	p := startProcEnv(t, ed.id, bin, testenv.ConsulEnvFor(t, consulAddr, "edge"), args...)
	t.Cleanup(func() {
		p.stop(t)
		// Safety net: an nginx master left behind is killed with its group.
		if b, err := os.ReadFile(filepath.Join(dir, "nginx.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	})
	return ed
}

// ack returns the edge's acknowledgement from Consul KV, nil when absent.
func (ed *edge) ack(t testing.TB, c *api.Client) *edgev1.EdgeAck {
	kv, _, err := c.KV().Get(catalog.EdgeKey(ed.id), nil)
	if err != nil || kv == nil {
		return nil
	}
	a := &edgev1.EdgeAck{}
	if err := protojson.Unmarshal(kv.Value, a); err != nil {
		t.Fatalf("edge ack is not protojson: %v", err)
	}
	return a
}

// startAgent runs a real node agent with the Docker driver. Its containers
// are removed by label when the test ends, also on failure.
func startAgent(t testing.TB, consulAddr string) string {
	t.Helper()
	return startAgentWith(t, consulAddr)
}

// startAgentWith is startAgent with extra agent flags.
func startAgentWith(t testing.TB, consulAddr string, extra ...string) string {
	t.Helper()
	node, _ := startAgentAt(t, consulAddr, extra...)
	return node
}

// startAgentAt is startAgentWith that also returns the agent's gRPC
// address.
func startAgentAt(t testing.TB, consulAddr string, extra ...string) (string, string) {
	t.Helper()
	bin := testenv.BuildBinary(t, "./services/nodeagent/cmd/slipway-nodeagent")
	node, addr := unique("node"), testenv.FreeAddr(t)
	// Registered first so that it runs last, after the agent stopped.
	t.Cleanup(func() { removeContainers(t, node) })
	args := append([]string{"-node-id", node, "-grpc-addr", addr, "-driver", "docker",
		"-data-dir", t.TempDir(), "-drain-window", "200ms", "-drain-timeout", "3s", "-advertise", "127.0.0.1"},
		testenv.TLSFlags(t, pki.RoleNodeAgent, node)...)
	args = append(args, extra...)
	p := startProc(t, node, bin, append(args, testenv.ConsulFlagsFor(t, consulAddr, "nodeagent")...)...)
	t.Cleanup(func() {
		// An empty desired set under a token no leader reaches stops the
		// instances through the agent (deregistered, drained), then the
		// agent stops.
		began := time.Now()
		defer func() {
			t.Logf("cleanup: node agent %s and its instances stopped in %s", node, time.Since(began).Round(time.Millisecond))
		}()
		if conn, err := rpc.Dial(addr, testenv.Creds(t, pki.RoleCoordinator, "test"), rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: node}); err == nil {
			cl := agentv1.NewNodeAgentServiceClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if _, err := cl.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 1 << 62}}, grpc.WaitForReady(true)); err != nil {
				t.Logf("cleanup: empty sync: %v", err)
			}
			deadline, _ := ctx.Deadline()
			if err := testenv.Poll(time.Until(deadline), func() error {
				st, err := cl.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
				if err != nil {
					return err
				}
				if slices.ContainsFunc(st.GetAllocations(), live) {
					return fmt.Errorf("allocations %v", st.GetAllocations())
				}
				return nil
			}); err != nil {
				t.Logf("cleanup: node agent %s still has live allocations: %v", node, err)
			}
			cancel()
			conn.Close()
		}
		p.stop(t)
	})
	return node, addr
}

// live reports whether an allocation may still have a running instance.
// (A stopped allocation that left the desired set while already stopped
// can stay listed as STOPPED by the agent; it has no instance.)
func live(a *agentv1.AllocationStatus) bool {
	switch a.GetState() {
	case agentv1.AllocationState_ALLOCATION_STATE_STOPPED, agentv1.AllocationState_ALLOCATION_STATE_FAILED:
		return false
	}
	return true
}

// startCoordinator runs a real single-node coordinator in-process with its
// engine on and returns a DeployService client once it serves.
func startCoordinator(t testing.TB, consulAddr string) deployv1.DeployServiceClient {
	t.Helper()
	cl, _ := startCoordinatorWith(t, consulAddr, nil)
	return cl
}

// startCoordinatorWith is startCoordinator with the config changed by
// configure (when not nil); it also returns the management token's secret.
func startCoordinatorWith(t testing.TB, consulAddr string, configure func(*server.Config)) (deployv1.DeployServiceClient, string) {
	t.Helper()
	c := coordtest.Start(t, consulAddr, configure)
	return c.Deploy(), c.Secret
}

// sample is one request of the load: when it was sent and what answered.
type sample struct {
	sent    time.Time
	version string
}

// traffic sends requests at a steady rate over keep-alive connections
// through the edge and records every answer with the time it was sent, so
// that a window holds exactly the requests sent inside it.
type traffic struct {
	mu                    sync.Mutex
	samples               []sample
	ok, non2xx, transport int
	byVersion             map[string]int
	errors                []string
	cancel                context.CancelFunc
	wg                    sync.WaitGroup
	stopOnce              sync.Once
}

// startTraffic starts conns workers sending rate requests/s in total to
// the edge with the given Host header.
func startTraffic(edgeAddr, host string, conns, rate int) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{byVersion: map[string]int{}, cancel: cancel}
	interval := time.Duration(float64(time.Second) * float64(conns) / float64(rate))
	for range conns {
		tr.wg.Go(func() {
			transport := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1,
				DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: transport, Timeout: 5 * time.Second}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				tr.record(do(client, edgeAddr, host, nil))
			}
		})
	}
	return tr
}

// result is one request's outcome.
type result struct {
	sent    time.Time
	status  int
	version string
	err     error
}

func do(client *http.Client, edgeAddr, host string, hdr map[string]string) result {
	r := result{sent: time.Now()}
	req, err := http.NewRequest(http.MethodGet, "http://"+edgeAddr+"/", nil)
	if err != nil {
		r.err = err
		return r
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		r.err = fmt.Errorf("read body: %w", err)
		return r
	}
	r.status, r.version = resp.StatusCode, resp.Header.Get("X-Slipway-Version")
	return r
}

// record counts an outcome; only 2xx answers become samples.
func (tr *traffic) record(r result) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch {
	case r.err != nil:
		tr.transport++
		if len(tr.errors) < 10 {
			tr.errors = append(tr.errors, r.sent.Format("15:04:05.000")+" "+r.err.Error())
		}
	case r.status < 200 || r.status > 299:
		tr.non2xx++
		if len(tr.errors) < 10 {
			tr.errors = append(tr.errors, fmt.Sprintf("%s status %d", r.sent.Format("15:04:05.000"), r.status))
		}
	default:
		tr.ok++
		tr.byVersion[r.version]++
		tr.samples = append(tr.samples, sample{sent: r.sent, version: r.version})
	}
}

// since counts the 2xx answers per version of requests sent at or after
// from.
func (tr *traffic) since(from time.Time) (map[string]int, int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	// Samples are appended as answers arrive, not quite in send order.
	out, n := map[string]int{}, 0
	for _, s := range tr.samples {
		if !s.sent.Before(from) {
			out[s.version]++
			n++
		}
	}
	return out, n
}

// failures returns the failure counts so far and the first errors.
func (tr *traffic) failures() (int, int, []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.non2xx, tr.transport, append([]string(nil), tr.errors...)
}

// summary describes the counts so far.
func (tr *traffic) summary() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	vs := make([]string, 0, len(tr.byVersion))
	for v, n := range tr.byVersion {
		vs = append(vs, fmt.Sprintf("%s=%d", v, n))
	}
	sort.Strings(vs)
	return fmt.Sprintf("requests=%d ok=%d non2xx=%d transport_errors=%d by_version{%s}",
		tr.ok+tr.non2xx+tr.transport, tr.ok, tr.non2xx, tr.transport, strings.Join(vs, " "))
}

// stop ends the load and waits for the requests in flight; it may be
// called more than once.
func (tr *traffic) stop() {
	tr.stopOnce.Do(func() {
		tr.cancel()
		tr.wg.Wait()
	})
}

// probe sends n requests with extra headers on a fresh client, counts their
// failures with the load's (they are not samples of the load) and returns
// the answers per version.
func (tr *traffic) probe(edgeAddr, host string, hdr map[string]string, n int) map[string]int {
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	out := map[string]int{}
	for range n {
		r := do(client, edgeAddr, host, hdr)
		if r.err != nil || r.status < 200 || r.status > 299 {
			tr.record(r)
			continue
		}
		tr.mu.Lock()
		tr.ok++
		tr.mu.Unlock()
		out[r.version]++
	}
	return out
}
