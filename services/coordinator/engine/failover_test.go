package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/coordinator/internal/clusterproc"
	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// TestEngineFailoverMidCanary runs three real coordinator processes with the
// engine on, a real Consul, a real node agent and a real edge (built-in
// proxy) under continuous keep-alive load. The leader is SIGKILLed while a
// canary waits at a manual step; the new leader resumes the same step
// (nothing placed or started twice), takes the promote and finishes the
// rollout, and the edge answers every request with a 200 throughout.
func TestEngineFailoverMidCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, three coordinators, a node agent, an edge and demo processes")
	}
	began := time.Now()
	c := testenv.StartConsul(t, testenv.ConsulACL()) // default deny; each component with its minimal policy
	imgDir := t.TempDir()
	buildDemo(t, imgDir, "v1", "v2")
	// The edge starts before the agent so that it is stopped after it: the
	// agent's cleanup drains against a live edge.
	edge := startEdge(t, c.Addr())
	agent := startAgent(t, c.Addr(), imgDir)
	// Stop the node's instances while the edge is still up and wait until
	// the agent has none left, before the agent's own cleanup.
	t.Cleanup(func() { agent.empty(t, 15*time.Second) })
	starts := watchStarts(t, agent.addr)

	bin := testenv.BuildBinary(t, "./services/coordinator/cmd/slipway-coordinator")
	cl, err := clusterproc.NewWithPKI(bin, t.TempDir(), 3, testenv.ProcessPKI(t))
	if err != nil {
		t.Fatal(err)
	}
	cl.Args = append([]string{"-engine=true", "-node-grace", "30s"}, testenv.ConsulFlagsFor(t, c.Addr(), "coordinator")...)
	t.Cleanup(func() {
		cl.Close()
		if t.Failed() {
			for _, p := range cl.Procs {
				b, _ := os.ReadFile(p.LogPath)
				t.Logf("==> %s log:\n%s", p.ID, testenv.Tail(b, 6000))
			}
		}
	})
	if err := cl.StartAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := cl.WaitLeader(wctx, []int{0, 1, 2})
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	survivors := []int{follower, (leader + 2) % 3}
	co := &coordtest.Coordinator{Conn: cl.Conn(follower)}
	e := newE2E(t, co, c.Addr())
	host := e.name + ".test"

	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	v1IDs := e.instanceIDs(1)
	waitServes(t, edge, host, "v1")

	// Load runs from before the canary starts until after the rollout
	// succeeded on the new leader.
	l := startTimedLoad(edge, host, 4)
	loadStopped := false
	defer func() {
		if !loadStopped {
			l.end()
		}
	}()
	v2 := e.doDeploy("slipway/demo:v2", nil, quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50, Manual: true}, {Weight: 100}}}}))
	e.waitWeights("1:50 2:50", 60*time.Second)
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 10*time.Second)
	before := e.instanceIDs(2)
	if len(before) != 1 {
		t.Fatalf("v2 instances at 50%% of 2 = %v, want 1", before)
	}
	startsBefore := starts.snapshot()

	killedAt := time.Now()
	if err := cl.Signal(leader, syscall.SIGKILL); err == nil {
		t.Log("leader exited cleanly on SIGKILL?")
	}
	wctx, wcancel = context.WithTimeout(ctx, 30*time.Second)
	newLeader, err := cl.WaitLeader(wctx, survivors)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %s killed; new leader %s after %s", cl.Procs[leader].ID, cl.Procs[newLeader].ID,
		time.Since(killedAt).Round(time.Millisecond))
	// The new leader holds the manual step: same weights, same instance.
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 10*time.Second)
	if w := e.weights(); w != "1:50 2:50" {
		t.Fatalf("weights after failover = %s", w)
	}
	// The canary split keeps being served across the failover.
	testenv.Until(t, 30*time.Second, "200 requests at the canary step since the kill", func() string {
		if n := len(l.since(killedAt)); n < 200 {
			return fmt.Sprintf("%d requests", n)
		}
		return ""
	})
	canary := l.since(killedAt)
	promotedAt := time.Now()
	testenv.Until(t, 30*time.Second, "promote through the new leader", func() string {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		_, err := e.deploy.PromoteRollout(pctx, &deployv1.PromoteRolloutRequest{Id: v2, By: "e2e"})
		if err != nil && status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("promote: %v", err)
		}
		if err != nil {
			return err.Error()
		}
		return ""
	})
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	t.Logf("v2 succeeded %s after the promote", time.Since(promotedAt).Round(time.Millisecond))
	wctx, wcancel = context.WithTimeout(ctx, 10*time.Second)
	finisher, err := cl.WaitLeader(wctx, survivors)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	if finisher != newLeader {
		t.Errorf("rollout finished under leader %s, want the new leader %s", cl.Procs[finisher].ID, cl.Procs[newLeader].ID)
	}
	e.waitWeights("2:100", 5*time.Second)
	testenv.Until(t, 30*time.Second, "only v2 serving", func() string {
		if got := e.passing(); got[1] != 0 || got[2] != 2 {
			return fmt.Sprintf("passing %v", got)
		}
		if ids := e.instanceIDs(1); len(ids) != 0 {
			return fmt.Sprintf("v1 still registered %v", ids)
		}
		return ""
	})
	// The last window: requests sent once the edge acknowledged the final
	// generation (100% v2, routing to the v2 instances only).
	after := e.instanceIDs(2)
	testenv.Until(t, 10*time.Second, "edge acknowledged 2:100", func() string { return e.edgeRoutesOnly(after) })
	lastFrom := time.Now()
	testenv.Until(t, 30*time.Second, "300 requests after the edge acknowledged 2:100", func() string {
		if n := len(l.since(lastFrom)); n < 300 {
			return fmt.Sprintf("%d requests", n)
		}
		return ""
	})
	all := l.end()
	loadStopped = true

	// Traffic: 0 failures over the whole run, canary split during the
	// failover, 100% v2 at the end.
	var failures []string
	for _, r := range all {
		if r.failure != "" {
			failures = append(failures, fmt.Sprintf("%s (sent %s after the promote, answered after %s)", r.failure,
				r.at.Sub(promotedAt).Round(time.Millisecond), r.took.Round(time.Millisecond)))
		}
	}
	t.Logf("requests %d over %s on %d keep-alive connections: per version %v, non-2xx/transport failures %d", len(all),
		all[len(all)-1].at.Sub(all[0].at).Round(time.Millisecond), l.connections(), countVersions(all), len(failures))
	for _, w := range windows(all, 2*time.Second) {
		t.Logf("  %s", w)
	}
	if len(failures) > 0 {
		t.Errorf("%d requests failed at the edge, first: %v", len(failures), failures[:min(5, len(failures))])
	}
	cv := countVersions(canary)
	t.Logf("canary step across the failover: %v", cv)
	if share := float64(cv["v2"]) / float64(len(canary)); share < 0.25 || share > 0.75 {
		t.Errorf("v2 share at the 50%% step across the failover = %.2f (%v), want about 0.5", share, cv)
	}
	last := l.sinceOf(all, lastFrom)
	lv := countVersions(last)
	t.Logf("last window (%d requests after the edge acknowledged 2:100): %v", len(last), lv)
	if lv["v2"] != len(last) {
		t.Errorf("last window = %v, want 100%% v2", lv)
	}

	// Placement: v2 placed once per slot, the canary instance kept.
	if len(after) != 2 || !slices.Contains(after, before[0]) {
		t.Errorf("v2 instances = %v, want 2 including %s placed by the old leader", after, before[0])
	}
	ro := e.rollout(v2)
	for _, c := range ro.GetCommands() {
		if !c.GetApplied() {
			t.Errorf("command %v not applied", c)
		}
	}
	// Starts seen by the node agent: every allocation started exactly once;
	// the v2 allocation started before the failover is not started again.
	got := starts.snapshot()
	if err := starts.error(); err != nil {
		t.Errorf("watching the node agent: %v", err)
	}
	var v2Seen []string
	for id, s := range got {
		if s.release == 2 {
			v2Seen = append(v2Seen, id)
		}
		if s.starts != 1 || len(s.instances) > 1 || s.restarts != 0 {
			t.Errorf("allocation %s (release %d): started %d times, instances %v, restarts %d; want exactly one start",
				id, s.release, s.starts, s.instances, s.restarts)
		}
	}
	slices.Sort(v2Seen)
	if !slices.Equal(v2Seen, after) {
		t.Errorf("v2 allocations started on the node = %v, want exactly %v", v2Seen, after)
	}
	for _, id := range v1IDs {
		if got[id].starts != 1 {
			t.Errorf("v1 allocation %s started %d times, want 1", id, got[id].starts)
		}
	}
	if b := startsBefore[before[0]]; b.starts != 1 || got[before[0]].starts != 1 {
		t.Errorf("canary allocation %s started %d times before the failover, %d in all; want 1 and 1",
			before[0], b.starts, got[before[0]].starts)
	}
	t.Logf("allocation starts seen by the node agent: %s", summarize(got))
	t.Logf("whole test %s", time.Since(began).Round(time.Millisecond))
}

