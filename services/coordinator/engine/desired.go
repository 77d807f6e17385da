package engine

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/state"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// HeldBackError says which allocations of a node were left out of its
// desired set because the whole set would not fit one SyncAllocations
// message.
type HeldBackError struct {
	// Node is the node id.
	Node string
	// Budget is the byte budget the set had to fit.
	Budget int
	// Services maps each service with held-back allocations to how many.
	Services map[string]int
}

func (e *HeldBackError) Error() string {
	names := make([]string, 0, len(e.Services))
	for s := range e.Services {
		names = append(names, s)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, s := range names {
		parts[i] = fmt.Sprintf("%s (%d allocations)", s, e.Services[s])
	}
	return fmt.Sprintf("engine: node %s: its desired set exceeds one message (%d bytes); held back the newest allocations of %s, the other services are sent",
		e.Node, e.Budget, strings.Join(parts, ", "))
}

// desiredSets groups stored allocations into each node's desired set, in
// the order given, keeping each set within budget bytes on the wire.
//
// Deploy bounds what one service can weigh (specrules: a release's
// allocations are at most specrules.MaxReleaseBytes, 4 MiB, so a service
// mid-rollout needs at most 8 MiB of a node's 16 MiB message), but many
// services together can still outgrow one message on one node. Then the
// oldest allocations are kept (by commit time, then id) and the newest,
// which are not running yet, are held back and reported by service: a
// running service is never stopped to make room, one large release never
// blocks a node's other services, and the held-back allocations' rollout
// fails its health deadline as for any instance that never starts.
func desiredSets(all []state.StoredAllocation, budget int) (map[string][]*agentv1.Allocation, []*HeldBackError) {
	byNode := map[string][]state.StoredAllocation{}
	var nodes []string
	for _, sa := range all {
		n := sa.Allocation.GetNodeId()
		if _, ok := byNode[n]; !ok {
			nodes = append(nodes, n)
		}
		byNode[n] = append(byNode[n], sa)
	}
	slices.Sort(nodes)
	desired := map[string][]*agentv1.Allocation{}
	var held []*HeldBackError
	for _, n := range nodes {
		set, h := desiredSet(n, byNode[n], budget)
		if len(set) > 0 {
			desired[n] = set
		}
		if h != nil {
			held = append(held, h)
		}
	}
	return desired, held
}

// desiredSet is desiredSets for one node's stored allocations.
func desiredSet(n string, sas []state.StoredAllocation, budget int) ([]*agentv1.Allocation, *HeldBackError) {
	order := slices.Clone(sas)
	slices.SortStableFunc(order, func(a, b state.StoredAllocation) int {
		// An allocation without a commit time (PutAllocations) counts
		// as the oldest: AsTime of nil is the epoch.
		return cmp.Or(a.CreatedAt.AsTime().Compare(b.CreatedAt.AsTime()), cmp.Compare(a.Allocation.GetId(), b.Allocation.GetId()))
	})
	keep := map[string]bool{}
	var h *HeldBackError
	used := 0
	for _, sa := range order {
		size := protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(sa.Allocation))
		if used+size <= budget {
			used += size
			keep[sa.Allocation.GetId()] = true
			continue
		}
		if h == nil {
			h = &HeldBackError{Node: n, Budget: budget, Services: map[string]int{}}
		}
		h.Services[sa.Allocation.GetService()]++
	}
	var out []*agentv1.Allocation
	for _, sa := range sas {
		if keep[sa.Allocation.GetId()] {
			out = append(out, sa.Allocation)
		}
	}
	return out, h
}
