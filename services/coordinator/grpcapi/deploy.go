package grpcapi

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"

	"slipway.dev/coordinator/acl"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/spec"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// followerLag is how long WatchRollout on a follower waits for an unknown
// rollout to be replicated before answering NOT_FOUND.
const followerLag = 2 * time.Second

// defaultRolloutLimit caps ListRollouts when the request gives no limit.
const defaultRolloutLimit = 100

type deployServer struct {
	deployv1.UnimplementedDeployServiceServer
	a *API
}

func registerDeploy(s *rpc.Server, a *API) {
	deployv1.RegisterDeployServiceServer(s, &deployServer{a: a})
}

// read serves a read locally, or on the leader after it verified its
// leadership when c is READ_CONSISTENCY_LEADER.
func read[Resp any](ctx context.Context, a *API, c deployv1.ReadConsistency, local func() (Resp, error), forward func(context.Context, *grpc.ClientConn) (Resp, error)) (Resp, error) {
	if c != deployv1.ReadConsistency_READ_CONSISTENCY_LEADER {
		if err := a.awaitCaughtUp(ctx); err != nil {
			var zero Resp
			return zero, toStatus(err)
		}
		resp, err := local()
		return resp, toStatus(err)
	}
	return onLeader(ctx, a, func(ctx context.Context) (Resp, error) {
		var zero Resp
		if err := a.raft.VerifyLeader(ctx); err != nil {
			return zero, err
		}
		return local()
	}, forward)
}

func (s *deployServer) Deploy(ctx context.Context, req *deployv1.DeployRequest) (*deployv1.DeployResponse, error) {
	if vs := spec.Validate(req.GetSpec()); len(vs) > 0 {
		return nil, rpc.InvalidArgument("spec", vs)
	}
	if vs := gateViolations(s.a.gateAllow, req.GetSpec()); len(vs) > 0 {
		return nil, rpc.InvalidArgument("spec", vs)
	}
	// The id is chosen here, before any forwarding, so that an unknown
	// outcome can name it.
	if req.GetRequestId() == "" {
		req.RequestId = newRequestID()
	}
	rid := req.GetRequestId()
	return onLeader(ctx, s.a, func(ctx context.Context) (*deployv1.DeployResponse, error) {
		if vs := spec.CheckNodes(req.GetSpec(), s.a.fsm.Nodes()); len(vs) > 0 {
			return nil, rpc.InvalidArgument("spec", vs)
		}
		normal := spec.Normalize(req.GetSpec())
		// A retry of a recorded request is answered by the state (a
		// replay, or a refusal of another spec under its id), whatever
		// happened to its secrets since.
		if !s.a.fsm.KnownRequest(rid) {
			if err := s.a.checkMounts(normal); err != nil {
				return nil, err
			}
		}
		// The state pins the unversioned mounts and checks the scopes
		// again when it applies the entry.
		res, err := apply[state.DeployResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{
			Spec: normal, RequestId: rid, Supersede: req.GetSupersede(),
			CreatedBy: req.GetCreatedBy(), Reason: req.GetReason(), AccessorId: accessor(ctx),
			ExpectedRelease: req.ExpectedRelease,
		}}})
		if err != nil {
			return nil, withRequest(err, rid)
		}
		return &deployv1.DeployResponse{Release: res.Release, Rollout: res.Rollout, Replayed: res.Replayed}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.DeployResponse, error) {
		resp, err := deployv1.NewDeployServiceClient(c).Deploy(ctx, req)
		return resp, forwardedOutcome(err, rid)
	})
}

