// Package migrate is the pure reschedule step of the leader's pass: it
// decides what becomes of the allocations of nodes that are lost (missing
// for longer than their grace period) and of nodes an operator drains.
// Nomad keeps the same decision in its reconciler (lost / migrate /
// untainted); here it is a function of plain values, with no I/O and no
// clock of its own, tested by the scripts in testdata.
//
// Contract: Decide takes what the leader observed and committed (the live
// nodes and every stored allocation, as a placement.Snapshot; each
// allocation's health and replacement link; which nodes are lost and which
// drain; the time) and returns a Plan: one Move per service, in service
// order, each to be committed as one raft entry in that order. Move i is
// decided as if Moves 0..i-1 were already committed: it sees their
// placements and removals, and its allocation ids carry Base+i, the raft
// index it is based on. An allocation with nowhere to go stays where it is
// and is reported in Plan.Failures; Decide fails only when placement
// refuses an ask as invalid.
//
// The policy. A lost node's allocations are gone: each running one gets a
// new allocation elsewhere, placed in the same entry that removes it. A
// drained node's allocations still serve, so they move in two entries: the
// first places each one's replacement (linked to it in Move.Replaces), and
// the old one keeps running until its replacement passes its health check
// (or DrainDeadline passes since it was placed); the second removes it, and
// its agent drains it (deregistered, route barrier, graceful stop).
// Capacity never dips and traffic moves without a failed request. An
// allocation already told to stop on a lost node is removed; on a drained
// node it is left to the rollout that drains it.
//
// The serving bound. At no time may more than a service's bound (count +
// max_surge or max_parallel, Input.Bounds) of its instances serve, and a
// lost node may be lost to the leader only: cut off from the coordinators
// while it still reaches Consul and the edges, its instances pass and are
// routed beside their replacements. So a move places a replacement only
// within the room the bound leaves: every allocation of the service on a
// node not lost (running, or stopping while it passes), each one on a lost
// node that an edge still routes (Input.Routed), and the strays (instances
// no allocation holds that may still serve, Input.Strays) count as
// serving. A lost node's allocation that no edge routes is replaced (and
// removed) in one entry, as before. One that is still routed keeps serving
// users while its replacement starts, exactly as a drained one does: the
// replacement is linked to it, and once every such replacement of the node
// is ready (or the service has no room left for one), the node is fenced
// (Plan.Fence: the edges stop routing its instances); an old allocation is
// removed when no edge routes it any more. A drained node's allocation
// with no room for its replacement waits, unless nothing of the service's
// is starting or stopping that could free room (a bound with no surge): it
// then moves stop-first, its replacement placed in the entry that removes
// it.
package migrate

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/placement"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/platform/nodepolicy"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// Alloc is a stored allocation as the reschedule step sees it.
type Alloc struct {
	// Allocation is the committed allocation (never modified).
	Allocation *agentv1.Allocation
	// Replaces is the id of the allocation this one replaces ("" for
	// none): it was placed for one on a draining node.
	Replaces string
	// CreatedAt is when it was committed (zero when unknown).
	CreatedAt time.Time
	// Health is what its agent last reported, as the rollout machine
	// sees it.
	Health rollout.Health
}

// Input is what Decide decides from.
type Input struct {
	// Now is the time of the observation.
	Now time.Time
	// Lost are the nodes missing for longer than their grace period.
	Lost map[string]bool
	// Draining are the nodes an operator drains (a lost one counts as
	// lost).
	Draining map[string]bool
	// Allocations are every stored allocation.
	Allocations []Alloc
	// Cluster is the cluster as placement sees it: the live nodes and
	// every stored allocation.
	Cluster placement.Snapshot
	// DrainDeadline is how long an allocation on a draining node waits
	// for its replacement to pass its health check.
	DrainDeadline time.Duration
	// Base is the raft index the first Move is based on.
	Base uint64
	// Routed are the allocations some live edge routes to now (its
	// acknowledgement lists them): on a lost node, only these may still
	// serve. Nil: none is routed.
	Routed map[string]bool
	// Bounds are, per service, the most of its instances that may serve at
	// once (count + max_surge, or count + max_parallel); a service without
	// one is not bounded.
	Bounds map[string]int
	// Strays are, per service, the instances no allocation holds that may
	// still serve (their agent reports them registered and passing).
	Strays map[string]int
}