// edgeRoutesOnly returns "" once every live edge acknowledged the service's
// current intent generation with exactly the instances ids routed.
func (e *e2e) edgeRoutesOnly(ids []string) string {
	in := e.intent()
	if in == nil {
		return "no intent"
	}
	kvs, _, err := e.consul.KV().List(catalog.EdgesPrefix, nil)
	if err != nil {
		return err.Error()
	}
	live := 0
	for _, kv := range kvs {
		if kv.Session == "" {
			continue
		}
		live++
		ack := &edgev1.EdgeAck{}
		if err := protojson.Unmarshal(kv.Value, ack); err != nil {
			return fmt.Sprintf("edge ack %s: %v", kv.Key, err)
		}
		g := ack.GetGenerations()[e.name]
		routed := slices.Sorted(slices.Values(ack.GetInstances()[e.name].GetIds()))
		if g < in.GetGeneration() || !slices.Equal(routed, ids) {
			return fmt.Sprintf("edge %s acked generation %d routing %v; intent generation %d, want %v", ack.GetEdgeId(), g, routed, in.GetGeneration(), ids)
		}
	}
	if live == 0 {
		return "no live edge ack"
	}
	return ""
}

// allocStarts is what the node agent reported about one allocation.
type allocStarts struct {
	release   uint64
	starts    int
	restarts  int32
	instances []string
	state     agentv1.AllocationState
}

