package engine_test

import (
	"slices"
	"testing"
	"time"

	"slipway.dev/coordinator/heartbeat"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// The tests here drive the engine with the real heartbeat view (and the
// liveness tracker in it) on the harness clock: a node agent's stream is
// Open, Beat and Close on the view, as the gRPC handler does.

const testTTL = 10 * time.Second // heartbeat TTL; the harness's NodeGrace is 5s

// streams plays the node agents' heartbeat streams.
type streams struct {
	h       *harness
	open    map[string]uint64 // node -> stream id
	version map[string]uint64
	silent  map[string]bool
}

// withStreams gives the harness's next leader a heartbeat view on its
// clock and starts the streams of nodes.
func withStreams(h *harness, nodes ...string) *streams {
	h.hb = heartbeat.New(heartbeat.Config{TTL: testTTL, Now: h.clock.Now})
	h.newLeader()
	s := &streams{h: h, open: map[string]uint64{}, version: map[string]uint64{}, silent: map[string]bool{}}
	for _, n := range nodes {
		s.open[n] = h.hb.Open(n)
	}
	s.beat()
	return s
}

// beat sends a heartbeat, with the node's statuses, on every open stream
// that is not silent.
func (s *streams) beat() {
	for n, id := range s.open {
		if s.silent[n] {
			continue
		}
		s.version[n]++
		s.h.hb.Beat(n, id, s.version[n], true, s.h.agents.statusOf(n))
	}
}

// close ends node's stream (its agent died).
func (s *streams) close(n string) {
	s.h.hb.Close(n, s.open[n])
	delete(s.open, n)
}

// run passes every step, with heartbeats, for d.
func (s *streams) run(step, d time.Duration) {
	for end := s.h.clock.Now().Add(d); s.h.clock.Now().Before(end); {
		s.h.clock.Add(step)
		s.beat()
		s.h.pass()
	}
}

// until passes every step, with heartbeats, until cond holds.
func (s *streams) until(step time.Duration, what string, cond func() bool) {
	s.h.t.Helper()
	for range 400 {
		s.h.clock.Add(step)
		s.beat()
		s.h.pass()
		if cond() {
			return
		}
	}
	s.h.t.Fatalf("never reached: %s", what)
}

func (h *harness) nodeStatus(id string) clusterv1.NodeStatus {
	for _, n := range h.fsm.Nodes() {
		if n.GetId() == id {
			return n.GetStatus()
		}
	}
	return clusterv1.NodeStatus_NODE_STATUS_UNSPECIFIED
}

// downEntries counts the node records committed DOWN for id.
func (h *harness) downEntries(id string) int {
	h.raft.mu.Lock()
	defer h.raft.mu.Unlock()
	n := 0
	for _, c := range h.raft.applied {
		for _, nd := range c.GetUpsertNodes().GetNodes() {
			if nd.GetId() == id && nd.GetStatus() == clusterv1.NodeStatus_NODE_STATUS_DOWN {
				n++
			}
		}
	}
	return n
}

// streamedFleet deploys 3 instances of web on n1..n3, which stream, and
// runs until the rollout succeeded and every node is up by its heartbeats.
func streamedFleet(t *testing.T) (*harness, *streams) {
	h := newHarness(t, "n1", "n2", "n3")
	s := withStreams(h, "n1", "n2", "n3")
	id := h.deploy(webSpec("slipway/demo:v1", 3, fast(&deployv1.UpdateStrategy{})))
	s.until(500*time.Millisecond, "v1 succeeded", h.phase(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	s.until(500*time.Millisecond, "every node up by its heartbeats", func() bool {
		for _, n := range []string{"n1", "n2", "n3"} {
			if h.hb.State(n) != heartbeat.Up {
				return false
			}
		}
		return true
	})
	if got := h.agents.ever(1); got != 3 {
		t.Fatalf("%d allocations of v1 started, want 3", got)
	}
	return h, s
}

// TestStreamingNodeFlapWithinTTLChangesNothing: a node whose heartbeats
// stop for less than the TTL, while its Consul check fails for longer than
// the node grace (which alone would take it down), is not marked down and
// none of its allocations is replaced.
func TestStreamingNodeFlapWithinTTLChangesNothing(t *testing.T) {
	h, s := streamedFleet(t)
	all := h.nodes.get()
	h.nodes.set(all[1:]...) // n1's Consul check fails...
	s.silent["n1"] = true   // ...and its heartbeats stop
	s.run(500*time.Millisecond, testTTL-2*time.Second)
	if st := h.nodeStatus("n1"); st != clusterv1.NodeStatus_NODE_STATUS_READY {
		t.Errorf("n1 is %s within the TTL, want READY", st)
	}
	s.silent["n1"] = false
	s.run(500*time.Millisecond, 3*time.Second)
	h.nodes.set(all...)
	s.run(500*time.Millisecond, 3*time.Second)
	if n := h.downEntries("n1"); n != 0 {
		t.Errorf("%d down entries for n1, want 0", n)
	}
	if got := h.agents.ever(1); got != 3 {
		t.Errorf("%d allocations of v1 started, want 3 (none replaced)", got)
	}
	if as := h.allocs(1); len(as) != 3 || !slices.ContainsFunc(as, func(a *agentv1.Allocation) bool { return a.GetNodeId() == "n1" }) {
		t.Errorf("allocations = %v, want 3 with one still on n1", as)
	}
}

// TestStreamingNodeSilentPastTTLIsDownAndReplaced: a node whose stream is
// gone for longer than the TTL is down (its Consul check still passing
// does not keep it up), its allocation is replaced on another node, and
// it is up again only after heartbeats for the settle time.
func TestStreamingNodeSilentPastTTLIsDownAndReplaced(t *testing.T) {
	h, s := streamedFleet(t)
	s.close("n1")
	s.run(500*time.Millisecond, testTTL-time.Second)
	if st := h.nodeStatus("n1"); st != clusterv1.NodeStatus_NODE_STATUS_READY {
		t.Fatalf("n1 is %s before its TTL elapsed, want READY", st)
	}
	s.until(500*time.Millisecond, "n1 down", func() bool { return h.nodeStatus("n1") == clusterv1.NodeStatus_NODE_STATUS_DOWN })
	if n := h.downEntries("n1"); n != 1 {
		t.Errorf("%d down entries for n1, want 1", n)
	}
	s.until(500*time.Millisecond, "n1's allocation replaced", func() bool {
		as := h.allocs(1)
		return len(as) == 3 && !slices.ContainsFunc(as, func(a *agentv1.Allocation) bool { return a.GetNodeId() == "n1" })
	})
	if got := h.agents.ever(1); got != 4 {
		t.Errorf("%d allocations of v1 started, want 4 (one replacement)", got)
	}
	// Back: heard from again, it is up only after the settle time.
	s.open["n1"] = h.hb.Open("n1")
	s.run(500*time.Millisecond, testTTL/2)
	if st := h.nodeStatus("n1"); st != clusterv1.NodeStatus_NODE_STATUS_DOWN {
		t.Errorf("n1 is %s half way through its settle time, want DOWN", st)
	}
	s.until(500*time.Millisecond, "n1 ready again", func() bool { return h.nodeStatus("n1") == clusterv1.NodeStatus_NODE_STATUS_READY })
}

// TestIdlePassesDoNotAskStreamingNodes: idle passes take the statuses of
// nodes with an open stream from the stream and call no Status on them; a
// node that does not stream (an older agent) is still asked every pass.
func TestIdlePassesDoNotAskStreamingNodes(t *testing.T) {
	h := newHarness(t, "n1", "n2", "old")
	s := withStreams(h, "n1", "n2")
	id := h.deploy(webSpec("slipway/demo:v1", 3, fast(&deployv1.UpdateStrategy{})))
	s.until(500*time.Millisecond, "v1 succeeded", h.phase(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	n1, n2, old := h.agents.statusCalls("n1"), h.agents.statusCalls("n2"), h.agents.statusCalls("old")
	const passes = 20
	s.run(500*time.Millisecond, passes*500*time.Millisecond)
	if d1, d2 := h.agents.statusCalls("n1")-n1, h.agents.statusCalls("n2")-n2; d1+d2 != 0 {
		t.Errorf("idle passes asked the streaming nodes for their status: n1 %d, n2 %d times, want 0", d1, d2)
	}
	if d := h.agents.statusCalls("old") - old; d != passes {
		t.Errorf("the node that does not stream was asked %d times in %d passes, want every pass", d, passes)
	}
	if got := h.agents.ever(1); got != 3 {
		t.Errorf("%d allocations started, want 3", got)
	}
}