// Move is one service's part of the plan: one raft entry.
type Move struct {
	// Service is the service.
	Service string
	// Place are the new allocations.
	Place []*agentv1.Allocation
	// Replaces links a placed allocation id to the one it replaces (on a
	// draining node); empty for replacements of lost allocations.
	Replaces map[string]string
	// Stop are the allocations removed.
	Stop []string
	// Events say what happened, for the audit trail ("replaced" for lost
	// nodes, "migrated" for drained ones).
	Events []rollout.Event
}

// Failure is an allocation that could not be moved yet.
type Failure struct {
	// Service is its service.
	Service string
	// Allocation is its id.
	Allocation string
	// Reason is placement's explanation.
	Reason string
}

// Plan is the reschedule step's decision.
type Plan struct {
	// Moves are the entries to commit, in order.
	Moves []Move
	// Failures are the allocations that stay where they are for now.
	Failures []Failure
	// Fence are the lost nodes whose instances the edges are to stop
	// routing, sorted: every allocation on them that an edge still routes
	// has a ready replacement, or no room under its service's bound for
	// one, or the node holds none.
	Fence []string
}

// Decide is the reschedule step (see the package doc).
func Decide(in Input) (Plan, error) {
	var out Plan
	drained := map[string]bool{}
	for id, d := range in.Draining {
		if d && !in.Lost[id] {
			drained[id] = true
		}
	}
	if len(in.Lost) == 0 && len(drained) == 0 {
		return out, nil
	}
	replacement := map[string]Alloc{} // old id -> its replacement
	for _, a := range in.Allocations {
		if a.Replaces != "" {
			replacement[a.Replaces] = a
		}
	}
	byService := map[string][]*agentv1.Allocation{}
	serving := map[string]int{} // service -> instances that may serve now
	for _, sa := range in.Allocations {
		a := sa.Allocation
		switch {
		case in.Lost[a.GetNodeId()]:
			if in.Routed[a.GetId()] {
				serving[a.GetService()]++
			}
		case a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED || sa.Health == rollout.HealthPassing:
			serving[a.GetService()]++
		}
		onDrained := drained[a.GetNodeId()] && a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED
		if in.Lost[a.GetNodeId()] || onDrained {
			byService[a.GetService()] = append(byService[a.GetService()], a)
		}
	}
	// needed are the lost nodes whose routed instances still serve users
	// that nothing replaces yet: they are not fenced.
	needed := map[string]bool{}
	services := make([]string, 0, len(byService))
	for s := range byService {
		services = append(services, s)
	}
	sort.Strings(services)
	cluster := in.Cluster
	links := map[string]string{} // replacement id -> old id, as the FSM holds them
	for _, a := range in.Allocations {
		if a.Replaces != "" {
			links[a.Allocation.GetId()] = a.Replaces
		}
	}
	for _, svc := range services {
		base := in.Base + uint64(len(out.Moves))
		mv := Move{Service: svc, Replaces: map[string]string{}}
		room := math.MaxInt
		if b, ok := in.Bounds[svc]; ok {
			room = b - serving[svc] - in.Strays[svc]
		}
		var asks []placement.Ask
		old := map[string]*agentv1.Allocation{}
		linked := map[string]bool{} // ask id -> its replacement is linked (the old one stays)
		var replaced, migrated, waiting []string
		var blocked []*agentv1.Allocation // no room for a replacement
		starting := false                 // a replacement of this service is not ready yet
		for _, a := range byService[svc] {
			if r, ok := replacement[a.GetId()]; ok && !ready(r, in.Now, in.DrainDeadline) {
				starting = true
			}
		}
		for k, a := range byService[svc] {
			lost := in.Lost[a.GetNodeId()]
			routed := lost && in.Routed[a.GetId()]
			if a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED {
				if routed {
					continue // removed once no edge routes it
				}
				mv.Stop = append(mv.Stop, a.GetId()) // draining anyway: gone
				continue
			}
			if r, ok := replacement[a.GetId()]; ok {
				switch {
				case lost && !routed:
					mv.Stop = append(mv.Stop, a.GetId())
					replaced = append(replaced, fmt.Sprintf("%s on %s gone with its node; %s on %s replaces it", a.GetId(), a.GetNodeId(),
						r.Allocation.GetId(), r.Allocation.GetNodeId()))
				case lost:
					if !ready(r, in.Now, in.DrainDeadline) {
						needed[a.GetNodeId()] = true // it serves while its replacement starts
					}
				case ready(r, in.Now, in.DrainDeadline):
					mv.Stop = append(mv.Stop, a.GetId())
					migrated = append(migrated, fmt.Sprintf("%s on %s stopped: %s on %s %s", a.GetId(), a.GetNodeId(),
						r.Allocation.GetId(), r.Allocation.GetNodeId(), readiness(r, in.Now)))
				}
				continue // its replacement is starting
			}
			if room <= 0 {
				blocked = append(blocked, a)
				continue
			}
			room--
			id := fmt.Sprintf("%s-v%d-%d-%d", svc, a.GetRelease(), base, k)
			old[id] = a
			linked[id] = !lost || routed
			starting = starting || linked[id]
			asks = append(asks, ask(svc, id, a))
		}
		for _, a := range blocked {
			switch {
			case in.Lost[a.GetNodeId()]:
				// No room while it is routed: its node is fenced, and it is
				// replaced once no edge routes it.
				waiting = append(waiting, fmt.Sprintf("%s on %s: no room under the serving bound %d while the edges route it; its node is fenced first",
					a.GetId(), a.GetNodeId(), in.Bounds[svc]))
			case !starting && len(mv.Stop) == 0:
				// Nothing starting or stopping will free room: stop-first.
				id := fmt.Sprintf("%s-v%d-%d-%d", svc, a.GetRelease(), base, slices.Index(byService[svc], a))
				old[id] = a
				asks = append(asks, ask(svc, id, a))
			default:
				waiting = append(waiting, fmt.Sprintf("%s on %s: no room under the serving bound %d until a replacement is ready",
					a.GetId(), a.GetNodeId(), in.Bounds[svc]))
			}
		}
		if len(asks) > 0 {
			plan, err := placement.Place(cluster, asks, base)
			if err != nil {
				return Plan{}, fmt.Errorf("migrate: replace allocations of %s: %w", svc, err)
			}
			for _, p := range plan.Placements {
				a := proto.CloneOf(old[p.AllocID])
				was := a.GetId()
				switch {
				case linked[p.AllocID] && in.Lost[a.GetNodeId()]:
					replaced = append(replaced, fmt.Sprintf("%s on %s (still routed) replaced by %s on %s; it is removed once no edge routes it",
						was, a.GetNodeId(), p.AllocID, p.NodeID))
					mv.Replaces[p.AllocID] = was
					needed[a.GetNodeId()] = true
				case in.Lost[a.GetNodeId()]:
					replaced = append(replaced, fmt.Sprintf("%s on %s replaced by %s on %s", was, a.GetNodeId(), p.AllocID, p.NodeID))
					mv.Stop = append(mv.Stop, was)
				case linked[p.AllocID]:
					migrated = append(migrated, fmt.Sprintf("%s on %s: replacement %s placed on %s; it stops once that one is healthy", was, a.GetNodeId(), p.AllocID, p.NodeID))
					mv.Replaces[p.AllocID] = was
				default:
					migrated = append(migrated, fmt.Sprintf("%s on %s stopped first (no room under the serving bound %d): replacement %s placed on %s",
						was, a.GetNodeId(), in.Bounds[svc], p.AllocID, p.NodeID))
					mv.Stop = append(mv.Stop, was)
				}
				a.Id, a.NodeId = p.AllocID, p.NodeID
				mv.Place = append(mv.Place, a)
			}
			for _, f := range plan.Failures {
				a := old[f.AllocID]
				if in.Lost[a.GetNodeId()] && in.Routed[a.GetId()] {
					needed[a.GetNodeId()] = true // nowhere else to serve from
				}
				out.Failures = append(out.Failures, Failure{Service: svc, Allocation: a.GetId(), Reason: f.Reason})
			}
		}
		for _, w := range waiting {
			id, _, _ := strings.Cut(w, " ")
			out.Failures = append(out.Failures, Failure{Service: svc, Allocation: id, Reason: w})
		}
		if len(mv.Stop) == 0 && len(mv.Place) == 0 {
			continue
		}
		if len(replaced) > 0 {
			mv.Events = append(mv.Events, rollout.Event{Kind: "replaced", Message: strings.Join(replaced, "; ")})
		}
		if len(migrated) > 0 {
			mv.Events = append(mv.Events, rollout.Event{Kind: "migrated", Message: strings.Join(migrated, "; ")})
		}
		out.Moves = append(out.Moves, mv)
		cluster = apply(cluster, mv, links)
	}
	for id, l := range in.Lost {
		if l && !needed[id] {
			out.Fence = append(out.Fence, id)
		}
	}
	sort.Strings(out.Fence)
	return out, nil
}

