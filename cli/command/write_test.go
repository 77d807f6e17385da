package command

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/rpc"
)

func TestRetryableWrite(t *testing.T) {
	for _, tc := range []struct {
		name                string
		err                 error
		retry, maybeApplied bool
	}{
		{"not committed", rpc.WithReason(codes.Unavailable, "no leader", rpc.ReasonNotCommitted, nil), true, false},
		{"outcome unknown", rpc.WithReason(codes.Unavailable, "lost leadership", rpc.ReasonOutcomeUnknown, map[string]string{rpc.MetaRequestID: "r"}), true, true},
		{"broken link", status.Error(codes.Unavailable, "connection reset"), true, true},
		{"deadline", status.Error(codes.DeadlineExceeded, "deadline exceeded"), true, true},
		{"wrapped deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), true, true},
		{"invalid", status.Error(codes.InvalidArgument, "bad spec"), false, false},
		{"conflict", status.Error(codes.AlreadyExists, "request id reused"), false, false},
	} {
		retry, maybe := retryableWrite(tc.err)
		if retry != tc.retry || maybe != tc.maybeApplied {
			t.Errorf("%s: retry=%v maybeApplied=%v, want %v %v", tc.name, retry, maybe, tc.retry, tc.maybeApplied)
		}
	}
}