// startWatch records the node agent's allocation changes from its
// WatchAllocations stream.
type startWatch struct {
	mu     sync.Mutex
	allocs map[string]*allocStarts
	err    error
}

// watchStarts watches a node agent from now on and counts each allocation's
// entries into STARTING and the instances it ran on. The watch ends at
// cleanup, before the agent's own cleanup.
func watchStarts(t *testing.T, addr string) *startWatch {
	t.Helper()
	conn, err := rpc.Dial(addr, testenv.Creds(t, pki.RoleCoordinator, "test"), rpc.ExpectRole(pki.RoleNodeAgent))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := agentv1.NewNodeAgentServiceClient(conn).WatchAllocations(ctx, &agentv1.WatchAllocationsRequest{}, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		conn.Close()
		t.Fatal(err)
	}
	w := &startWatch{allocs: map[string]*allocStarts{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, io.EOF) {
					w.mu.Lock()
					w.err = err
					w.mu.Unlock()
				}
				return
			}
			w.record(ev.GetAllocation())
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
	})
	return w
}

func (w *startWatch) record(st *agentv1.AllocationStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.allocs[st.GetAllocationId()]
	if a == nil {
		a = &allocStarts{release: st.GetRelease()}
		w.allocs[st.GetAllocationId()] = a
	}
	if st.GetState() == agentv1.AllocationState_ALLOCATION_STATE_STARTING && a.state != st.GetState() {
		a.starts++
	}
	a.state = st.GetState()
	if c := st.GetContainerId(); c != "" && !slices.Contains(a.instances, c) {
		a.instances = append(a.instances, c)
	}
	a.restarts = max(a.restarts, st.GetRestarts())
}