// ask is the placement ask of a replacement of a.
func ask(svc, id string, a *agentv1.Allocation) placement.Ask {
	return placement.Ask{Service: svc, Release: a.GetRelease(), IDs: []string{id}, CPU: int(a.GetCpuMhz()), MemoryMB: int(a.GetMemoryMb()),
		HostPorts: HostPorts(a), Security: SecurityAsk(a)}
}

// apply returns the cluster as it is once mv is committed: its placements
// added, its removals (and, as the state machine does, the allocations the
// removed ones replace) gone.
func apply(c placement.Snapshot, mv Move, links map[string]string) placement.Snapshot {
	for id, was := range mv.Replaces {
		links[id] = was
	}
	stop := map[string]bool{}
	for _, id := range mv.Stop {
		stop[id] = true
	}
	for changed := true; changed; {
		changed = false
		for id, was := range links {
			if stop[id] && !stop[was] {
				stop[was], changed = true, true
			}
		}
	}
	next := placement.Snapshot{NodeList: c.NodeList}
	for _, a := range c.AllocList {
		if !stop[a.ID] {
			next.AllocList = append(next.AllocList, a)
		}
	}
	for _, a := range mv.Place {
		next.AllocList = append(next.AllocList, ClusterAlloc(a))
	}
	return next
}

