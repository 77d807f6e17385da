package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"slipway.dev/coordinator/engine"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestOversizedDesiredSetHoldsBackOnlyTheNewService: when a new service
// makes a node's desired set outgrow one message, the pass reports the
// service by name and the node still gets the rest: the running service
// keeps running and the part of the new one that fits is sent.
func TestOversizedDesiredSetHoldsBackOnlyTheNewService(t *testing.T) {
	h := newHarness(t, "n1")
	h.eng = engine.New(engine.Config{Raft: h.raft, FSM: h.fsm, Nodes: h.nodes, Routes: h.routes, Agents: h.agents,
		Now: h.clock.Now, NodeGrace: 5 * time.Second, Logger: slog.New(slog.DiscardHandler), SyncBudget: 4000, SyncWait: time.Minute})
	web := h.deploy(webSpec("slipway/demo:v1", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "web succeeded", h.phase(web, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	webAllocs := h.allocs(1)

	big := webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{}))
	big.Name, big.Route.Host, big.Env = "big", "big.test", map[string]string{"BLOB": strings.Repeat("x", 3000)}
	h.deploy(big)
	var err error
	for range 4 {
		_, err = h.eng.Pass(context.Background())
		h.clock.Add(500 * time.Millisecond)
	}
	var held *engine.HeldBackError
	if !errors.As(err, &held) || held.Node != "n1" || held.Services["big"] != 1 || len(held.Services) != 1 {
		t.Fatalf("pass error = %v, want one allocation of big held back on n1", err)
	}
	if !strings.Contains(err.Error(), "big (1 allocations)") {
		t.Errorf("error %q does not name the service", err)
	}
	running := h.agents.running()
	if !slices.Contains(running, webAllocs[0].GetId()) {
		t.Errorf("running %v, want web's %s kept", running, webAllocs[0].GetId())
	}
	n := 0
	for _, id := range running {
		if strings.HasPrefix(id, "big-") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("running %v, want exactly one allocation of big (the one that fits)", running)
	}
}
