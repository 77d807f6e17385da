package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"slipway.dev/coordinator/engine"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// misbehaving wraps the harness's agents: a stuck node answers nothing
// (every call blocks until its deadline), a failing node refuses every
// sync; every Sync call is counted per node, with the ones still out.
type misbehaving struct {
	engine.Agents
	mu     sync.Mutex
	stuck  map[string]bool
	fail   map[string]error
	calls  map[string]int
	out    map[string]int
	expiry map[string]int // stuck calls that ended by their deadline
}

func newMisbehaving(a engine.Agents) *misbehaving {
	return &misbehaving{Agents: a, stuck: map[string]bool{}, fail: map[string]error{}, calls: map[string]int{}, out: map[string]int{}, expiry: map[string]int{}}
}

func (m *misbehaving) Sync(ctx context.Context, n engine.Node, tok *agentv1.FencingToken, allocs []*agentv1.Allocation) ([]*agentv1.AllocationStatus, error) {
	m.mu.Lock()
	m.calls[n.ID]++
	stuck, fail := m.stuck[n.ID], m.fail[n.ID]
	m.out[n.ID]++
	m.mu.Unlock()
	defer func() { m.mu.Lock(); m.out[n.ID]--; m.mu.Unlock() }()
	if stuck {
		<-ctx.Done()
		m.mu.Lock()
		m.expiry[n.ID]++
		m.mu.Unlock()
		return nil, ctx.Err()
	}
	if fail != nil {
		return nil, fail
	}
	return m.Agents.Sync(ctx, n, tok, allocs)
}

func (m *misbehaving) Status(ctx context.Context, n engine.Node) ([]*agentv1.AllocationStatus, error) {
	m.mu.Lock()
	stuck := m.stuck[n.ID]
	m.mu.Unlock()
	if stuck {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return m.Agents.Status(ctx, n)
}

func (m *misbehaving) count(node string) (calls, out, expired int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[node], m.out[node], m.expiry[node]
}

// TestStuckNodeDelaysOnlyItsOwnSync: one node's agent answers nothing but
// stays discovered. Its sync is out for its whole deadline (a minute
// here), and meanwhile the other nodes are synced and a rolling update on
// them runs to success: the pass does not wait for the stuck node.
func TestStuckNodeDelaysOnlyItsOwnSync(t *testing.T) {
	h := newHarness(t, "n1", "n2", "stuck")
	m := newMisbehaving(h.agents)
	m.stuck["stuck"] = true
	h.eng.Stop()
	h.eng = engine.New(engine.Config{Raft: h.raft, FSM: h.fsm, Nodes: h.nodes, Routes: h.routes, Agents: m,
		Now: h.clock.Now, NodeGrace: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
		CallTimeout: 100 * time.Millisecond, // the stuck node's status reads give up quickly
		SyncTimeout: time.Minute, SyncWait: 100 * time.Millisecond})
	h.pass() // records the nodes; the stuck one is drained so it gets nothing placed
	if _, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{NodeId: "stuck", Enable: true, By: "test"}}}); err != nil {
		t.Fatal(err)
	}
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, fast(&deployv1.UpdateStrategy{MaxParallel: 1})))
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))

	calls, out, expired := m.count("stuck")
	if calls != 1 || out != 1 || expired != 0 {
		t.Errorf("stuck node: %d sync calls, %d out, %d expired; want its one sync still out within its deadline", calls, out, expired)
	}
	for _, n := range []string{"n1", "n2"} {
		if c, _, _ := m.count(n); c == 0 {
			t.Errorf("node %s was never synced", n)
		}
	}
	if got := len(h.agents.running()); got != 2 {
		t.Errorf("running %v, want the 2 instances of v2", h.agents.running())
	}
}

