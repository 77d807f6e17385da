// Package grpcapi serves slipway.agent.v1.NodeAgentService over the agent
// core; generated types stop here.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/nodeagent/agent"
	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/rpc"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// SyncTimeout bounds how long a sync waits for its starts when the caller
// set no deadline.
var SyncTimeout = 60 * time.Second

// Server implements agentv1.NodeAgentServiceServer.
type Server struct {
	agentv1.UnimplementedNodeAgentServiceServer
	a *agent.Agent
}

// Interface guard.
var _ agentv1.NodeAgentServiceServer = (*Server)(nil)

// New returns the gRPC service over a.
func New(a *agent.Agent) *Server { return &Server{a: a} }

// SyncAllocations converges to the request's desired set.
func (s *Server) SyncAllocations(ctx context.Context, req *agentv1.SyncAllocationsRequest) (*agentv1.SyncAllocationsResponse, error) {
	var vs []rpc.FieldViolation
	if req.GetNodeId() == "" {
		vs = append(vs, rpc.FieldViolation{Field: "node_id", Description: "must not be empty"})
	}
	if req.GetToken() == nil {
		vs = append(vs, rpc.FieldViolation{Field: "token", Description: "a fencing token is required"})
	}
	if len(vs) > 0 {
		return nil, rpc.InvalidArgument("sync request", vs)
	}
	specs := make([]allocation.Spec, 0, len(req.GetAllocations()))
	for _, a := range req.GetAllocations() {
		specs = append(specs, SpecFromProto(a))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, SyncTimeout)
		defer cancel()
	}
	res, err := s.a.Sync(ctx, req.GetNodeId(), agent.Token{Term: req.GetToken().GetTerm(), Index: req.GetToken().GetIndex()}, specs)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &agentv1.SyncAllocationsResponse{}
	for _, st := range res.Allocations {
		out.Allocations = append(out.Allocations, StatusToProto(st))
	}
	return out, nil
}

// GetNodeStatus reports identity, capacity and allocations.
func (s *Server) GetNodeStatus(ctx context.Context, _ *agentv1.GetNodeStatusRequest) (*agentv1.GetNodeStatusResponse, error) {
	cfg := s.a.Config()
	tok := s.a.Token()
	out := &agentv1.GetNodeStatusResponse{
		NodeId: cfg.NodeID, Labels: cfg.Labels, CpuMhz: int32(cfg.CPUMHz), MemoryMb: int32(cfg.MemoryMB),
		Driver: s.a.Driver(), Token: &agentv1.FencingToken{Term: tok.Term, Index: tok.Index}, Address: cfg.Address,
		Policy: &agentv1.NodePolicy{Privileged: cfg.Policy.Privileged, Caps: cfg.Policy.Caps, HostPaths: cfg.Policy.HostPaths, Images: cfg.Policy.Images},
	}
	for _, st := range s.a.Statuses() {
		out.Allocations = append(out.Allocations, StatusToProto(st))
	}
	return out, nil
}

// WatchAllocations streams every allocation's status, then each change.
func (s *Server) WatchAllocations(_ *agentv1.WatchAllocationsRequest, stream agentv1.NodeAgentService_WatchAllocationsServer) error {
	cur, ch, cancel := s.a.Subscribe()
	defer cancel()
	for _, st := range cur {
		if err := stream.Send(&agentv1.WatchAllocationsResponse{Allocation: StatusToProto(st), Message: "current"}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return status.Error(codes.ResourceExhausted, "watch fell behind the agent's changes; watch again for a fresh picture")
			}
			if err := stream.Send(&agentv1.WatchAllocationsResponse{Allocation: StatusToProto(ev.Status), Message: ev.Message}); err != nil {
				return err
			}
		}
	}
}

func toStatus(err error) error {
	switch {
	case errors.Is(err, agent.ErrStaleToken):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, agent.ErrWrongNode):
		return rpc.InvalidArgument("sync request", []rpc.FieldViolation{{Field: "node_id", Description: err.Error()}})
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	default:
		return status.Error(codes.Internal, fmt.Sprintf("sync: %v", err))
	}
}

