// Package liveness decides which nodes are up from the heartbeats they sent:
// a node is down only after it sent none for a TTL, and back up only after
// it has been heard from again for a settle time (hysteresis), so a node
// whose link blinks for less than the TTL never changes state. Pure: the
// caller passes the time; no I/O, no clock.
package liveness

import (
	"slices"
	"time"
)

// Config is the tracker's timing.
type Config struct {
	// TTL is how long a node may send no heartbeat before it is down.
	TTL time.Duration
	// Settle is how long a down node must be heard from again, without a
	// gap longer than TTL, before it is up.
	Settle time.Duration
}

// Change is one node's state change found by Tick.
type Change struct {
	// Node is the node id.
	Node string
	// Up is the new state.
	Up bool
}

type node struct {
	up        bool
	last      time.Time // last heartbeat
	seenSince time.Time // start of the current run of heartbeats (down nodes)
}

// Tracker holds each node's liveness. The zero value is not usable: use New.
// It is not safe for concurrent use.
type Tracker struct {
	cfg   Config
	nodes map[string]*node
}

// New returns a tracker with cfg.
func New(cfg Config) *Tracker {
	return &Tracker{cfg: cfg, nodes: map[string]*node{}}
}

// Heartbeat records a heartbeat of id at now. A node heard of for the first
// time starts down and comes up after Settle, as one that returns.
func (t *Tracker) Heartbeat(id string, now time.Time) {
	n := t.nodes[id]
	if n == nil {
		n = &node{seenSince: now}
		t.nodes[id] = n
	}
	if !n.up && now.Sub(n.last) > t.cfg.TTL {
		n.seenSince = now // a gap: the run of heartbeats starts again
	}
	n.last = now
}

// Tick returns the state changes at now, sorted by node id: nodes silent
// for longer than TTL go down, down nodes heard from steadily for Settle
// come up. All changes of one pass are returned together, so the caller can
// commit them as one entry.
func (t *Tracker) Tick(now time.Time) []Change {
	var out []Change
	for id, n := range t.nodes {
		silent := now.Sub(n.last) > t.cfg.TTL
		switch {
		case n.up && silent:
			n.up = false
			out = append(out, Change{Node: id, Up: false})
		case !n.up && !silent && now.Sub(n.seenSince) >= t.cfg.Settle:
			n.up = true
			out = append(out, Change{Node: id, Up: true})
		}
	}
	slices.SortFunc(out, func(a, b Change) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	return out
}

// Up reports whether id is up; known is false for a node never heard from
// (the caller falls back to another source, e.g. Consul's checks).
func (t *Tracker) Up(id string) (up, known bool) {
	n := t.nodes[id]
	if n == nil {
		return false, false
	}
	return n.up, true
}

// Forget drops id (a node removed from the cluster).
func (t *Tracker) Forget(id string) { delete(t.nodes, id) }
