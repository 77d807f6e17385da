// Package exitcode maps slipctl's errors to the exit codes CI jobs rely on.
package exitcode

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes of slipctl.
const (
	// OK: the command did what was asked (and the rollout succeeded).
	OK = 0
	// Failed: any other error, or a rollout that ended FAILED, REVERTED,
	// ABORTED or SUPERSEDED.
	Failed = 1
	// Usage: bad flags or arguments, an unreadable or invalid spec
	// (INVALID_ARGUMENT).
	Usage = 2
	// NotFound: the service, rollout, release, peer or node does not exist.
	NotFound = 3
	// Conflict: the request clashes with the current state
	// (FAILED_PRECONDITION, ALREADY_EXISTS), e.g. a rollout is already active.
	Conflict = 4
	// Unavailable: no coordinator answered in time (UNAVAILABLE,
	// DEADLINE_EXCEEDED).
	Unavailable = 5
	// Denied: no valid token (UNAUTHENTICATED), or the token does not allow
	// the call (PERMISSION_DENIED).
	Denied = 6
	// Unknown: a write's outcome is unknown after every retry (the leader
	// changed while committing it, or the link broke mid-call): it may still
	// be applied. Retry with the same --request-id to settle it.
	Unknown = 7
)

// Help is the exit code table for --help texts.
const Help = `Exit codes:
  0  ok (for --wait and rollout watch: the rollout SUCCEEDED)
  1  error, or the rollout ended FAILED, REVERTED, ABORTED or SUPERSEDED
  2  usage error or invalid input (every field violation is printed)
  3  not found
  4  conflict: FAILED_PRECONDITION or ALREADY_EXISTS (e.g. an active rollout)
  5  coordinator unavailable or timed out
  6  denied: no valid token (set SLIPWAY_TOKEN), or the token lacks the permission
  7  outcome unknown: the write may still be applied; retry with the same --request-id`

// coded carries an explicit exit code.
type coded struct {
	code int
	err  error
}

func (c *coded) Error() string { return c.err.Error() }
func (c *coded) Unwrap() error { return c.err }

// With returns err marked to exit with code.
func With(code int, err error) error {
	if err == nil {
		return nil
	}
	return &coded{code: code, err: err}
}

// Usagef returns a usage error: exit code 2.
func Usagef(format string, args ...any) error {
	return With(Usage, fmt.Errorf(format, args...))
}

// FromError returns the exit code for err: an explicit code set by With
// wins, then the gRPC status code, then context errors; anything else is 1.
func FromError(err error) int {
	if err == nil {
		return OK
	}
	var c *coded
	if errors.As(err, &c) {
		return c.code
	}
	if st, ok := status.FromError(err); ok {
		return FromCode(st.Code())
	}
	// status.FromError only looks at the outermost error; look deeper.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return FromCode(se.GRPCStatus().Code())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Unavailable
	}
	return Failed
}

// FromCode maps a gRPC status code to an exit code.
func FromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return OK
	case codes.InvalidArgument, codes.OutOfRange:
		return Usage
	case codes.NotFound:
		return NotFound
	case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
		return Conflict
	case codes.Unavailable, codes.DeadlineExceeded:
		return Unavailable
	case codes.Unauthenticated, codes.PermissionDenied:
		return Denied
	default:
		return Failed
	}
}
