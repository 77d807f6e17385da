package engine_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// startEdge runs a real edge (built-in proxy) with extra flags and returns
// its HTTP address.
func startEdge(t *testing.T, consulAddr string, extra ...string) string {
	t.Helper()
	bin := testenv.BuildBinary(t, "./services/edge/cmd/slipway-edge")
	httpAddr := testenv.FreeAddr(t)
	logPath := filepath.Join(t.TempDir(), "edge.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("edge-%d", time.Now().UnixNano()%1e6)
	cmd := exec.Command(bin, "-id", id, "-consul-addr", consulAddr,
		"-http-addr", httpAddr, "-grpc-addr", testenv.FreeAddr(t), "-mode", "proxy")
	cmd.Args = append(cmd.Args, testenv.TLSFlags(t, pki.RoleEdge, id)...)
	cmd.Args = append(cmd.Args, extra...)
	cmd.Env = append(os.Environ(), testenv.ConsulEnvFor(t, consulAddr, "edge")...) // its token under ConsulACL, as CONSUL_HTTP_TOKEN
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("edge log:\n%s", testenv.Tail(b, 6000))
		}
	})
	return httpAddr
}

// waitServes waits until the edge answers host with version.
func waitServes(t testing.TB, edge, host, version string) {
	t.Helper()
	waitServesOnly(t, edge, host, version, 1)
}

// waitServesOnly waits until n answers in a row come from version, so a
// release still weighted beside it (one answer in two at 50%) is all but
// certainly gone from the edge's routes when it returns.
func waitServesOnly(t testing.TB, edge, host, version string, n int) {
	t.Helper()
	run := 0
	testenv.Until(t, 30*time.Second, fmt.Sprintf("edge serves only %s (%d answers in a row)", version, n), func() string {
		req, _ := http.NewRequest(http.MethodGet, "http://"+edge+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if v := resp.Header.Get("X-Slipway-Version"); resp.StatusCode != http.StatusOK || v != version {
			run = 0
			return fmt.Sprintf("%s version %q", resp.Status, v)
		}
		if run++; run < n {
			return fmt.Sprintf("%d of %d answers in a row from %s", run, n, version)
		}
		return ""
	})
}

// load sends requests through the edge until stopped and counts answers
// per version and failures.
type load struct {
	mu       sync.Mutex
	versions map[string]int
	failures []string
	stop     chan struct{}
	done     sync.WaitGroup
}

func startLoad(edge, host string, workers int) *load {
	l := &load{versions: map[string]int{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+edge+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures = append(l.failures, err.Error())
				case resp.StatusCode != http.StatusOK:
					l.failures = append(l.failures, resp.Status)
				default:
					l.versions[resp.Header.Get("X-Slipway-Version")]++
				}
				l.mu.Unlock()
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	return l
}

// total counts the answers and failures so far.
func (l *load) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.failures)
	for _, c := range l.versions {
		n += c
	}
	return n
}

// finish waits for n more answers, ends the load and fails the test if any
// request failed (during names when); it returns the answers per version.
func (l *load) finish(t *testing.T, n int, during string) map[string]int {
	t.Helper()
	after := l.total() + n
	testenv.Until(t, 30*time.Second, fmt.Sprintf("%d more requests", n), func() string {
		if got := l.total(); got < after {
			return fmt.Sprintf("%d answers", got)
		}
		return ""
	})
	versions, failures := l.end()
	t.Logf("requests per version %v, failures %d", versions, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d requests failed %s, first: %v", len(failures), during, failures[:min(5, len(failures))])
	}
	return versions
}

func (l *load) end() (map[string]int, []string) {
	close(l.stop)
	l.done.Wait()
	return l.versions, l.failures
}

