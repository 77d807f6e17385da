// Package check holds the fault suite's invariant checkers: pure functions
// over what the suite recorded (client calls and answers, samples of
// Consul, agents' logs, edge requests), each returning the violations it
// found in words a reader can act on. No I/O.
package check

import (
	"fmt"
	"time"
)

// Kind is the kind of a recorded client call.
type Kind string

// The calls the workload makes.
const (
	Deploy     Kind = "deploy"
	Rollback   Kind = "rollback"
	Promote    Kind = "promote"
	Abort      Kind = "abort"
	GetService Kind = "get-service"
	GetRollout Kind = "get-rollout"
)

// Outcome says what a call's answer tells about its effect.
type Outcome int

const (
	// OK: the call took effect (or, for a read, answered).
	OK Outcome = iota
	// Failed: a definite refusal (INVALID_ARGUMENT, FAILED_PRECONDITION,
	// NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED): nothing changed.
	Failed
	// Unknown: the call may or may not have taken effect (UNAVAILABLE,
	// DEADLINE_EXCEEDED, a broken connection, an unknown outcome).
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}

// Refusal is why a definite failure was refused, when the checker can use it.
type Refusal string

const (
	// RefusedActive: a Deploy or Rollback without supersede was refused
	// because the service has an active rollout.
	RefusedActive Refusal = "active-rollout"
	// RefusedFinal: a command was refused because its rollout is final.
	RefusedFinal Refusal = "rollout-final"
)

// Call is one client call and its answer, with the times it was sent and
// answered.
type Call struct {
	// Client numbers the client goroutine that made it.
	Client int
	// Service is the service it is about.
	Service string
	// Kind is the call.
	Kind Kind
	// RequestID is the request id of a Deploy or Rollback.
	RequestID string
	// Supersede is a Deploy's or Rollback's supersede flag.
	Supersede bool
	// Rollout is the release number of the rollout a Promote, Abort or
	// GetRollout names (rollout ids are <service>-<release>).
	Rollout uint64
	// Start and End are when it was sent and answered.
	Start, End time.Time
	// Outcome classifies the answer.
	Outcome Outcome
	// Code and Err are the gRPC code and message of a failure.
	Code, Err string
	// Refusal is why a Failed call was refused, when known.
	Refusal Refusal
	// Release is the release a Deploy or Rollback created (or replayed),
	// or the latest release a GetService read.
	Release uint64
	// Final is whether the rollout a GetRollout read was final.
	Final bool
	// State is the rollout state a GetRollout read.
	State string
	// Coordinator is the coordinator the call went to.
	Coordinator string
}

func (c Call) String() string {
	s := fmt.Sprintf("%s client%d %s", c.Start.Format("15:04:05.000"), c.Client, c.Kind)
	switch c.Kind {
	case Deploy, Rollback:
		s += fmt.Sprintf("(rid=%s supersede=%v)", c.RequestID, c.Supersede)
	case Promote, Abort, GetRollout:
		s += fmt.Sprintf("(%s-%d)", c.Service, c.Rollout)
	case GetService:
		s += "(" + c.Service + ")"
	}
	s += " -> " + c.Outcome.String()
	switch {
	case c.Outcome == OK && (c.Kind == Deploy || c.Kind == Rollback || c.Kind == GetService):
		s += fmt.Sprintf(" release %d", c.Release)
	case c.Outcome == OK && c.Kind == GetRollout:
		s += " " + c.State
	case c.Outcome != OK:
		s += " " + c.Code
		if c.Refusal != "" {
			s += " (" + string(c.Refusal) + ")"
		}
	}
	return s + fmt.Sprintf(" [%s, via %s]", c.End.Sub(c.Start).Round(time.Millisecond), c.Coordinator)
}
