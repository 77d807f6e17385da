package grpcapi

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/state"
)

// replaying is a leader that has not yet replayed the log it had at start.
type replaying struct{ Raft }

func (replaying) ID() string           { return "c1" }
func (replaying) CaughtUp() bool       { return false }
func (replaying) IsLeader() bool       { return true }
func (replaying) AppliedIndex() uint64 { return 3 }
func (replaying) BootIndex() uint64    { return 40 }

// TestTokenCheckWaitsForLogReplay: right after a restart a coordinator knows
// no token until it has replayed its log; a call with a token then gets
// UNAVAILABLE (retry), not UNAUTHENTICATED (a valid token refused).
func TestTokenCheckWaitsForLogReplay(t *testing.T) {
	a := New(replaying{}, state.New(), "127.0.0.1:1", nil, nil)
	ctx, cancel := context.WithTimeout(metadata.NewIncomingContext(context.Background(),
		metadata.Pairs("authorization", "Bearer 00ff")), 300*time.Millisecond)
	defer cancel()
	_, err := a.authorize(ctx, "/slipway.deploy.v1.DeployService/ListServices", nil)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("token check on a node still replaying its log: %v, want UNAVAILABLE", err)
	}
}