// TestDesiredSetSyncedOncePerChange: a node is sent its desired set once
// per change of that set, not once per pass: passes that change nothing
// send nothing, and no two consecutive sends to a node carry the same set.
func TestDesiredSetSyncedOncePerChange(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, fast(&deployv1.UpdateStrategy{MaxParallel: 1})))
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	for range 4 { // the drained v1 instances are stopped and removed
		h.pass()
		h.clock.Add(500 * time.Millisecond)
	}
	before := len(h.agents.syncs())
	for range 20 { // idle passes, within Resync (30s)
		h.pass()
		h.clock.Add(500 * time.Millisecond)
	}
	if after := len(h.agents.syncs()); after != before {
		t.Errorf("%d syncs during 20 idle passes, want none", after-before)
	}
	last := map[string]string{}
	for i, c := range h.agents.syncs() {
		key := setKey(c.allocs)
		if prev, ok := last[c.node]; ok && prev == key {
			t.Errorf("sync %d to %s resends the set it was sent before: %s", i, c.node, key)
		}
		last[c.node] = key
	}
	if len(h.agents.syncs()) < 4 {
		t.Errorf("only %d syncs over two rollouts", len(h.agents.syncs()))
	}
}

// TestFailedSyncBacksOff: a node whose agent refuses syncs is not called
// again on every pass; its worker waits (exponential backoff) first.
func TestFailedSyncBacksOff(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	m := newMisbehaving(h.agents)
	m.fail["n2"] = errors.New("agent broken")
	h.eng.Stop()
	h.eng = engine.New(engine.Config{Raft: h.raft, FSM: h.fsm, Nodes: h.nodes, Routes: h.routes, Agents: m,
		Now: h.clock.Now, NodeGrace: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
		SyncBackoff: time.Hour, SyncWait: time.Minute})
	h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	for range 10 {
		_, _ = h.eng.Pass(context.Background()) // n2's failure is reported
		h.clock.Add(500 * time.Millisecond)
	}
	if c, _, _ := m.count("n2"); c != 1 {
		t.Errorf("n2 was called %d times in 10 passes, want once (then backoff)", c)
	}
	if c, _, _ := m.count("n1"); c == 0 {
		t.Errorf("n1 was never synced")
	}
}

func setKey(allocs []*agentv1.Allocation) string {
	k := ""
	for _, a := range allocs {
		k += a.GetId() + "=" + a.GetDesiredState().String() + ";"
	}
	return k
}

// TestRestartedAgentResyncedAtOnce: an agent that restarted (a new boot id
// in its registration) holds no secret values, which live in its memory
// only; its node is sent its whole desired set on the next pass, not at
// the next anti-entropy Resync (30s). A node whose boot id stayed is sent
// nothing, and neither is one whose agent reports no boot id at all.
func TestRestartedAgentResyncedAtOnce(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	ns := h.nodes.get()
	for i := range ns {
		ns[i].Boot = "boot-a"
	}
	h.nodes.set(ns...)
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	for range 4 {
		h.pass()
		h.clock.Add(500 * time.Millisecond)
	}
	last := func(node string) (int, []*agentv1.Allocation) {
		n, set := 0, []*agentv1.Allocation(nil)
		for _, c := range h.agents.syncs() {
			if c.node == node {
				n, set = n+1, c.allocs
			}
		}
		return n, set
	}
	n1Before, n1Set := last("n1")
	n2Before, _ := last("n2")
	if len(n1Set) == 0 {
		t.Fatalf("n1 was sent no allocations")
	}

	ns[0].Boot = "boot-b" // n1's agent restarted
	h.nodes.set(ns...)
	h.pass()
	n1After, n1Resent := last("n1")
	n2After, _ := last("n2")
	if n1After != n1Before+1 {
		t.Fatalf("n1 (restarted) was synced %d times on the next pass, want once", n1After-n1Before)
	}
	if setKey(n1Resent) != setKey(n1Set) {
		t.Errorf("n1 was resent %s, want its whole set %s", setKey(n1Resent), setKey(n1Set))
	}
	if n2After != n2Before {
		t.Errorf("n2 (not restarted) was synced %d times, want none", n2After-n2Before)
	}
	for range 4 { // and once only
		h.pass()
		h.clock.Add(500 * time.Millisecond)
	}
	if n, _ := last("n1"); n != n1After {
		t.Errorf("n1 was synced %d more times after its resync, want none", n-n1After)
	}
}
