package state_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/state"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// TestUpsertNodesAllOrNone: a batched node entry records every node, a bad
// one (a repeated id) records none, and an entry of an older schema version
// is refused.
func TestUpsertNodesAllOrNone(t *testing.T) {
	f := state.New()
	cmd := func(version uint32, ids ...string) *statev1.Command {
		var ns []*clusterv1.Node
		for _, id := range ids {
			ns = append(ns, &clusterv1.Node{Id: id, Status: clusterv1.NodeStatus_NODE_STATUS_READY})
		}
		return &statev1.Command{Version: version, At: timestamppb.Now(), Op: &statev1.Command_UpsertNodes{UpsertNodes: &statev1.UpsertNodesOp{Nodes: ns}}}
	}
	if res, ok := f.ApplyCommand(1, cmd(state.CurrentVersion, "a", "b", "c")).(error); ok {
		t.Fatal(res)
	}
	if n := len(f.Nodes()); n != 3 {
		t.Fatalf("%d nodes, want 3", n)
	}
	err, _ := f.ApplyCommand(2, cmd(state.CurrentVersion, "d", "e", "d")).(error)
	if !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("repeated id: %v, want ErrInvalid", err)
	}
	if n := len(f.Nodes()); n != 3 {
		t.Errorf("a refused batch recorded nodes: %d, want 3", n)
	}
	if err, _ := f.ApplyCommand(3, cmd(5, "f")).(error); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("version 5 upsert_nodes: %v, want ErrInvalid", err)
	}
}
