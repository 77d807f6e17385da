package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"slipway.dev/coordinator/engine"
	"slipway.dev/platform/testenv"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// An idle engine (no rollout to step, no node lost) waits IdlePoll between
// passes instead of Poll, so a large idle fleet is not walked twice a
// second; a change of the state still wakes it at once.
func TestIdleEngineWaitsIdlePoll(t *testing.T) {
	h := newHarness(t, "n1")
	h.eng.Stop()
	eng := engine.New(engine.Config{Raft: h.raft, FSM: h.fsm, Nodes: h.nodes, Routes: h.routes, Agents: h.agents,
		Now: h.clock.Now, NodeGrace: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
		Poll: 5 * time.Millisecond, IdlePoll: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; eng.Stop() })

	// Each pass asks the polled node for its status once.
	testenv.Eventually(t, 10*time.Second, "first pass", func() error {
		if n := h.agents.statusCalls("n1"); n < 1 {
			return fmt.Errorf("%d status calls", n)
		}
		return nil
	})
	first := h.agents.statusCalls("n1")
	// A committed entry wakes the idle engine at once.
	if _, err := h.raft.Apply(ctx, &statev1.Command{Op: &statev1.Command_Noop{Noop: &statev1.NoopOp{}}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "a pass after the entry", func() error {
		if n := h.agents.statusCalls("n1"); n <= first {
			return fmt.Errorf("%d status calls, want more than %d", n, first)
		}
		return nil
	})
	// With Poll (5ms) while idle, passes would have gone on by the
	// hundred; the entry's pass (and at most one the first pass's own
	// commit woke) are all there were.
	if n := h.agents.statusCalls("n1"); n > first+2 {
		t.Errorf("%d status calls while idle, want at most %d", n, first+2)
	}
}