func (w *startWatch) snapshot() map[string]allocStarts {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]allocStarts, len(w.allocs))
	for id, a := range w.allocs {
		c := *a
		c.instances = slices.Clone(a.instances)
		out[id] = c
	}
	return out
}

func (w *startWatch) error() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func summarize(m map[string]allocStarts) string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%s(r%d)=%d ", id, m[id].release, m[id].starts)
	}
	return strings.TrimSpace(b.String())
}

// answer is one request through the edge: when it was sent, the version
// that answered or why it failed.
type answer struct {
	at      time.Time
	took    time.Duration
	version string
	failure string
}

// timedLoad sends keep-alive requests through the edge until stopped and
// records every answer with the time it was sent.
type timedLoad struct {
	mu       sync.Mutex
	answers  []answer
	newConns int
	client   *http.Client
	stop     chan struct{}
	done     sync.WaitGroup
}

func startTimedLoad(edge, host string, workers int) *timedLoad {
	l := &timedLoad{stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	l.client = client
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
				at := time.Now()
				trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
					if !ci.Reused {
						l.mu.Lock()
						l.newConns++
						l.mu.Unlock()
					}
				}}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "http://"+edge+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				a := answer{at: at}
				switch {
				case err != nil:
					a.failure = err.Error()
				default:
					_, cerr := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode < 200 || resp.StatusCode > 299:
						a.failure = resp.Status
					case cerr != nil:
						a.failure = "body: " + cerr.Error()
					default:
						a.version = resp.Header.Get("X-Slipway-Version")
					}
				}
				a.took = time.Since(at)
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// since returns the answers to requests sent at or after from.
func (l *timedLoad) since(from time.Time) []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sinceOf(l.answers, from)
}

func (l *timedLoad) sinceOf(all []answer, from time.Time) []answer {
	var out []answer
	for _, a := range all {
		if !a.at.Before(from) {
			out = append(out, a)
		}
	}
	return out
}

// connections counts the connections the load opened.
func (l *timedLoad) connections() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.newConns
}

// end stops the load and returns every answer sorted by send time.
func (l *timedLoad) end() []answer {
	close(l.stop)
	l.done.Wait()
	l.client.CloseIdleConnections()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.answers)
	slices.SortFunc(out, func(a, b answer) int { return a.at.Compare(b.at) })
	return out
}

func countVersions(as []answer) map[string]int {
	out := map[string]int{}
	for _, a := range as {
		if a.failure == "" {
			out[a.version]++
		}
	}
	return out
}

// windows describes the share of answers per version in consecutive
// windows of d.
func windows(all []answer, d time.Duration) []string {
	if len(all) == 0 {
		return nil
	}
	var out []string
	start := all[0].at
	for i := 0; i < len(all); {
		end := start.Add(d)
		j := i
		for j < len(all) && all[j].at.Before(end) {
			j++
		}
		if j > i {
			w := all[i:j]
			cv := countVersions(w)
			out = append(out, fmt.Sprintf("+%5.1fs %5d req  v1 %5.1f%%  v2 %5.1f%%  failed %d", start.Sub(all[0].at).Seconds(),
				len(w), 100*float64(cv["v1"])/float64(len(w)), 100*float64(cv["v2"])/float64(len(w)), len(w)-cv["v1"]-cv["v2"]))
		}
		i, start = j, end
	}
	return out
}