// TestEngineWithEdgeNoFailedRequests runs a canary from v1 to v2 through a
// real edge under continuous traffic: no request fails, old instances are
// stopped only after the edge acknowledged the generation without them.
func TestEngineWithEdgeNoFailedRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent, an edge and demo processes")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL()) // default deny; each component with its minimal policy
	imgDir := t.TempDir()
	buildDemo(t, imgDir, "v1", "v2")
	// The edge starts first so that it is stopped last: the agent's cleanup
	// drains against a live edge.
	edge := startEdge(t, c.Addr())
	startAgent(t, c.Addr(), imgDir)
	co := coordtest.Start(t, c.Addr(), nil)
	e := newE2E(t, co, c.Addr())
	host := e.name + ".test"

	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	waitServes(t, edge, host, "v1")

	began := time.Now()
	l := startLoad(edge, host, 4)
	v2 := e.doDeploy("slipway/demo:v2", nil, quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(2 * time.Second)}, {Weight: 100}}}}))
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	t.Logf("v2 succeeded after %s", time.Since(began).Round(time.Millisecond))
	testenv.Until(t, 30*time.Second, "v1 stopped", func() string {
		if got := e.instanceIDs(1); len(got) != 0 {
			return fmt.Sprintf("v1 instances %v", got)
		}
		return ""
	})
	t.Logf("v1 stopped after %s", time.Since(began).Round(time.Millisecond))
	// Traffic keeps flowing after the last stop: 500 more answers.
	versions := l.finish(t, 500, "during the rollout")
	if versions["v1"] == 0 || versions["v2"] == 0 {
		t.Errorf("versions served = %v, want both", versions)
	}
}

// TestEngineDrainNodeNoFailedRequests drains the node running a service's
// only instance while traffic flows through a real edge: the instance keeps
// serving until its replacement on the other node passes its check, and
// only then is drained behind the route barrier, so no request fails.
func TestEngineDrainNodeNoFailedRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, two node agents, an edge and demo processes")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL()) // default deny; each component with its minimal policy
	imgDir := t.TempDir()
	buildDemo(t, imgDir, "v1")
	edge := startEdge(t, c.Addr())
	a := startAgent(t, c.Addr(), imgDir)
	b := startAgent(t, c.Addr(), imgDir)
	co := coordtest.Start(t, c.Addr(), nil)
	e := newE2E(t, co, c.Addr())
	cluster := clusterv1.NewClusterServiceClient(co.Conn)
	testenv.Until(t, 30*time.Second, "both nodes known", func() string {
		resp, err := cluster.ListNodes(context.Background(), &clusterv1.ListNodesRequest{})
		if err != nil || len(resp.GetNodes()) != 2 {
			return fmt.Sprintf("nodes %v, %v", resp.GetNodes(), err)
		}
		return ""
	})
	v1 := e.deployWith("slipway/demo:v1", 1, nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	from, to := a.nodeID, b.nodeID
	if e.passingOn()[b.nodeID] == 1 {
		from, to = b.nodeID, a.nodeID
	}
	host := e.name + ".test"
	waitServes(t, edge, host, "v1")

	l := startLoad(edge, host, 4)
	defer func() {
		select {
		case <-l.stop:
		default:
			l.end()
		}
	}()
	if _, err := cluster.DrainNode(context.Background(), &clusterv1.DrainNodeRequest{Id: from, Enable: true, By: "e2e"}); err != nil {
		t.Fatal(err)
	}
	// Capacity never dips: Consul shows a passing instance all along. (With
	// the process driver a replacement passes within a sample or two, so
	// TestDrainedNodeAllocationsMigrate is what pins the order; this checks
	// it end to end.)
	var gaps []string
	testenv.Until(t, 60*time.Second, "the instance moved to "+to, func() string {
		got := e.passingOn()
		if got != nil && got[to]+got[from] == 0 {
			gaps = append(gaps, time.Now().Format("15:04:05.000"))
		}
		if got[to] != 1 || got[from] != 0 {
			return fmt.Sprintf("passing per node %v", got)
		}
		return ""
	})
	if len(gaps) > 0 {
		t.Errorf("no passing instance at %d samples while the node drained (first at %s): the old one stopped before its replacement was healthy", len(gaps), gaps[0])
	}
	l.finish(t, 300, "while the node drained")
}
