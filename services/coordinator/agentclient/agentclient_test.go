package agentclient_test

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/agentclient"
	"slipway.dev/coordinator/engine"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// recordingAgent records syncs and refuses older fencing tokens, as the
// real agent does.
type recordingAgent struct {
	agentv1.UnimplementedNodeAgentServiceServer
	mu    sync.Mutex
	syncs []*agentv1.SyncAllocationsRequest
	token *agentv1.FencingToken
}

func (a *recordingAgent) SyncAllocations(_ context.Context, req *agentv1.SyncAllocationsRequest) (*agentv1.SyncAllocationsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := req.GetToken()
	if a.token != nil && (t.GetTerm() < a.token.GetTerm() || t.GetTerm() == a.token.GetTerm() && t.GetIndex() < a.token.GetIndex()) {
		return nil, status.Error(codes.FailedPrecondition, "stale token")
	}
	a.token = t
	a.syncs = append(a.syncs, proto.CloneOf(req))
	var out []*agentv1.AllocationStatus
	for _, al := range req.GetAllocations() {
		out = append(out, &agentv1.AllocationStatus{AllocationId: al.GetId(), State: agentv1.AllocationState_ALLOCATION_STATE_RUNNING})
	}
	return &agentv1.SyncAllocationsResponse{Allocations: out}, nil
}

func (a *recordingAgent) GetNodeStatus(context.Context, *agentv1.GetNodeStatusRequest) (*agentv1.GetNodeStatusResponse, error) {
	return &agentv1.GetNodeStatusResponse{NodeId: "n1", Allocations: []*agentv1.AllocationStatus{{AllocationId: "a1", Health: agentv1.Health_HEALTH_PASSING}}}, nil
}

func TestSyncAndStatusOverGRPC(t *testing.T) {
	lis, err := rpc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerConfig{Name: "fake-agent", Creds: testenv.Creds(t, pki.RoleNodeAgent, "n1"),
		Access: map[string][]pki.Role{agentv1.NodeAgentService_ServiceDesc.ServiceName: {pki.RoleCoordinator}}})
	agent := &recordingAgent{}
	agentv1.RegisterNodeAgentServiceServer(srv, agent)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })

	c := agentclient.New(testenv.Creds(t, pki.RoleCoordinator, "leader"))
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	node := engine.Node{ID: "n1", Addr: lis.Addr().String()}
	allocs := []*agentv1.Allocation{{Id: "a1", NodeId: "n1", Service: "web", Release: 1}}
	sts, err := c.Sync(ctx, node, &agentv1.FencingToken{Term: 2, Index: 10}, allocs)
	if err != nil || len(sts) != 1 || sts[0].GetAllocationId() != "a1" {
		t.Fatalf("sync = %v, %v", sts, err)
	}
	if got := agent.syncs[0]; got.GetNodeId() != "n1" || got.GetToken().GetTerm() != 2 || got.GetToken().GetIndex() != 10 || len(got.GetAllocations()) != 1 {
		t.Errorf("agent received %v", got)
	}
	// A stale token comes back as FAILED_PRECONDITION, wrapped.
	if _, err := c.Sync(ctx, node, &agentv1.FencingToken{Term: 1, Index: 99}, nil); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("stale sync err = %v, want FAILED_PRECONDITION", err)
	}
	st, err := c.Status(ctx, node)
	if err != nil || len(st) != 1 || st[0].GetHealth() != agentv1.Health_HEALTH_PASSING {
		t.Fatalf("status = %v, %v", st, err)
	}
	// An agent answering as another node is refused.
	if _, err := c.Status(ctx, engine.Node{ID: "n2", Addr: node.Addr}); err == nil {
		t.Error("status of the wrong node: no error")
	}
}