func (s *deployServer) RollbackService(ctx context.Context, req *deployv1.RollbackServiceRequest) (*deployv1.RollbackServiceResponse, error) {
	if req.GetService() == "" {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "service", Description: "is required"}})
	}
	if req.GetRequestId() == "" {
		req.RequestId = newRequestID()
	}
	rid := req.GetRequestId()
	return onLeader(ctx, s.a, func(ctx context.Context) (*deployv1.RollbackServiceResponse, error) {
		res, err := apply[state.DeployResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_Rollback{Rollback: &statev1.RollbackOp{
			Service: req.GetService(), ToRelease: req.GetToRelease(), RequestId: rid,
			Supersede: req.GetSupersede(), By: req.GetBy(), Reason: req.GetReason(), AccessorId: accessor(ctx),
		}}})
		if err != nil {
			return nil, withRequest(err, rid)
		}
		return &deployv1.RollbackServiceResponse{Release: res.Release, Rollout: res.Rollout, Replayed: res.Replayed}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.RollbackServiceResponse, error) {
		resp, err := deployv1.NewDeployServiceClient(c).RollbackService(ctx, req)
		return resp, forwardedOutcome(err, rid)
	})
}

// command records an operator command on rollout id.
func (s *deployServer) command(ctx context.Context, op *statev1.OperatorOp, forward func(context.Context, *grpc.ClientConn) (*deployv1.Rollout, error)) (*deployv1.Rollout, error) {
	if op.GetRolloutId() == "" {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "id", Description: "is required"}})
	}
	rid := op.GetRequestId()
	return onLeader(ctx, s.a, func(ctx context.Context) (*deployv1.Rollout, error) {
		op.AccessorId = accessor(ctx)
		res, err := apply[state.RolloutResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_Operator{Operator: op}})
		if err != nil {
			return nil, withRequest(err, rid)
		}
		return res.Rollout, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.Rollout, error) {
		r, err := forward(ctx, c)
		return r, forwardedOutcome(err, rid)
	})
}

func (s *deployServer) PromoteRollout(ctx context.Context, req *deployv1.PromoteRolloutRequest) (*deployv1.PromoteRolloutResponse, error) {
	if req.GetRequestId() == "" {
		req.RequestId = newRequestID()
	}
	r, err := s.command(ctx, &statev1.OperatorOp{RolloutId: req.GetId(), Kind: deployv1.CommandKind_COMMAND_KIND_PROMOTE, Full: req.GetFull(), By: req.GetBy(), Reason: req.GetReason(), RequestId: req.GetRequestId()},
		func(ctx context.Context, c *grpc.ClientConn) (*deployv1.Rollout, error) {
			resp, err := deployv1.NewDeployServiceClient(c).PromoteRollout(ctx, req)
			return resp.GetRollout(), err
		})
	if err != nil {
		return nil, err
	}
	return &deployv1.PromoteRolloutResponse{Rollout: r}, nil
}

func (s *deployServer) PauseRollout(ctx context.Context, req *deployv1.PauseRolloutRequest) (*deployv1.PauseRolloutResponse, error) {
	if req.GetRequestId() == "" {
		req.RequestId = newRequestID()
	}
	r, err := s.command(ctx, &statev1.OperatorOp{RolloutId: req.GetId(), Kind: deployv1.CommandKind_COMMAND_KIND_PAUSE, By: req.GetBy(), Reason: req.GetReason(), RequestId: req.GetRequestId()},
		func(ctx context.Context, c *grpc.ClientConn) (*deployv1.Rollout, error) {
			resp, err := deployv1.NewDeployServiceClient(c).PauseRollout(ctx, req)
			return resp.GetRollout(), err
		})
	if err != nil {
		return nil, err
	}
	return &deployv1.PauseRolloutResponse{Rollout: r}, nil
}

func (s *deployServer) ResumeRollout(ctx context.Context, req *deployv1.ResumeRolloutRequest) (*deployv1.ResumeRolloutResponse, error) {
	if req.GetRequestId() == "" {
		req.RequestId = newRequestID()
	}
	r, err := s.command(ctx, &statev1.OperatorOp{RolloutId: req.GetId(), Kind: deployv1.CommandKind_COMMAND_KIND_RESUME, By: req.GetBy(), Reason: req.GetReason(), RequestId: req.GetRequestId()},
		func(ctx context.Context, c *grpc.ClientConn) (*deployv1.Rollout, error) {
			resp, err := deployv1.NewDeployServiceClient(c).ResumeRollout(ctx, req)
			return resp.GetRollout(), err
		})
	if err != nil {
		return nil, err
	}
	return &deployv1.ResumeRolloutResponse{Rollout: r}, nil
}