// ClusterAlloc is an allocation as placement counts it.
func ClusterAlloc(a *agentv1.Allocation) placement.Allocation {
	return placement.Allocation{ID: a.GetId(), Service: a.GetService(), NodeID: a.GetNodeId(), CPU: int(a.GetCpuMhz()), MemoryMB: int(a.GetMemoryMb()),
		HostPorts: HostPorts(a)}
}

// HostPorts are the static host ports an allocation binds: its routed
// port's and its other named ports' (nil when all are ephemeral).
func HostPorts(a *agentv1.Allocation) []int {
	var out []int
	if a.GetHostPort() != 0 {
		out = append(out, int(a.GetHostPort()))
	}
	for _, p := range a.GetPorts() {
		if p.GetHostPort() != 0 {
			out = append(out, int(p.GetHostPort()))
		}
	}
	return out
}

// SecurityAsk is what an allocation asks of a node's policy.
func SecurityAsk(a *agentv1.Allocation) nodepolicy.Ask {
	ask := nodepolicy.Ask{Image: a.GetImage(), Privileged: a.GetPrivileged(), Caps: a.GetCapAdd()}
	for _, m := range a.GetMounts() {
		ask.Mounts = append(ask.Mounts, nodepolicy.Mount{HostPath: m.GetHostPath(), ContainerPath: m.GetContainerPath(), ReadOnly: m.GetReadOnly()})
	}
	return ask
}

// ready reports whether the allocation r replaces may stop: r passes its
// health check, or the drain deadline has passed since it was placed.
func ready(r Alloc, now time.Time, deadline time.Duration) bool {
	return r.Health == rollout.HealthPassing || !r.CreatedAt.IsZero() && now.Sub(r.CreatedAt) >= deadline
}

// readiness says why a replacement counts as ready, for the audit trail.
func readiness(r Alloc, now time.Time) string {
	if r.Health == rollout.HealthPassing {
		return "passes its check"
	}
	return fmt.Sprintf("still not healthy after %s (drain deadline)", now.Sub(r.CreatedAt).Round(time.Second))
}
