package engine_test

import (
	"testing"
	"time"

	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// TestUnroutedServiceNeedsNoEdgeAck: a service without a route host is not
// exposed at the edges (spec.proto), which therefore never acknowledge its
// intents; its drained instances are stopped without waiting for them.
func TestUnroutedServiceNeedsNoEdgeAck(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	h.routes.acks = []*edgev1.EdgeAck{{EdgeId: "e1", Generations: map[string]uint64{}}}
	worker := func(image string) *deployv1.ServiceSpec {
		s := webSpec(image, 1, fast(&deployv1.UpdateStrategy{}))
		s.Name, s.Route = "worker", nil
		return s
	}
	v1 := h.deploy(worker("slipway/demo:v1"))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	v2 := h.deploy(worker("slipway/demo:v2"))
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	h.run(500*time.Millisecond, "v1 stopped", func() bool {
		for _, a := range h.allocs(1) {
			if a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED {
				return false
			}
		}
		return len(h.allocs(1)) == 0
	})
}