func (s *deployServer) AbortRollout(ctx context.Context, req *deployv1.AbortRolloutRequest) (*deployv1.AbortRolloutResponse, error) {
	if req.GetRequestId() == "" {
		req.RequestId = newRequestID()
	}
	r, err := s.command(ctx, &statev1.OperatorOp{RolloutId: req.GetId(), Kind: deployv1.CommandKind_COMMAND_KIND_ABORT, By: req.GetBy(), Reason: req.GetReason(), RequestId: req.GetRequestId()},
		func(ctx context.Context, c *grpc.ClientConn) (*deployv1.Rollout, error) {
			resp, err := deployv1.NewDeployServiceClient(c).AbortRollout(ctx, req)
			return resp.GetRollout(), err
		})
	if err != nil {
		return nil, err
	}
	return &deployv1.AbortRolloutResponse{Rollout: r}, nil
}

func (s *deployServer) GetRollout(ctx context.Context, req *deployv1.GetRolloutRequest) (*deployv1.GetRolloutResponse, error) {
	if req.GetId() == "" {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "id", Description: "is required"}})
	}
	return read(ctx, s.a, req.GetConsistency(), func() (*deployv1.GetRolloutResponse, error) {
		r, err := s.a.fsm.Rollout(req.GetId())
		if err != nil {
			return nil, err
		}
		return &deployv1.GetRolloutResponse{Rollout: r}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.GetRolloutResponse, error) {
		return deployv1.NewDeployServiceClient(c).GetRollout(ctx, req)
	})
}

func (s *deployServer) ListRollouts(ctx context.Context, req *deployv1.ListRolloutsRequest) (*deployv1.ListRolloutsResponse, error) {
	if req.GetLimit() < 0 {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "limit", Description: "must not be negative"}})
	}
	return read(ctx, s.a, req.GetConsistency(), func() (*deployv1.ListRolloutsResponse, error) {
		limit := int(req.GetLimit())
		if limit == 0 {
			limit = defaultRolloutLimit
		}
		if t := caller(ctx); req.GetService() == "" && t != nil && !t.Has(acl.Read) && !t.Has(acl.Admin) {
			// A scoped token lists the rollouts of its services only.
			var out []*deployv1.Rollout
			for _, r := range s.a.fsm.Rollouts("", req.GetActiveOnly(), 0) {
				if len(out) < limit && t.Sees(r.GetService()) {
					out = append(out, r)
				}
			}
			return &deployv1.ListRolloutsResponse{Rollouts: out}, nil
		}
		return &deployv1.ListRolloutsResponse{Rollouts: s.a.fsm.Rollouts(req.GetService(), req.GetActiveOnly(), limit)}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.ListRolloutsResponse, error) {
		return deployv1.NewDeployServiceClient(c).ListRollouts(ctx, req)
	})
}

func (s *deployServer) GetService(ctx context.Context, req *deployv1.GetServiceRequest) (*deployv1.GetServiceResponse, error) {
	if req.GetName() == "" {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "name", Description: "is required"}})
	}
	return read(ctx, s.a, req.GetConsistency(), func() (*deployv1.GetServiceResponse, error) {
		svc, err := s.a.fsm.Service(req.GetName())
		if err != nil {
			return nil, err
		}
		return &deployv1.GetServiceResponse{Service: svc}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.GetServiceResponse, error) {
		return deployv1.NewDeployServiceClient(c).GetService(ctx, req)
	})
}

func (s *deployServer) ListServices(ctx context.Context, req *deployv1.ListServicesRequest) (*deployv1.ListServicesResponse, error) {
	return read(ctx, s.a, req.GetConsistency(), func() (*deployv1.ListServicesResponse, error) {
		svcs := s.a.fsm.Services()
		out := svcs[:0] // a scoped token lists its services only
		for _, svc := range svcs {
			if sees(ctx, svc.GetName()) {
				out = append(out, svc)
			}
		}
		return &deployv1.ListServicesResponse{Services: out}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.ListServicesResponse, error) {
		return deployv1.NewDeployServiceClient(c).ListServices(ctx, req)
	})
}

