package grpcapi

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/heartbeat"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
)

// SetHeartbeats gives the API the leader's view that node agents'
// heartbeat streams feed (one per leadership term); nil while this node
// does not lead, and then streams are refused with the leader's address.
// A stream opened on an earlier view ends at its next heartbeat.
func (a *API) SetHeartbeats(v *heartbeat.View) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.heartbeats = v
}

func (a *API) heartbeatView() *heartbeat.View {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.heartbeats
}

type heartbeatServer struct {
	clusterv1.UnimplementedNodeHeartbeatServiceServer
	a *API
}

func registerHeartbeats(s *rpc.Server, a *API) {
	clusterv1.RegisterNodeHeartbeatServiceServer(s, &heartbeatServer{a: a})
}

// Heartbeat serves one node agent's stream on the leader. The node is the
// one named by the caller's certificate (role nodeagent); a node_id in a
// message that differs ends the stream with PERMISSION_DENIED. Only on a
// plaintext (-insecure) connection, with no certificate to read, is the
// message's node_id taken, and then it is required.
func (s *heartbeatServer) Heartbeat(stream clusterv1.NodeHeartbeatService_HeartbeatServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return recvEnd(err)
	}
	node := first.GetNodeId()
	id, verified := rpc.PeerIdentity(ctx)
	if verified {
		if id.Role != pki.RoleNodeAgent {
			return status.Errorf(codes.PermissionDenied, "heartbeats are for node agents; the caller is %s", id)
		}
		node = id.Name
	} else if node == "" {
		return rpc.InvalidArgument("invalid heartbeat", []rpc.FieldViolation{{Field: "node_id", Description: "is required on a connection without a client certificate"}})
	}
	if err := sameNode(first, node); err != nil {
		return err
	}
	view := s.a.heartbeatView()
	if view == nil || !s.a.raft.IsLeader() {
		return s.a.notLeader()
	}
	sid := view.Open(node)
	defer view.Close(node, sid)
	cfg := view.Config()
	if err := stream.Send(&clusterv1.HeartbeatResponse{LeaderId: s.a.raft.ID(), Interval: durationpb.New(cfg.Interval()), Ttl: durationpb.New(cfg.TTL)}); err != nil {
		return err
	}
	view.Beat(node, sid, first.GetStatusVersion(), first.GetStatusesIncluded(), first.GetAllocations())
	for {
		req, err := stream.Recv()
		if err != nil {
			return recvEnd(err)
		}
		if err := sameNode(req, node); err != nil {
			return err
		}
		if s.a.heartbeatView() != view || !s.a.raft.IsLeader() {
			return s.a.notLeader() // deposed (or a new term): go to the leader
		}
		view.Beat(node, sid, req.GetStatusVersion(), req.GetStatusesIncluded(), req.GetAllocations())
	}
}

// sameNode refuses a heartbeat naming another node than the stream's.
func sameNode(req *clusterv1.HeartbeatRequest, node string) error {
	if req.GetNodeId() != "" && req.GetNodeId() != node {
		return status.Errorf(codes.PermissionDenied, "node_id %q is not the node %q of the caller's certificate", req.GetNodeId(), node)
	}
	return nil
}

// notLeader is the answer of a coordinator that does not lead (or runs no
// engine yet): FAILED_PRECONDITION naming the leader's gRPC address when
// known.
func (a *API) notLeader() error {
	md := map[string]string{}
	id, _ := a.raft.Leader()
	msg := fmt.Sprintf("%s is not the leader and no leader is known: retry later", a.raft.ID())
	if id != "" && id != a.raft.ID() {
		md[rpc.MetaLeaderID] = id
		msg = fmt.Sprintf("%s is not the leader; the leader is %s", a.raft.ID(), id)
		if p, ok := a.fsm.Peer(id); ok && p.GetGrpcAddress() != "" {
			md[rpc.MetaLeaderAddress] = p.GetGrpcAddress()
			msg += " at " + p.GetGrpcAddress()
		}
	} else if id == a.raft.ID() {
		msg = fmt.Sprintf("%s leads but its engine is not running yet: retry", a.raft.ID())
	}
	return rpc.WithReason(codes.FailedPrecondition, msg, rpc.ReasonNotLeader, md)
}

// recvEnd maps the end of a stream's receive side to the handler's result.
func recvEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
