package grpcapi

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"

	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/rpc"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

type clusterServer struct {
	clusterv1.UnimplementedClusterServiceServer
	a *API
}

func registerCluster(s *rpc.Server, a *API) {
	clusterv1.RegisterClusterServiceServer(s, &clusterServer{a: a})
}

// peers is the raft configuration st with each peer's gRPC address from the
// replicated peer records of fsm.
func peers(st raftnode.Status, fsm *state.FSM) []*clusterv1.Peer {
	out := make([]*clusterv1.Peer, 0, len(st.Servers))
	for _, s := range st.Servers {
		role := clusterv1.PeerRole_PEER_ROLE_FOLLOWER
		switch {
		case s.ID == st.LeaderID:
			role = clusterv1.PeerRole_PEER_ROLE_LEADER
		case !s.Voter:
			role = clusterv1.PeerRole_PEER_ROLE_NONVOTER
		}
		p := &clusterv1.Peer{Id: s.ID, RaftAddress: s.Address, Role: role, Voter: s.Voter}
		if rec, ok := fsm.Peer(s.ID); ok {
			p.GrpcAddress = rec.GetGrpcAddress()
		}
		out = append(out, p)
	}
	return out
}

func (s *clusterServer) ListPeers(ctx context.Context, req *clusterv1.ListPeersRequest) (*clusterv1.ListPeersResponse, error) {
	st, err := s.a.raft.Status()
	if err != nil {
		return nil, toStatus(err)
	}
	return &clusterv1.ListPeersResponse{Peers: peers(st, s.a.fsm), LeaderId: st.LeaderID, Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex}, nil
}

func (s *clusterServer) AddPeer(ctx context.Context, req *clusterv1.AddPeerRequest) (*clusterv1.AddPeerResponse, error) {
	var vs []rpc.FieldViolation
	if req.GetId() == "" {
		vs = append(vs, rpc.FieldViolation{Field: "id", Description: "is required"})
	}
	vs = append(vs, addressViolations("raft_address", req.GetRaftAddress())...)
	if len(vs) > 0 {
		return nil, rpc.InvalidArgument("request", vs)
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*clusterv1.AddPeerResponse, error) {
		st, err := s.a.raft.Status()
		if err != nil {
			return nil, err
		}
		if err := checkAdd(st, req.GetId(), req.GetRaftAddress()); err != nil {
			return nil, err
		}
		if err := s.a.raft.AddServer(ctx, raftnode.Server{ID: req.GetId(), Address: req.GetRaftAddress(), Voter: !req.GetNonVoter()}); err != nil {
			return nil, err
		}
		st, err = s.a.raft.Status()
		if err != nil {
			return nil, err
		}
		return &clusterv1.AddPeerResponse{Peers: peers(st, s.a.fsm)}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*clusterv1.AddPeerResponse, error) {
		return clusterv1.NewClusterServiceClient(c).AddPeer(ctx, req)
	})
}

func (s *clusterServer) RemovePeer(ctx context.Context, req *clusterv1.RemovePeerRequest) (*clusterv1.RemovePeerResponse, error) {
	if req.GetId() == "" {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "id", Description: "is required"}})
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*clusterv1.RemovePeerResponse, error) {
		st, err := s.a.raft.Status()
		if err != nil {
			return nil, err
		}
		if err := checkRemove(st, req.GetId()); err != nil {
			return nil, err
		}
		if err := s.a.raft.RemoveServer(ctx, req.GetId()); err != nil {
			return nil, err
		}
		if st, err = s.a.raft.Status(); err != nil {
			return nil, err
		}
		return &clusterv1.RemovePeerResponse{Peers: peers(st, s.a.fsm)}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*clusterv1.RemovePeerResponse, error) {
		return clusterv1.NewClusterServiceClient(c).RemovePeer(ctx, req)
	})
}

