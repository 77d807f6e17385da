package server

import (
	"context"
	"errors"
	"fmt"

	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/raftnode"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// engineRaft adapts a raft node to what the engine asks of raft: raftnode's
// not-leader error becomes the engine's, the status its term.
type engineRaft struct{ node *raftnode.Node }

// Interface guard.
var _ engine.Raft = engineRaft{}

// Apply implements engine.Raft.
func (r engineRaft) Apply(ctx context.Context, cmd *statev1.Command) (any, error) {
	res, err := r.node.Apply(ctx, cmd)
	if errors.Is(err, raftnode.ErrNotLeader) {
		return nil, fmt.Errorf("%w: %w", engine.ErrNotLeader, err)
	}
	return res, err
}

// Term implements engine.Raft.
func (r engineRaft) Term() (uint64, error) {
	st, err := r.node.Status()
	if err != nil {
		return 0, err
	}
	return st.Term, nil
}
