package engine

import (
	"slipway.dev/coordinator/migrate"
	"slipway.dev/coordinator/placement"
	"slipway.dev/coordinator/state"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
)

// allocView is the stored allocations as of one FSM index, indexed once
// for every decision that reads them until the index moves: at fleet scale
// (100,000 allocations) each rollout's machine, observation and placement
// listing and indexing them all again made a pass cost rollouts x
// allocations.
type allocView struct {
	index uint64
	all   []state.StoredAllocation
	// byService are all's allocations by service, in all's order.
	byService map[string][]state.StoredAllocation
	// held are the ids of every stored allocation.
	held map[string]bool
	// leaving are the ids of allocations replaced on a draining node
	// (their replacements name them): migrate's, invisible to the
	// rollout machines.
	leaving map[string]bool
	// cluster are all's allocations as placement sees them.
	cluster []placement.Allocation
}

// allocs returns the view of the FSM's allocations, rebuilt only when an
// entry was applied since the last one was built. The index is read
// before the allocations, so a view is never older than its index says.
func (e *Engine) allocs() *allocView {
	idx := e.cfg.FSM.LastIndex()
	if v := e.view; v != nil && v.index == idx {
		return v
	}
	all := e.cfg.FSM.AllAllocations()
	v := &allocView{index: idx, all: all, byService: map[string][]state.StoredAllocation{},
		held: make(map[string]bool, len(all)), leaving: map[string]bool{}, cluster: make([]placement.Allocation, 0, len(all))}
	for _, sa := range all {
		a := sa.Allocation
		v.byService[a.GetService()] = append(v.byService[a.GetService()], sa)
		v.held[a.GetId()] = true
		if sa.Replaces != "" {
			v.leaving[sa.Replaces] = true
		}
		v.cluster = append(v.cluster, migrate.ClusterAlloc(a))
	}
	e.view = v
	return v
}

// nodeRecords returns the nodes recorded in the FSM (FSM.Nodes), listed
// again only when an entry was applied since the last list: a pass reads
// them in several stages and once per placement. Not to be modified.
func (e *Engine) nodeRecords() []*clusterv1.Node {
	idx := e.cfg.FSM.LastIndex()
	if e.records == nil || e.recordsAt != idx {
		e.records, e.recordsAt = e.cfg.FSM.Nodes(), idx
	}
	return e.records
}