func (s *clusterServer) TransferLeadership(ctx context.Context, req *clusterv1.TransferLeadershipRequest) (*clusterv1.TransferLeadershipResponse, error) {
	return onLeader(ctx, s.a, func(ctx context.Context) (*clusterv1.TransferLeadershipResponse, error) {
		st, err := s.a.raft.Status()
		if err != nil {
			return nil, err
		}
		if err := checkTransfer(st, s.a.raft.ID(), req.GetId()); err != nil {
			return nil, err
		}
		if err := s.a.raft.TransferLeadership(ctx, req.GetId()); err != nil {
			return nil, err
		}
		// Wait until the new leader is known here.
		for {
			if id, _ := s.a.raft.Leader(); id != "" && id != s.a.raft.ID() {
				return &clusterv1.TransferLeadershipResponse{LeaderId: id}, nil
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}, func(ctx context.Context, c *grpc.ClientConn) (*clusterv1.TransferLeadershipResponse, error) {
		return clusterv1.NewClusterServiceClient(c).TransferLeadership(ctx, req)
	})
}

func (s *clusterServer) GetLeader(ctx context.Context, req *clusterv1.GetLeaderRequest) (*clusterv1.GetLeaderResponse, error) {
	id, addr := s.a.raft.Leader()
	resp := &clusterv1.GetLeaderResponse{LeaderId: id, RaftAddress: addr, SelfId: s.a.raft.ID()}
	if p, ok := s.a.fsm.Peer(id); ok && id != "" {
		resp.GrpcAddress = p.GetGrpcAddress()
	}
	return resp, nil
}

func (s *clusterServer) ListNodes(ctx context.Context, req *clusterv1.ListNodesRequest) (*clusterv1.ListNodesResponse, error) {
	if err := s.a.awaitCaughtUp(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &clusterv1.ListNodesResponse{Nodes: s.a.fsm.Nodes()}, nil
}

func (s *clusterServer) DrainNode(ctx context.Context, req *clusterv1.DrainNodeRequest) (*clusterv1.DrainNodeResponse, error) {
	if req.GetId() == "" {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "id", Description: "is required"}})
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*clusterv1.DrainNodeResponse, error) {
		res, err := apply[state.NodeResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{
			NodeId: req.GetId(), Enable: req.GetEnable(), By: req.GetBy(), AccessorId: accessor(ctx),
		}}})
		if err != nil {
			return nil, err
		}
		return &clusterv1.DrainNodeResponse{Node: res.Node}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*clusterv1.DrainNodeResponse, error) {
		return clusterv1.NewClusterServiceClient(c).DrainNode(ctx, req)
	})
}

type internalServer struct {
	statev1.UnimplementedInternalServiceServer
	a *API
}

func registerInternal(s *rpc.Server, a *API) {
	statev1.RegisterInternalServiceServer(s, &internalServer{a: a})
}

func (s *internalServer) GetPeerInfo(ctx context.Context, req *statev1.GetPeerInfoRequest) (*statev1.GetPeerInfoResponse, error) {
	id, _ := s.a.raft.Leader()
	has := s.a.raft.HadState() || id != "" || s.a.fsm.LastIndex() > 0
	return &statev1.GetPeerInfoResponse{Peer: s.a.Self(), HasState: has, LeaderId: id}, nil
}

func (s *internalServer) Join(ctx context.Context, req *statev1.JoinRequest) (*statev1.JoinResponse, error) {
	p := req.GetPeer()
	var vs []rpc.FieldViolation
	if p.GetId() == "" {
		vs = append(vs, rpc.FieldViolation{Field: "peer.id", Description: "is required"})
	}
	vs = append(vs, addressViolations("peer.raft_address", p.GetRaftAddress())...)
	if p.GetGrpcAddress() != "" {
		vs = append(vs, addressViolations("peer.grpc_address", p.GetGrpcAddress())...)
	}
	if len(vs) > 0 {
		return nil, rpc.InvalidArgument("request", vs)
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*statev1.JoinResponse, error) {
		st, err := s.a.raft.Status()
		if err != nil {
			return nil, err
		}
		if err := checkAdd(st, p.GetId(), p.GetRaftAddress()); err != nil {
			return nil, err
		}
		// A member (re)registering its addresses keeps its suffrage; the
		// configuration only changes when it is new or moved.
		srv, known := raftnode.Server{ID: p.GetId(), Address: p.GetRaftAddress(), Voter: true}, false
		for _, m := range st.Servers {
			if m.ID == p.GetId() {
				known = m.Address == p.GetRaftAddress()
				srv.Voter = m.Voter
			}
		}
		if !known {
			if err := s.a.raft.AddServer(ctx, srv); err != nil {
				return nil, err
			}
		}
		if _, err := s.a.raft.Apply(ctx, &statev1.Command{Op: &statev1.Command_RegisterPeer{RegisterPeer: &statev1.RegisterPeerOp{Peer: p}}}); err != nil {
			return nil, err
		}
		return &statev1.JoinResponse{LeaderId: s.a.raft.ID()}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*statev1.JoinResponse, error) {
		return statev1.NewInternalServiceClient(c).Join(ctx, req)
	})
}

