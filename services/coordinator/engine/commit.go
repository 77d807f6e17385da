package engine

// The commit stage.
//
// Contract: commit writes decisions into the replicated log and nothing
// else: a Plan's entries are applied through raft one by one, in order,
// and nothing is acted on here (act reads back what was committed). The
// node records (a discovered node ready, one missing for the node grace
// down) are committed here too, before anything is decided from them. A failed apply fails the
// pass; the next pass decides again from what was committed.

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/migrate"
	"slipway.dev/platform/nodepolicy"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// apply commits one command through raft.
func (e *Engine) apply(ctx context.Context, cmd *statev1.Command) (any, error) {
	return call(ctx, e.cfg.CallTimeout, func(c context.Context) (any, error) { return e.cfg.Raft.Apply(c, cmd) })
}

// applyStep commits one step entry.
func (e *Engine) applyStep(ctx context.Context, op *statev1.RolloutStepOp) error {
	_, err := e.apply(ctx, &statev1.Command{Op: &statev1.Command_RolloutStep{RolloutStep: op}})
	return err
}

// commitNodes records discovered nodes and marks down the ones missing for
// NodeGrace (obs.Lost).
func (e *Engine) commitNodes(ctx context.Context, obs Observation) error {
	known := map[string]*clusterv1.Node{}
	for _, n := range e.nodeRecords() {
		known[n.GetId()] = n
	}
	// Every change of the pass goes into one entry: at fleet scale a
	// pass that sees many nodes come or go commits once, not per node.
	var batch []*clusterv1.Node
	var ready, gone []string
	for _, id := range sortedKeys(obs.Nodes) {
		n := obs.Nodes[id]
		want := &clusterv1.Node{Id: n.ID, Address: n.Addr, Labels: n.Labels, CpuMhz: int32(n.CPU), MemoryMb: int32(n.MemoryMB),
			Status: clusterv1.NodeStatus_NODE_STATUS_READY, Driver: n.Driver, Security: securityProto(n.Security)}
		if old := known[id]; old != nil {
			cmp := proto.CloneOf(old)
			cmp.LastSeen, cmp.Draining = nil, false
			if proto.Equal(cmp, want) {
				continue
			}
		}
		batch = append(batch, want)
		ready = append(ready, id)
	}
	for _, id := range sortedKeys(known) {
		old := known[id]
		// Down only once missing for NodeGrace, as the migrations judge
		// it: a node absent from one view (a new leader whose agents have
		// not proved themselves yet, a leader that could not commit for a
		// while) is not a node gone.
		if !obs.Lost[id] || old.GetStatus() == clusterv1.NodeStatus_NODE_STATUS_DOWN {
			continue
		}
		down := proto.CloneOf(old)
		down.Status = clusterv1.NodeStatus_NODE_STATUS_DOWN
		batch = append(batch, down)
		gone = append(gone, id)
	}
	if len(batch) == 0 {
		return nil
	}
	if _, err := e.apply(ctx, nodesCommand(batch)); err != nil {
		return fmt.Errorf("engine: record %d node changes (ready %v, down %v): %w", len(batch), ready, gone, err)
	}
	for _, id := range ready {
		e.log.Info("node ready", "node", id, "addr", obs.Nodes[id].Addr)
	}
	for _, id := range gone {
		e.log.Warn("node down", "node", id)
	}
	return nil
}

// nodesCommand is the one entry recording a pass's node changes (pure: a
// pass with many changes is one raft entry).
func nodesCommand(nodes []*clusterv1.Node) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_UpsertNodes{UpsertNodes: &statev1.UpsertNodesOp{Nodes: nodes}}}
}

// commitMigrations commits the moves off lost and drained nodes, one entry
// per service, and reports (once per reason) the allocations that have
// nowhere to go yet.
func (e *Engine) commitMigrations(ctx context.Context, p Plan, failures []migrate.Failure) error {
	for _, f := range failures {
		if e.failures[f.Allocation] != f.Reason { // each reason once
			e.failures[f.Allocation] = f.Reason
			e.log.Warn("cannot move allocation off a lost or drained node yet", "service", f.Service, "was", f.Allocation, "reason", f.Reason)
		}
	}
	for _, op := range p.Entries {
		if err := e.applyStep(ctx, op); err != nil {
			return fmt.Errorf("engine: commit replacement for %s: %w", op.GetService(), err)
		}
		e.log.Info("moved allocations off lost or drained nodes", "service", op.GetService(), "placed", len(op.GetPlace()), "removed", len(op.GetStop()))
	}
	return nil
}

// commitRollout commits one rollout's plan.
func (e *Engine) commitRollout(ctx context.Context, p Plan) error {
	switch {
	case p.Done:
		e.done[p.Rollout] = true
		return nil
	case p.Stuck != nil:
		if e.failures[p.Rollout] != p.Stuck.Error() {
			e.failures[p.Rollout] = p.Stuck.Error()
			e.log.Error("cannot start rollout", "rollout", p.Rollout, "err", p.Stuck)
		}
		return nil
	case p.Rejected != nil:
		for _, op := range p.Entries {
			if err := e.applyStep(ctx, op); err != nil {
				return fmt.Errorf("engine: reject %s: %w", p.Rollout, err)
			}
		}
		e.log.Warn("rollout rejected", "rollout", p.Rollout, "err", p.Rejected)
		return nil
	case p.PlacementFailed != "":
		if len(p.Entries) == 0 {
			return nil // reported already
		}
		// Not committed: the machine asks again on a later pass (e.g.
		// when a node joins). The reason is recorded for WatchRollout.
		e.failures[p.Rollout] = p.PlacementFailed
		e.log.Warn("placement failed", "rollout", p.Rollout, "reason", p.PlacementFailed)
		for _, op := range p.Entries {
			if err := e.applyStep(ctx, op); err != nil {
				return fmt.Errorf("engine: record placement failure of %s: %w", p.Rollout, err)
			}
		}
		return nil
	}
	if p.Placed {
		delete(e.failures, p.Rollout)
	}
	for _, op := range p.Entries {
		if err := e.applyStep(ctx, op); err != nil {
			return fmt.Errorf("engine: commit step of %s: %w", p.Rollout, err)
		}
		e.log.Info("rollout step committed", "rollout", p.Rollout, "phase", p.Next.Phase, "step", p.Next.Step,
			"placed", len(op.GetPlace()), "drain", len(op.GetDrain()), "stop", len(op.GetStop()), "generation", op.GetIntent().GetGeneration(), "message", p.Next.Message)
	}
	e.tellHooks(p.Rollout, p.Next, p.Tell)
	return nil
}

// securityProto records a node's policy; nil when it allows nothing extra
// and any image, as nodes recorded before policies were reported.
func securityProto(p nodepolicy.Policy) *clusterv1.NodeSecurity {
	if !p.Privileged && len(p.Caps)+len(p.HostPaths)+len(p.Images) == 0 {
		return nil
	}
	return &clusterv1.NodeSecurity{Privileged: p.Privileged, Caps: p.Caps, HostPaths: p.HostPaths, Images: p.Images}
}
