package grpcapi

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/state"
)

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("rollout x: %w", state.ErrNotFound), codes.NotFound},
		{fmt.Errorf("web has web-1: %w", state.ErrActiveRollout), codes.FailedPrecondition},
		{fmt.Errorf("web-1 is SUPERSEDED: %w", state.ErrRolloutFinal), codes.FailedPrecondition},
		{fmt.Errorf("bad: %w", state.ErrInvalid), codes.InvalidArgument},
		{fmt.Errorf("solo: %w", state.ErrNoEarlierRelease), codes.FailedPrecondition},
		{fmt.Errorf("no other voter: %w", errFailedPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("address used: %w", errAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("request_id r1 used for release 1: %w", state.ErrRequestReused), codes.AlreadyExists},
		{fmt.Errorf("apply: %w", raftnode.ErrTimeout), codes.Unavailable},
		{fmt.Errorf("v9: %w", state.ErrUnsupportedVersion), codes.FailedPrecondition},
		{fmt.Errorf("apply: %w", raftnode.ErrNotLeader), codes.Unavailable},
		{fmt.Errorf("forward: %w", errNoLeader), codes.Unavailable},
		{fmt.Errorf("apply: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{status.Error(codes.AlreadyExists, "from the leader"), codes.AlreadyExists},
		{fmt.Errorf("disk on fire"), codes.Internal},
	} {
		got := toStatus(tc.err)
		if status.Code(got) != tc.want {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, status.Code(got), tc.want)
		}
		if st := status.Convert(got); st.Message() != tc.err.Error() && status.Code(tc.err) == codes.Unknown {
			t.Errorf("toStatus(%v) lost the message: %q", tc.err, st.Message())
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}
