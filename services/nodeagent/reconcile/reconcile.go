// Package reconcile decides what the node agent must do to bring the host
// from what it observes to the desired set of allocations; it does no I/O.
package reconcile

import (
	"sort"
	"time"

	"slipway.dev/nodeagent/allocation"
)

// MaxRestarts is how many times in a row a crashed instance is restarted
// before the allocation is reported failed.
const MaxRestarts = 3

// Instance is an instance the driver runs (or ran) for an allocation.
type Instance struct {
	// Fingerprint is the spec fingerprint it was started from.
	Fingerprint string
	// Running is false once it exited.
	Running bool
}

// Failure records why an allocation is not running its current spec.
type Failure struct {
	// Fingerprint is the spec that failed.
	Fingerprint string
	// Count is how many times in a row it failed, the current failure
	// included.
	Count int
	// Permanent failures (the instance could not be started) are not
	// retried until the spec changes.
	Permanent bool
	// At is when it last failed.
	At time.Time
}

// Observed is the host as the agent sees it.
type Observed struct {
	// Instances by allocation id.
	Instances map[string]Instance
	// Registered holds the allocation ids registered in Consul by this node
	// (the Consul service id is the allocation id).
	Registered map[string]bool
	// Busy allocations have an operation in flight and are left alone.
	Busy map[string]bool
	// Failures by allocation id.
	Failures map[string]Failure
	// Now is the current time.
	Now time.Time
	// Unconfirmed is set while the agent cannot know whether its desired
	// set is still current: it was seen dead for longer than the leader's
	// node grace (a restart after such a heartbeat lapse, or heartbeats
	// failing that long), so the leader may have replaced its allocations
	// elsewhere. Until a leader's
	// sync confirms the set, nothing is started or registered and every
	// registered instance is deregistered (kept running, out of traffic);
	// instances outside the set are stopped as usual.
	Unconfirmed bool
}

// Kind is what to do to one allocation.
type Kind int

// The kinds of action.
const (
	// Start starts an instance of the desired spec and registers it once
	// running (replacing any stale registration of the same id).
	Start Kind = iota + 1
	// Register registers a running instance that Consul does not know.
	Register
	// Stop stops and removes the instance; with Drain it is first
	// deregistered and the route barrier awaited.
	Stop
	// Restart deregisters and removes an exited instance and starts a new
	// one from the desired spec.
	Restart
	// GiveUp deregisters and removes an exited instance and reports the
	// allocation failed.
	GiveUp
	// Deregister removes a registration that has no instance.
	Deregister
)

var kindNames = map[Kind]string{Start: "start", Register: "register", Stop: "stop", Restart: "restart", GiveUp: "give-up", Deregister: "deregister"}

func (k Kind) String() string { return kindNames[k] }

// Action is one step for one allocation.
type Action struct {
	Kind    Kind
	AllocID string
	// Drain is set on Stop when the instance is registered or routed.
	Drain bool
	// Reason says why, for logs and events.
	Reason string
}

// Plan is the result of one reconciliation.
type Plan struct {
	// Actions in allocation id order; at most one per allocation.
	Actions []Action
	// RetryAt, when not zero, is when a backed-off restart is due.
	RetryAt time.Time
}

// Backoff is the wait before restarting an instance that failed n times in
// a row: none after the first failure, then 1s, 2s, ... up to 10s.
func Backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := time.Duration(n-1) * time.Second
	return min(d, 10*time.Second)
}

// Reconcile compares the desired set (by allocation id) with what is
// observed and returns the actions that converge them. It is deterministic.
func Reconcile(desired map[string]allocation.Spec, obs Observed) Plan {
	ids := map[string]struct{}{}
	for id := range desired {
		ids[id] = struct{}{}
	}
	for id := range obs.Instances {
		ids[id] = struct{}{}
	}
	for id := range obs.Registered {
		ids[id] = struct{}{}
	}
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)

	var p Plan
	for _, id := range sorted {
		if obs.Busy[id] {
			continue
		}
		spec, want := desired[id]
		inst, have := obs.Instances[id]
		reg := obs.Registered[id]
		if !want || spec.Stopped {
			switch {
			case have:
				reason := "not in the desired set"
				if want {
					reason = "desired state stopped"
				}
				p.Actions = append(p.Actions, Action{Kind: Stop, AllocID: id, Drain: reg || inst.Running, Reason: reason})
			case reg:
				p.Actions = append(p.Actions, Action{Kind: Deregister, AllocID: id, Reason: "registered without an instance"})
			}
			continue
		}
		if obs.Unconfirmed {
			if reg {
				p.Actions = append(p.Actions, Action{Kind: Deregister, AllocID: id, Reason: "held out of traffic until a leader confirms the desired set"})
			}
			continue
		}
		fp := spec.Fingerprint()
		f, failed := obs.Failures[id]
		if failed && f.Fingerprint != fp {
			failed = false // a new spec starts afresh
		}
		switch {
		case have && inst.Fingerprint != fp:
			p.Actions = append(p.Actions, Action{Kind: Stop, AllocID: id, Drain: reg || inst.Running, Reason: "spec changed"})
		case have && inst.Running && !reg:
			p.Actions = append(p.Actions, Action{Kind: Register, AllocID: id, Reason: "running but not registered"})
		case have && inst.Running:
			// converged
		case have: // exited behind our back
			n := 1 // failures in a row, this exit included
			if failed {
				n = max(f.Count, 1)
			}
			if n > MaxRestarts {
				p.Actions = append(p.Actions, Action{Kind: GiveUp, AllocID: id, Reason: "exited too often"})
				continue
			}
			if due := f.At.Add(Backoff(n)); failed && obs.Now.Before(due) {
				p.RetryAt = earliest(p.RetryAt, due)
				continue
			}
			p.Actions = append(p.Actions, Action{Kind: Restart, AllocID: id, Reason: "instance exited"})
		case failed && (f.Permanent || f.Count > MaxRestarts):
			if reg {
				p.Actions = append(p.Actions, Action{Kind: Deregister, AllocID: id, Reason: "allocation failed"})
			}
		case failed && obs.Now.Before(f.At.Add(Backoff(f.Count))):
			p.RetryAt = earliest(p.RetryAt, f.At.Add(Backoff(f.Count)))
		default:
			p.Actions = append(p.Actions, Action{Kind: Start, AllocID: id, Reason: "desired and not running"})
		}
	}
	return p
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}