func (s *deployServer) ListReleases(ctx context.Context, req *deployv1.ListReleasesRequest) (*deployv1.ListReleasesResponse, error) {
	if req.GetService() == "" {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "service", Description: "is required"}})
	}
	if req.GetLimit() < 0 {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "limit", Description: "must not be negative"}})
	}
	return read(ctx, s.a, req.GetConsistency(), func() (*deployv1.ListReleasesResponse, error) {
		rels, audit, err := s.a.fsm.Releases(req.GetService(), int(req.GetLimit()))
		if err != nil {
			return nil, err
		}
		return &deployv1.ListReleasesResponse{Releases: rels, Audit: audit}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*deployv1.ListReleasesResponse, error) {
		return deployv1.NewDeployServiceClient(c).ListReleases(ctx, req)
	})
}

// eventBatch caps the events WatchEvents reads from the state at once, so a
// watcher catching up on a long history holds the state's lock briefly.
const eventBatch = 500

// WatchEvents streams the events of every rollout (of one service when the
// request names one) from the local state, in index order: the recorded
// ones after from_index, then new ones as they are applied. A token scoped
// to some services sees only their events.
func (s *deployServer) WatchEvents(req *deployv1.WatchEventsRequest, stream grpc.ServerStreamingServer[deployv1.WatchEventsResponse]) error {
	if req.Since != nil {
		if err := req.GetSince().CheckValid(); err != nil {
			return rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "since", Description: err.Error()}})
		}
	}
	ctx := stream.Context()
	if err := s.a.awaitCaughtUp(ctx); err != nil {
		return toStatus(err)
	}
	var since time.Time
	if req.Since != nil {
		since = req.GetSince().AsTime()
	}
	from := req.GetFromIndex()
	for {
		log := s.a.fsm.EventsSince(req.GetService(), from, eventBatch)
		for _, se := range log.Events {
			from = se.Event.GetIndex()
			if !sees(ctx, se.Service) || (!since.IsZero() && se.Event.GetAt().AsTime().Before(since)) {
				continue
			}
			if err := stream.Send(&deployv1.WatchEventsResponse{Event: se.Event, Service: se.Service}); err != nil {
				return err
			}
		}
		if log.More {
			continue
		}
		if req.GetHistoryOnly() {
			return nil
		}
		select {
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-log.Changed:
		}
	}
}

// WatchRollout streams the rollout's events from the local state: every
// recorded event after from_index, then new ones as they are applied, until
// the rollout is final and every event was sent.
func (s *deployServer) WatchRollout(req *deployv1.WatchRolloutRequest, stream grpc.ServerStreamingServer[deployv1.WatchRolloutResponse]) error {
	if req.GetId() == "" {
		return rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "id", Description: "is required"}})
	}
	ctx := stream.Context()
	if err := s.a.awaitCaughtUp(ctx); err != nil {
		return toStatus(err)
	}
	from := req.GetFromIndex()
	// A follower may not have applied a rollout the leader just created:
	// give it a moment before answering NOT_FOUND.
	appear := time.Now().Add(followerLag)
	for {
		evs, err := s.a.fsm.EventsAfter(req.GetId(), from)
		if errors.Is(err, state.ErrNotFound) && !s.a.raft.IsLeader() && time.Now().Before(appear) {
			select {
			case <-ctx.Done():
				return toStatus(ctx.Err())
			case <-s.a.fsm.Changed():
			case <-time.After(time.Until(appear)):
			}
			continue
		}
		if err != nil {
			return toStatus(err)
		}
		for _, ev := range evs.Events {
			if err := stream.Send(&deployv1.WatchRolloutResponse{Event: ev, Rollout: evs.Rollout}); err != nil {
				return err
			}
			from = ev.GetIndex()
		}
		if evs.Final {
			return nil
		}
		select {
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-evs.Changed:
		}
	}
}
