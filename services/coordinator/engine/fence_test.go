package engine_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"slipway.dev/coordinator/heartbeat"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// edge plays the edges: it routes every instance of web that a node's agent
// runs (what it was last told to run: a node the leader cannot reach keeps
// running what it had), except on the nodes fenced, and acknowledges the
// committed intent. It returns the routed ids.
func (h *harness) edge() []string { return h.edgeFencing(true) }

// edgeFencing is edge, by an edge that knows fences (or not).
func (h *harness) edgeFencing(fences bool) []string {
	h.agents.mu.Lock()
	var routed []string
	for node, allocs := range h.agents.desired {
		for _, a := range allocs {
			if a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED && (!fences || !h.routes.isFenced(node)) {
				routed = append(routed, a.GetId())
			}
		}
	}
	h.agents.mu.Unlock()
	slices.Sort(routed)
	h.routes.setAcks(&edgev1.EdgeAck{EdgeId: "e1", Generations: map[string]uint64{"web": h.fsm.Intent("web").GetGeneration()},
		Instances: map[string]*edgev1.InstanceList{"web": {Ids: routed}}})
	return routed
}

// TestNodeCutOffFromLeaderOnlyServesWithinBound: a node whose heartbeat
// stream goes silent while its Consul check passes (cut off from the
// coordinators, not from Consul or the edges) still has its two instances
// routed. They keep serving while their replacements start, but never
// more than the bound (count 6 + max_parallel 1) serve: one replacement
// at a time while they are routed, then the node is fenced and the rest
// are replaced once no edge routes them. Back and synced, the node is
// unfenced.
func TestNodeCutOffFromLeaderOnlyServesWithinBound(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	s := withStreams(h, "n1", "n2", "n3")
	id := h.deploy(webSpec("slipway/demo:v1", 6, fast(&deployv1.UpdateStrategy{MaxParallel: 1})))
	step := func(what string, cond func() bool) {
		t.Helper()
		for range 400 {
			h.clock.Add(500 * time.Millisecond)
			s.beat()
			if r := h.edge(); len(r) > 7 {
				t.Fatalf("%d instances of web routed, bound 7: %v", len(r), r)
			}
			h.pass()
			if cond() {
				return
			}
		}
		t.Fatalf("never reached: %s", what)
	}
	step("v1 succeeded", h.phase(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	step("every node up by its heartbeats", func() bool { return h.hb.State("n1") == heartbeat.Up })
	onN1 := 0
	for _, a := range h.allocs(1) {
		if a.GetNodeId() == "n1" {
			onN1++
		}
	}
	if onN1 != 2 {
		t.Fatalf("%d allocations on n1, want 2 of 6 on 3 nodes", onN1)
	}
	s.close("n1") // cut off from the coordinators; its Consul check still passes
	step("n1 fenced", func() bool { return h.routes.isFenced("n1") })
	if n := h.agents.ever(1); n != 7 {
		t.Errorf("%d allocations of v1 started before n1 was fenced, want 7 (one replacement while n1's serve)", n)
	}
	step("n1's allocations replaced", func() bool {
		as := h.allocs(1)
		return len(as) == 6 && !slices.ContainsFunc(as, func(a *agentv1.Allocation) bool { return a.GetNodeId() == "n1" })
	})
	if !h.routes.isFenced("n1") {
		t.Fatal("n1 unfenced while it is down")
	}
	// Back: its agent still runs the replaced instances until a leader
	// syncs it; the fence holds until then.
	s.open["n1"] = h.hb.Open("n1")
	step("n1 up and unfenced", func() bool { return h.hb.State("n1") == heartbeat.Up && !h.routes.isFenced("n1") })
	h.agents.mu.Lock()
	left := len(h.agents.desired["n1"])
	h.agents.mu.Unlock()
	if left != 0 {
		t.Errorf("n1 unfenced while its agent runs %d instances it no longer owns", left)
	}
}

// TestDrainingInstancesHoldARollout: an allocation on a drained node
// serves beside its replacement until that one is healthy; a rollout
// started meanwhile counts it (it passes, the edges route it) and places
// nothing that would make more than count + max_parallel serve.
func TestDrainingInstancesHoldARollout(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	rolling := fast(&deployv1.UpdateStrategy{MaxParallel: 1})
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, rolling))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	from := h.allocs(1)[0].GetNodeId()
	h.agents.mu.Lock()
	for _, n := range []string{"n1", "n2", "n3"} {
		h.agents.sick[n] = n != from // replacements do not pass yet
	}
	h.agents.mu.Unlock()
	if _, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{NodeId: from, Enable: true, By: "ops"}}}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	if n := len(h.allocs(1)); n != 3 {
		t.Fatalf("%d allocations of v1 after the drain, want the old one beside its replacement", n)
	}
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, rolling))
	for range 10 {
		h.pass()
		h.clock.Add(500 * time.Millisecond)
	}
	if n := len(h.allocs(2)); n != 0 {
		t.Fatalf("v2 placed %d beside the drained node's passing instance, its replacement and the other (bound 3)", n)
	}
	h.agents.mu.Lock()
	clear(h.agents.sick)
	h.agents.mu.Unlock()
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
}

// TestEdgeIgnoringFencesHoldsAtMostFenceDeadline: an edge that does not
// know fences keeps routing a fenced node's instances; the leader waits
// for them to leave its acknowledgement at most FenceDeadline (30s by
// default), then replaces the rest anyway.
func TestEdgeIgnoringFencesHoldsAtMostFenceDeadline(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	s := withStreams(h, "n1", "n2", "n3")
	id := h.deploy(webSpec("slipway/demo:v1", 6, fast(&deployv1.UpdateStrategy{MaxParallel: 1})))
	var fencedAt time.Time
	step := func(what string, cond func() bool) {
		t.Helper()
		for range 400 {
			h.clock.Add(500 * time.Millisecond)
			s.beat()
			h.edgeFencing(false)
			h.pass()
			if fencedAt.IsZero() && h.routes.isFenced("n1") {
				fencedAt = h.clock.Now()
			}
			if cond() {
				return
			}
		}
		t.Fatalf("never reached: %s", what)
	}
	step("v1 succeeded", h.phase(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	step("n1 up by its heartbeats", func() bool { return h.hb.State("n1") == heartbeat.Up })
	s.close("n1")
	step("n1 fenced", func() bool { return !fencedAt.IsZero() })
	onN1 := func() bool {
		return slices.ContainsFunc(h.allocs(1), func(a *agentv1.Allocation) bool { return a.GetNodeId() == "n1" })
	}
	step("n1's allocations replaced", func() bool { return !onN1() })
	if waited := h.clock.Now().Sub(fencedAt); waited < 30*time.Second || waited > 35*time.Second {
		t.Errorf("replaced %s after the fence, want just past the 30s FenceDeadline", waited)
	}
}
