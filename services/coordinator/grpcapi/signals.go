package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"slipway.dev/coordinator/signals"
	"slipway.dev/platform/rpc"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// SetSignals gives the API the store that edges' reports are merged into
// on the leader; without one, reports are refused as FAILED_PRECONDITION.
func (a *API) SetSignals(s *signals.Store) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.signals = s
}

func (a *API) signalStore() *signals.Store {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.signals
}

type signalServer struct {
	edgev1.UnimplementedSignalServiceServer
	a *API
}

func registerSignals(s *rpc.Server, a *API) {
	edgev1.RegisterSignalServiceServer(s, &signalServer{a: a})
}

// ReportSignals merges an edge's report on the leader (a follower forwards
// it).
func (s *signalServer) ReportSignals(ctx context.Context, req *edgev1.ReportSignalsRequest) (*edgev1.ReportSignalsResponse, error) {
	// A bad report is refused where it arrives, not only on the leader, so
	// its answer does not depend on a leader being known.
	if err := signalError(signals.Validate(req)); err != nil {
		return nil, err
	}
	return onLeader(ctx, s.a, func(context.Context) (*edgev1.ReportSignalsResponse, error) {
		st := s.a.signalStore()
		if st == nil {
			return nil, fmt.Errorf("this coordinator runs no engine and keeps no signals: %w", errFailedPrecondition)
		}
		if err := signalError(st.Add(time.Now(), req)); err != nil {
			return nil, err
		}
		return &edgev1.ReportSignalsResponse{Leader: s.a.raft.ID()}, nil
	}, func(ctx context.Context, conn *grpc.ClientConn) (*edgev1.ReportSignalsResponse, error) {
		return edgev1.NewSignalServiceClient(conn).ReportSignals(ctx, req)
	})
}

// signalError turns a report's field error into InvalidArgument naming the
// field; other errors pass through.
func signalError(err error) error {
	var fe *signals.FieldError
	if errors.As(err, &fe) {
		return rpc.InvalidArgument("invalid signal report", []rpc.FieldViolation{{Field: fe.Field, Description: fe.Description}})
	}
	return err
}
