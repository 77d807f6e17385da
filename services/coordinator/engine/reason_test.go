package engine_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/coordinator/state"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// The agent's reason for a failed allocation (here the docker driver's
// words for a missing image) reaches the rollout's message and its failed
// event, which WatchRollout streams and slipctl prints.
func TestAgentFailureReasonReachesTheRollout(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	const why = `image "slipway/demo:v9" is not present locally and could not be pulled (no such host): docker: image not available`
	h.agents.failed[2] = why
	u := fast(&deployv1.UpdateStrategy{AutoRevert: true})
	v2 := h.deploy(webSpec("slipway/demo:v9", 2, u))
	h.run(500*time.Millisecond, "v2 reverted", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_REVERTED))
	ro := h.rollout(v2)
	if !strings.Contains(ro.GetMessage(), why) || strings.Contains(ro.GetMessage(), "exited") {
		t.Errorf("rollout message %q does not carry the agent's reason %q", ro.GetMessage(), why)
	}
	evs, err := h.fsm.EventsAfter(v2, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs.Events {
		if ev.GetKind() == "failed" && strings.Contains(ev.GetMessage(), why) {
			found = true
		}
	}
	if !found {
		t.Errorf("no failed event names the reason; events: %v", evs.Events)
	}
}

func TestInstanceCarriesTheAgentsError(t *testing.T) {
	sa := state.StoredAllocation{Allocation: &agentv1.Allocation{Id: "a", Release: 2}, CreatedAt: timestamppb.New(t0)}
	failed := &agentv1.AllocationStatus{State: agentv1.AllocationState_ALLOCATION_STATE_FAILED, Error: "host port 127.0.0.1:8080 already in use",
		UpdatedAt: timestamppb.New(t0.Add(time.Second))}
	if in := engine.Instance(sa, failed); in.Health != rollout.HealthDead || in.Reason != failed.GetError() {
		t.Errorf("failed = %+v, want dead with the agent's error as reason", in)
	}
}
