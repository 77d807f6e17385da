package exitcode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestFromError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"plain", errors.New("boom"), Failed},
		{"usage", Usagef("missing %s", "-f"), Usage},
		{"explicit wrapped", fmt.Errorf("deploy: %w", With(Conflict, errors.New("x"))), Conflict},
		{"invalid argument", status.Error(codes.InvalidArgument, "bad"), Usage},
		{"not found", status.Error(codes.NotFound, "no"), NotFound},
		{"not found wrapped", fmt.Errorf("get service: %w", status.Error(codes.NotFound, "no")), NotFound},
		{"failed precondition", status.Error(codes.FailedPrecondition, "active"), Conflict},
		{"already exists", status.Error(codes.AlreadyExists, "dup"), Conflict},
		{"unavailable", status.Error(codes.Unavailable, "down"), Unavailable},
		{"deadline status", status.Error(codes.DeadlineExceeded, "slow"), Unavailable},
		{"deadline context", fmt.Errorf("call: %w", context.DeadlineExceeded), Unavailable},
		{"internal", status.Error(codes.Internal, "bug"), Failed},
		{"permission", status.Error(codes.PermissionDenied, "no"), Denied},
		{"unauthenticated", status.Error(codes.Unauthenticated, "no token"), Denied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromError(tt.err); got != tt.want {
				t.Errorf("FromError(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestWithNil(t *testing.T) {
	if err := With(Conflict, nil); err != nil {
		t.Errorf("With(code, nil) = %v, want nil", err)
	}
}