// SpecFromProto converts an allocation.
func SpecFromProto(a *agentv1.Allocation) allocation.Spec {
	return allocation.Spec{
		ID: a.GetId(), NodeID: a.GetNodeId(), Service: a.GetService(), Release: a.GetRelease(), Track: a.GetTrack(),
		Image: a.GetImage(), Env: a.GetEnv(), Args: a.GetArgs(), Port: int(a.GetPort()), HostPort: int(a.GetHostPort()),
		CPUMHz: int(a.GetCpuMhz()), MemoryMB: int(a.GetMemoryMb()),
		Check: allocation.Check{
			HTTP: a.GetCheck().GetHttp(), TCP: a.GetCheck().GetTcp(),
			Interval: dur(a.GetCheck().GetInterval()), Timeout: dur(a.GetCheck().GetTimeout()),
			StartPeriod: dur(a.GetCheck().GetStartPeriod()), Port: a.GetCheck().GetPort(),
		},
		PortName:      a.GetPortName(),
		Ports:         ports(a.GetPorts()),
		KillTimeout:   dur(a.GetKillTimeout()),
		Stopped:       a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED,
		Privileged:    a.GetPrivileged(),
		CapAdd:        a.GetCapAdd(),
		Mounts:        mounts(a.GetMounts()),
		Restart:       restart(a.GetRestart()),
		StartDeadline: dur(a.GetStartDeadline()),
		Volumes:       volumes(a.GetVolumes()),
		Entrypoint:    a.GetEntrypoint(),
		Labels:        a.GetLabels(),
		StopSignal:    a.GetStopSignal(),
		Files:         files(a.GetFiles()),
	}
}

func ports(ps []*agentv1.NamedPort) []allocation.Port {
	var out []allocation.Port
	for _, p := range ps {
		out = append(out, allocation.Port{Name: p.GetName(), Port: int(p.GetPort()), HostPort: int(p.GetHostPort())})
	}
	return out
}

func volumes(vs []*agentv1.Volume) []allocation.Volume {
	var out []allocation.Volume
	for _, v := range vs {
		out = append(out, allocation.Volume{Name: v.GetName(), ContainerPath: v.GetContainerPath(), ReadOnly: v.GetReadOnly()})
	}
	return out
}

func files(fs []*agentv1.File) []allocation.File {
	var out []allocation.File
	for _, f := range fs {
		out = append(out, allocation.File{Kind: f.GetKind(), Name: f.GetName(), Version: f.GetVersion(), Target: f.GetTarget(),
			Mode: f.GetMode(), UID: f.GetUid(), GID: f.GetGid(), Data: f.GetData()})
	}
	return out
}

// restart turns the proto's restart policy into the agent's, unset fields
// defaulted; nil stays nil (the defaults). An unknown mode is kept as a
// name validation refuses.
func restart(r *agentv1.RestartPolicy) *allocation.Restart {
	if r == nil {
		return nil
	}
	out := allocation.DefaultRestart()
	if r.Attempts != nil {
		out.Attempts = int(r.GetAttempts())
	}
	if r.GetInterval() != nil && r.GetInterval().AsDuration() != 0 {
		out.Interval = r.GetInterval().AsDuration()
	}
	if r.GetDelay() != nil {
		out.Delay = r.GetDelay().AsDuration()
	}
	switch r.GetMode() {
	case agentv1.RestartMode_RESTART_MODE_UNSPECIFIED, agentv1.RestartMode_RESTART_MODE_FAIL:
		out.Mode = allocation.RestartFail
	case agentv1.RestartMode_RESTART_MODE_DELAY:
		out.Mode = allocation.RestartDelay
	default:
		out.Mode = fmt.Sprintf("mode %d", int32(r.GetMode()))
	}
	return &out
}

func mounts(ms []*agentv1.Mount) []allocation.Mount {
	var out []allocation.Mount
	for _, m := range ms {
		out = append(out, allocation.Mount{HostPath: m.GetHostPath(), ContainerPath: m.GetContainerPath(), ReadOnly: m.GetReadOnly()})
	}
	return out
}

func dur(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

var states = map[agent.State]agentv1.AllocationState{
	agent.Pending: agentv1.AllocationState_ALLOCATION_STATE_PENDING, agent.Starting: agentv1.AllocationState_ALLOCATION_STATE_STARTING,
	agent.Running: agentv1.AllocationState_ALLOCATION_STATE_RUNNING, agent.Draining: agentv1.AllocationState_ALLOCATION_STATE_DRAINING,
	agent.Stopped: agentv1.AllocationState_ALLOCATION_STATE_STOPPED, agent.Failed: agentv1.AllocationState_ALLOCATION_STATE_FAILED,
}

var healths = map[string]agentv1.Health{
	"passing": agentv1.Health_HEALTH_PASSING, "warning": agentv1.Health_HEALTH_WARNING, "critical": agentv1.Health_HEALTH_CRITICAL,
}

// StatusToProto converts a status.
func StatusToProto(s agent.Status) *agentv1.AllocationStatus {
	out := &agentv1.AllocationStatus{
		AllocationId: s.AllocID, Service: s.Service, Release: s.Release, Track: s.Track,
		State: states[s.State], Health: healths[string(s.Health)], ContainerId: s.InstanceID,
		HostPort: int32(s.HostPort), Address: s.Address, Restarts: int32(s.Restarts), Error: s.Error,
		Progress: s.Progress, InStartPeriod: s.InStartPeriod,
	}
	if !s.HealthySince.IsZero() {
		out.HealthySince = timestamppb.New(s.HealthySince)
	}
	if !s.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(s.UpdatedAt)
	}
	return out
}
