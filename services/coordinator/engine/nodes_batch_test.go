package engine_test

import (
	"fmt"
	"testing"
	"time"

	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// nodeEntries counts the node entries committed so far.
func (h *harness) nodeEntries() (entries, nodes int) {
	h.raft.mu.Lock()
	defer h.raft.mu.Unlock()
	for _, c := range h.raft.applied {
		switch op := c.GetOp().(type) {
		case *statev1.Command_UpsertNodes:
			entries++
			nodes += len(op.UpsertNodes.GetNodes())
		case *statev1.Command_UpsertNode:
			entries++
			nodes++
		}
	}
	return entries, nodes
}

// TestNodeChangesOfOnePassAreOneEntry: 40 nodes discovered in one pass are
// recorded by one raft entry, and 30 of them lost in one pass are marked
// down by one more.
func TestNodeChangesOfOnePassAreOneEntry(t *testing.T) {
	var ids []string
	for i := range 40 {
		ids = append(ids, fmt.Sprintf("n%02d", i))
	}
	h := newHarness(t, ids...)
	h.pass()
	if e, n := h.nodeEntries(); e != 1 || n != 40 {
		t.Fatalf("after discovery: %d node entries for %d nodes, want 1 for 40", e, n)
	}
	h.pass()
	if e, _ := h.nodeEntries(); e != 1 {
		t.Fatalf("an unchanged pass committed node entries: %d", e)
	}
	keep := h.nodes.get()[:10]
	h.nodes.set(keep...)
	h.pass()
	h.clock.Add(6 * time.Second) // past NodeGrace
	h.pass()
	e, n := h.nodeEntries()
	if e != 2 || n != 70 {
		t.Fatalf("after losing 30: %d node entries for %d node records, want 2 for 70", e, n)
	}
	down := 0
	for _, nd := range h.fsm.Nodes() {
		if nd.GetStatus() == clusterv1.NodeStatus_NODE_STATUS_DOWN {
			down++
		}
	}
	if down != 30 {
		t.Errorf("%d nodes down, want 30", down)
	}
}
