// Package reconcile decides what the node agent must do to bring the host
// from what it observes to the desired set of allocations; it does no I/O.
package reconcile

import (
	"fmt"
	"sort"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/specrules"
)

// Instance is an instance the driver runs (or ran) for an allocation.
type Instance struct {
	// Fingerprint is the spec fingerprint it was started from.
	Fingerprint string
	// Running is false once it exited.
	Running bool
}

// Failure records how an allocation's current spec has been failing.
type Failure struct {
	// Fingerprint is the spec that failed.
	Fingerprint string
	// Count is how many times its instance exited in the current restart
	// interval, the last exit included.
	Count int
	// WindowStart is when the current restart interval began (its first
	// exit).
	WindowStart time.Time
	// StartFailures counts failed starts in a row (no instance was left);
	// FirstStartFailure is when the first of them happened.
	StartFailures     int
	FirstStartFailure time.Time
	// Permanent failures are not retried until the spec changes: the
	// restart policy gave up, or starts kept failing past the start
	// deadline.
	Permanent bool
	// At is when it last failed.
	At time.Time
}

// MinStartRetry is the shortest wait between two failed starts, whatever
// the restart delay (a start that fails at once must not spin).
const MinStartRetry = time.Second

// Exited returns f updated for an exit at now of the instance of the spec
// with fingerprint fp, under restart policy p: the count starts afresh for
// a new spec or once the interval since the window's first exit has passed.
func Exited(f Failure, fp string, p allocation.Restart, now time.Time) Failure {
	if f.Fingerprint != fp {
		f = Failure{Fingerprint: fp}
	}
	f.StartFailures, f.FirstStartFailure = 0, time.Time{} // it did start
	if f.Count == 0 || now.Sub(f.WindowStart) >= p.Interval {
		f.Count, f.WindowStart = 0, now
	}
	f.Count++
	f.At = now
	return f
}

// StartFailed returns f updated for a failed start at now; once the first
// failed start in a row is deadline old the failure is permanent.
func StartFailed(f Failure, fp string, deadline time.Duration, now time.Time) Failure {
	if f.Fingerprint != fp {
		f = Failure{Fingerprint: fp}
	}
	if f.StartFailures == 0 {
		f.FirstStartFailure = now
	}
	f.StartFailures++
	f.At = now
	if now.Sub(f.FirstStartFailure) >= deadline {
		f.Permanent = true
	}
	return f
}

// Verdict is what the restart policy decides after a failure.
type Verdict struct {
	// GiveUp: no more tries until the spec changes.
	GiveUp bool
	// At is when the next try is due; Wait is how long after the failure
	// that is.
	At   time.Time
	Wait time.Duration
	// Attempt is the number of the restart due within its interval
	// (1-based); zero for a start retry or when giving up.
	Attempt int
	// Reason says it for people: "restart 2 of 3", "start retry 4",
	// "exited 4 times within 5m0s, more than ...".
	Reason string
}

// Next applies restart policy p to failure f.
func Next(f Failure, p allocation.Restart) Verdict {
	switch {
	case f.Permanent:
		return Verdict{GiveUp: true, Reason: "not retried until the spec changes"}
	case f.StartFailures > 0:
		wait := specrules.RestartBackoff(max(p.Delay, MinStartRetry), f.StartFailures)
		return Verdict{At: f.At.Add(wait), Wait: wait, Reason: fmt.Sprintf("start retry %d", f.StartFailures)}
	case f.Count > p.Attempts && p.Mode == allocation.RestartDelay:
		at := f.WindowStart.Add(p.Interval)
		return Verdict{At: at, Wait: at.Sub(f.At), Attempt: 1,
			Reason: fmt.Sprintf("restart attempts (%d in %s) used, mode delay: restart once the interval ends", p.Attempts, p.Interval)}
	case f.Count > p.Attempts:
		return Verdict{GiveUp: true, Reason: fmt.Sprintf("exited %d times within %s, more than the restart policy's %d attempts (mode fail)", f.Count, p.Interval, p.Attempts)}
	}
	wait := specrules.RestartBackoff(p.Delay, f.Count)
	return Verdict{At: f.At.Add(wait), Wait: wait, Attempt: f.Count, Reason: fmt.Sprintf("restart %d of %d", f.Count, p.Attempts)}
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
		case have: // exited: the restart policy decides
			if !failed {
				f = Exited(Failure{}, fp, spec.RestartPolicy(), obs.Now) // exited behind our back
			}
			v := Next(f, spec.RestartPolicy())
			switch {
			case v.GiveUp:
				p.Actions = append(p.Actions, Action{Kind: GiveUp, AllocID: id, Reason: v.Reason})
			case obs.Now.Before(v.At):
				p.RetryAt = earliest(p.RetryAt, v.At)
			default:
				p.Actions = append(p.Actions, Action{Kind: Restart, AllocID: id, Reason: "instance exited; " + v.Reason})
			}
		case failed && Next(f, spec.RestartPolicy()).GiveUp:
			if reg {
				p.Actions = append(p.Actions, Action{Kind: Deregister, AllocID: id, Reason: "allocation failed"})
			}
		case failed && obs.Now.Before(Next(f, spec.RestartPolicy()).At):
			p.RetryAt = earliest(p.RetryAt, Next(f, spec.RestartPolicy()).At)
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
