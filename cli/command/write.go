package command

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/rpc"
	"slipway.dev/slipctl/exitcode"
)

// Backoff between the retries of a write.
const (
	firstRetry = 200 * time.Millisecond
	maxRetry   = 2 * time.Second
)

// write is ask for a write whose request carries the request id rid, so
// that sending it again is safe: the coordinator replays what it already
// applied. An UNAVAILABLE answer (nothing applied: NOT_COMMITTED; or maybe
// applied: OUTCOME_UNKNOWN, a broken link) or a call that timed out is sent
// again, unchanged, until --retry-for has passed. When it never settles and
// any answer left the outcome open, the error says so plainly and exits
// with exitcode.Unknown, naming rid to retry with.
func write[C, Req, Resp any](ctx context.Context, a *app, client func() (C, error),
	method func(C, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, rid string) (Resp, error) {
	deadline := time.Now().Add(a.g.retryFor)
	wait := firstRetry
	unknown := false
	for attempt := 1; ; attempt++ {
		resp, err := ask(ctx, a, client, method, req)
		if err == nil {
			if unknown {
				a.note("attempt %d with request id %s settled it", attempt, rid)
			}
			return resp, nil
		}
		retry, maybeApplied := retryableWrite(err)
		if !retry {
			return resp, err
		}
		unknown = unknown || maybeApplied
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			var zero Resp
			if unknown {
				return zero, exitcode.With(exitcode.Unknown, fmt.Errorf(
					"the outcome is unknown after %d attempts: the request may still be applied; retry with --request-id %s (or look with slipctl rollout list): %w", attempt, rid, err))
			}
			return zero, err
		}
		what := "coordinator unavailable, nothing applied"
		if maybeApplied {
			what = "outcome unknown (the leader changed or the link broke while committing)"
		}
		a.note("%s: %s; retrying with request id %s in %s", what, status.Convert(err).Message(), rid, wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetry)
	}
}

// retryableWrite says whether a write that failed with err may be sent again
// (UNAVAILABLE, or its deadline passed), and whether it may have been
// applied (anything but the coordinator's NOT_COMMITTED).
func retryableWrite(err error) (retry, maybeApplied bool) {
	code := status.Code(err)
	if errors.Is(err, context.DeadlineExceeded) {
		code = codes.DeadlineExceeded
	}
	switch code {
	case codes.Unavailable:
		reason, _ := rpc.Reason(err)
		return true, reason != rpc.ReasonNotCommitted
	case codes.DeadlineExceeded:
		return true, true
	}
	return false, false
}
