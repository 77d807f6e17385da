package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestEngineFailureNamesTheAgentsReason: a release whose image the node
// does not have fails (and reverts) with the agent's reason in the
// rollout's message and in its WatchRollout events, not a bare "exited".
func TestEngineFailureNamesTheAgentsReason(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent and demo processes")
	}
	c := testenv.StartConsul(t)
	imgDir := searchableDir(t)
	buildDemo(t, imgDir, "v1")
	startAgent(t, c.Addr(), imgDir)
	co := coordtest.Start(t, c.Addr(), nil)
	e := newE2E(t, co, c.Addr())
	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)

	v9 := e.doDeploy("slipway/demo:v9", nil, quick(&deployv1.UpdateStrategy{AutoRevert: true})) // never built
	ro := e.waitState(v9, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, 60*time.Second)
	const why = `image "slipway/demo:v9": no executable file` // the process driver's words
	if !strings.Contains(ro.GetMessage(), why) {
		t.Errorf("rollout message %q does not give the agent's reason %q", ro.GetMessage(), why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.deploy.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: v9})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("no failed event naming the reason before the stream ended: %v", err)
		}
		if ev.GetEvent().GetKind() == "failed" {
			if !strings.Contains(ev.GetEvent().GetMessage(), why) {
				t.Errorf("failed event %q does not give the reason", ev.GetEvent().GetMessage())
			}
			return
		}
	}
}
