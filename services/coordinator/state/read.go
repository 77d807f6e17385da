package state

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/rollout"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// LastIndex is the raft index of the last applied entry.
func (f *FSM) LastIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastIndex
}

// Service returns a copy of the named service.
func (f *FSM) Service(name string) (*deployv1.Service, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	sr := f.services[name]
	if sr == nil {
		return nil, fmt.Errorf("service %q: %w", name, ErrNotFound)
	}
	return proto.CloneOf(sr.svc), nil
}

// Services returns copies of every service, sorted by name.
func (f *FSM) Services() []*deployv1.Service {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*deployv1.Service, 0, len(f.services))
	for _, name := range sortedKeys(f.services) {
		out = append(out, proto.CloneOf(f.services[name].svc))
	}
	return out
}

// Releases returns the service's releases and its audit trail, newest first;
// limit > 0 caps the number of releases.
func (f *FSM) Releases(service string, limit int) ([]*deployv1.Release, []*deployv1.AuditEvent, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	sr := f.services[service]
	if sr == nil {
		return nil, nil, fmt.Errorf("service %q: %w", service, ErrNotFound)
	}
	var rels []*deployv1.Release
	for i := len(sr.releases) - 1; i >= 0; i-- {
		if limit > 0 && len(rels) == limit {
			break
		}
		rels = append(rels, proto.CloneOf(sr.releases[i]))
	}
	trail := f.audit[service]
	audit := make([]*deployv1.AuditEvent, 0, len(trail))
	for i := len(trail) - 1; i >= 0; i-- {
		audit = append(audit, proto.CloneOf(trail[i]))
	}
	return rels, audit, nil
}

// Rollout returns a copy of the rollout.
func (f *FSM) Rollout(id string) (*deployv1.Rollout, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r := f.rollouts[id]
	if r == nil {
		return nil, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	return proto.CloneOf(r), nil
}

// Rollouts returns rollouts newest first, of one service when service is set,
// only active ones when activeOnly; limit > 0 caps the answer.
func (f *FSM) Rollouts(service string, activeOnly bool, limit int) []*deployv1.Rollout {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*deployv1.Rollout
	for i := len(f.rolloutOrder) - 1; i >= 0; i-- {
		if limit > 0 && len(out) == limit {
			break
		}
		r := f.rollouts[f.rolloutOrder[i]]
		if service != "" && r.GetService() != service {
			continue
		}
		if activeOnly && rollout.Terminal(r.GetState()) {
			continue
		}
		out = append(out, proto.CloneOf(r))
	}
	return out
}

// RolloutEvents is what a watcher of one rollout sees at one moment.
type RolloutEvents struct {
	// Events are the rollout's events after the requested index, oldest
	// first, each paired with the rollout as it is now.
	Events []*deployv1.RolloutEvent
	// Rollout is the rollout now.
	Rollout *deployv1.Rollout
	// Final is true when the rollout has reached a final state: no event
	// will follow the ones returned.
	Final bool
	// Changed is closed at the next change of the state.
	Changed <-chan struct{}
}

// EventsAfter returns the events of rollout id with an index above from.
func (f *FSM) EventsAfter(id string, from uint64) (RolloutEvents, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r := f.rollouts[id]
	if r == nil {
		return RolloutEvents{}, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	res := RolloutEvents{Rollout: proto.CloneOf(r), Final: rollout.Terminal(r.GetState()), Changed: f.changed}
	for _, ev := range f.events[id] {
		if ev.GetIndex() > from {
			res.Events = append(res.Events, proto.CloneOf(ev))
		}
	}
	return res, nil
}

// Nodes returns copies of every node, sorted by id.
func (f *FSM) Nodes() []*clusterv1.Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*clusterv1.Node, 0, len(f.nodes))
	for _, id := range sortedKeys(f.nodes) {
		out = append(out, proto.CloneOf(f.nodes[id]))
	}
	return out
}

// Allocations returns copies of the stored allocations of a node, sorted by
// id.
func (f *FSM) Allocations(nodeID string) []*agentv1.Allocation {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*agentv1.Allocation, 0, len(f.allocations[nodeID]))
	for _, a := range f.allocations[nodeID] {
		out = append(out, proto.CloneOf(a))
	}
	return out
}

// Peer returns the recorded addresses of coordinator id.
func (f *FSM) Peer(id string) (*statev1.PeerAddress, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.peers[id]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(p), true
}

// Changed returns a channel closed at the next change of the state.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// ServiceEvent is one rollout event with the service of its rollout.
type ServiceEvent struct {
	// Service is the service of the event's rollout.
	Service string
	// Event is the event.
	Event *deployv1.RolloutEvent
}

// EventLog is what a watcher of every rollout sees at one moment.
type EventLog struct {
	// Events are the recorded events after the requested index, oldest
	// first.
	Events []ServiceEvent
	// More is true when limit cut the answer short: ask again after the
	// last event returned.
	More bool
	// Changed is closed at the next change of the state.
	Changed <-chan struct{}
}

// EventsSince returns the recorded events of every rollout (of service's
// only when it is set) with an index above from, in index order, at most
// limit of them when limit > 0. Events of old final rollouts that
// retention dropped are gone. Asking when nothing new was recorded costs
// no scan, so a watcher may ask after every change of the state.
func (f *FSM) EventsSince(service string, from uint64, limit int) EventLog {
	f.mu.RLock()
	defer f.mu.RUnlock()
	res := EventLog{Changed: f.changed}
	if from >= f.lastEvent {
		return res
	}
	collect := func(id string) {
		evs := f.events[id]
		// each rollout's events are in index order: skip the seen ones
		i := sort.Search(len(evs), func(i int) bool { return evs[i].GetIndex() > from })
		svc := f.rollouts[id].GetService()
		for _, ev := range evs[i:] {
			res.Events = append(res.Events, ServiceEvent{Service: svc, Event: ev})
		}
	}
	if service != "" {
		for _, id := range f.eventRolls[service] {
			collect(id)
		}
	} else {
		for id := range f.events {
			collect(id)
		}
	}
	sort.Slice(res.Events, func(i, j int) bool { return res.Events[i].Event.GetIndex() < res.Events[j].Event.GetIndex() })
	if limit > 0 && len(res.Events) > limit {
		clear(res.Events[limit:])
		res.Events, res.More = res.Events[:limit], true
	}
	for i := range res.Events {
		res.Events[i].Event = proto.CloneOf(res.Events[i].Event)
	}
	return res
}

// TermEventCursor is the event index after which the events recorded by
// entries of raft term term begin: a new leader that has applied every
// entry before its term (a barrier) sends the events after it, exactly those
// of its own term, whatever it applied of its term meanwhile. It is the
// last event index when no entry of term has recorded an event yet.
func (f *FSM) TermEventCursor(term uint64) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.term == term && f.termFirstEvent > 0 {
		return f.termFirstEvent - 1
	}
	return f.lastEvent
}
