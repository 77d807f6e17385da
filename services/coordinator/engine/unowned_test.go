package engine_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/engine"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// stray is the status an agent reports of an instance of web it still
// runs that no allocation holds.
func stray(id string, release uint64, state agentv1.AllocationState, health agentv1.Health) *agentv1.AllocationStatus {
	return &agentv1.AllocationStatus{AllocationId: id, Service: "web", Release: release, State: state, Health: health,
		HealthySince: timestamppb.New(t0), UpdatedAt: timestamppb.New(t0)}
}

// TestUnownedInstanceHoldsPlacement: an instance its agent still runs
// registered and passing, which no allocation holds any more, may be
// routed by the edges: a new rollout places nothing beside it (count 2 +
// max_parallel 1 would be exceeded) until its agent reports it draining
// (deregistered); an unowned instance of another service holds nothing.
func TestUnownedInstanceHoldsPlacement(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	rolling := fast(&deployv1.UpdateStrategy{MaxParallel: 1})
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, rolling))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	other := stray("api-v1-1-0", 1, agentv1.AllocationState_ALLOCATION_STATE_RUNNING, agentv1.Health_HEALTH_PASSING)
	other.Service = "api"
	h.agents.setUnowned("n1", false, stray("web-v1-1-9", 1, agentv1.AllocationState_ALLOCATION_STATE_RUNNING, agentv1.Health_HEALTH_PASSING), other)
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, rolling))
	for range 20 {
		h.pass()
		h.clock.Add(500 * time.Millisecond)
	}
	if n := len(h.allocs(2)); n != 0 {
		t.Fatalf("v2 placed %d instances beside a passing unowned one (2 of v1 serve: bound 3)", n)
	}
	if ro := h.rollout(v2); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_RUNNING {
		t.Fatalf("v2 is %v (%s) while held, want RUNNING", ro.GetState(), ro.GetMessage())
	}
	// Its agent deregisters it: it can no longer be routed.
	h.agents.setUnowned("n1", false, stray("web-v1-1-9", 1, agentv1.AllocationState_ALLOCATION_STATE_DRAINING, agentv1.Health_HEALTH_UNSPECIFIED), other)
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
}

// TestUnownedInstanceOnSilentNodeHoldsUntilItsGrace: an agent that stops
// answering keeps its last report, so its passing unowned instance holds
// a rollout while its node is within its grace; once the node is lost the
// instance is taken as dead and the rollout goes on.
func TestUnownedInstanceOnSilentNodeHoldsUntilItsGrace(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	rolling := fast(&deployv1.UpdateStrategy{MaxParallel: 1})
	rolling.ProgressDeadline = durationpb.New(time.Minute)
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, rolling))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	h.agents.setUnowned("n3", false, stray("web-v1-1-9", 1, agentv1.AllocationState_ALLOCATION_STATE_RUNNING, agentv1.Health_HEALTH_PASSING))
	h.pass()
	h.agents.setUnowned("n3", true) // silent from now on: its last report stands
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, rolling))
	for range 6 {
		h.pass()
		h.clock.Add(500 * time.Millisecond)
	}
	if n := len(h.allocs(2)); n != 0 {
		t.Fatalf("v2 placed %d instances while a silent agent's unowned instance may serve", n)
	}
	// The node leaves discovery: within its grace (5s) the hold stands.
	var live []engine.Node
	for _, n := range h.nodes.get() {
		if n.ID != "n3" {
			live = append(live, n)
		}
	}
	h.nodes.set(live...)
	for range 8 {
		h.pass()
		h.clock.Add(500 * time.Millisecond)
	}
	if n := len(h.allocs(2)); n != 0 {
		t.Fatalf("v2 placed %d instances within the silent node's grace", n)
	}
	h.clock.Add(2 * time.Second)
	h.run(500*time.Millisecond, "v2 placed after the node's grace", func() bool { return len(h.allocs(2)) > 0 })
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
}

// TestStreamingNodeBackHoldsWhatItStillRuns: a node down by its
// heartbeats whose allocation was replaced comes back (a netsplit heals):
// until a leader's sync stops it, its agent still runs the old instance,
// registered, and says so on its stream while the node is down for its
// settle time. A rollout then places nothing beside it; once the node is
// up and synced, the instance is gone and the rollout goes on.
func TestStreamingNodeBackHoldsWhatItStillRuns(t *testing.T) {
	h, s := streamedFleet(t)
	s.close("n1")
	s.until(500*time.Millisecond, "n1's allocation replaced", func() bool {
		as := h.allocs(1)
		return len(as) == 3 && !slices.ContainsFunc(as, func(a *agentv1.Allocation) bool { return a.GetNodeId() == "n1" })
	})
	s.open["n1"] = h.hb.Open("n1") // back, and streaming what it still runs
	v2 := h.deploy(webSpec("slipway/demo:v2", 3, fast(&deployv1.UpdateStrategy{MaxParallel: 1})))
	s.run(500*time.Millisecond, testTTL/2)
	if st := h.nodeStatus("n1"); st != clusterv1.NodeStatus_NODE_STATUS_DOWN {
		t.Fatalf("n1 is %s within its settle time, want DOWN", st)
	}
	if n := len(h.allocs(2)); n != 0 {
		t.Fatalf("v2 placed %d instances while n1 still runs its replaced instance", n)
	}
	s.until(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
}