func (s *internalServer) ApplyNoop(ctx context.Context, req *statev1.ApplyNoopRequest) (*statev1.ApplyNoopResponse, error) {
	return onLeader(ctx, s.a, func(ctx context.Context) (*statev1.ApplyNoopResponse, error) {
		res, err := apply[state.IndexResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_Noop{Noop: &statev1.NoopOp{Payload: req.GetPayload()}}})
		if err != nil {
			return nil, err
		}
		return &statev1.ApplyNoopResponse{Index: res.Index}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*statev1.ApplyNoopResponse, error) {
		return statev1.NewInternalServiceClient(c).ApplyNoop(ctx, req)
	})
}

// addressViolations checks that addr is host:port with a port in 1-65535.
func addressViolations(field, addr string) []rpc.FieldViolation {
	if addr == "" {
		return []rpc.FieldViolation{{Field: field, Description: "is required (host:port)"}}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []rpc.FieldViolation{{Field: field, Description: fmt.Sprintf("%q is not host:port", addr)}}
	}
	var vs []rpc.FieldViolation
	if host == "" {
		vs = append(vs, rpc.FieldViolation{Field: field, Description: fmt.Sprintf("%q has no host", addr)})
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		vs = append(vs, rpc.FieldViolation{Field: field, Description: fmt.Sprintf("%q: port must be a number in 1-65535", addr)})
	}
	return vs
}

// checkAdd refuses to add id at addr when another server already uses addr
// (raft would refuse the configuration). Re-adding a server as it is, or
// under a new address, is allowed.
func checkAdd(st raftnode.Status, id, addr string) error {
	for _, s := range st.Servers {
		if s.Address == addr && s.ID != id {
			return fmt.Errorf("raft address %s is already used by peer %q: %w", addr, s.ID, errAlreadyExists)
		}
	}
	return nil
}

// checkRemove refuses to remove an unknown peer or the last voter.
func checkRemove(st raftnode.Status, id string) error {
	var target *raftnode.Server
	voters := 0
	for i, s := range st.Servers {
		if s.ID == id {
			target = &st.Servers[i]
		}
		if s.Voter {
			voters++
		}
	}
	if target == nil {
		return fmt.Errorf("peer %q: %w", id, state.ErrNotFound)
	}
	if target.Voter && voters == 1 {
		return fmt.Errorf("peer %q is the last voter; removing it would leave no cluster: %w", id, errFailedPrecondition)
	}
	return nil
}

// checkTransfer refuses a leadership transfer raft cannot carry out: to an
// unknown peer (NOT_FOUND), to self or a non-voter, or with no other voter.
func checkTransfer(st raftnode.Status, self, to string) error {
	others := 0
	for _, s := range st.Servers {
		if s.Voter && s.ID != self {
			others++
		}
	}
	if to == "" {
		if others == 0 {
			return fmt.Errorf("no other voter to transfer leadership to: %w", errFailedPrecondition)
		}
		return nil
	}
	if to == self {
		return fmt.Errorf("peer %q is already the leader: %w", to, errFailedPrecondition)
	}
	for _, s := range st.Servers {
		if s.ID != to {
			continue
		}
		if !s.Voter {
			return fmt.Errorf("peer %q is a non-voter and cannot lead: %w", to, errFailedPrecondition)
		}
		return nil
	}
	return fmt.Errorf("transfer leadership to peer %q: %w", to, state.ErrNotFound)
}
