package engine_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// impostor is a NodeAgentService that records every call reaching it.
type impostor struct {
	agentv1.UnimplementedNodeAgentServiceServer
	id string

	mu    sync.Mutex
	calls []string
}

func (f *impostor) record(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method)
}

func (f *impostor) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *impostor) SyncAllocations(_ context.Context, req *agentv1.SyncAllocationsRequest) (*agentv1.SyncAllocationsResponse, error) {
	f.record(fmt.Sprintf("SyncAllocations(%d allocations)", len(req.GetAllocations())))
	return &agentv1.SyncAllocationsResponse{}, nil
}

func (f *impostor) GetNodeStatus(context.Context, *agentv1.GetNodeStatusRequest) (*agentv1.GetNodeStatusResponse, error) {
	f.record("GetNodeStatus")
	return &agentv1.GetNodeStatusResponse{NodeId: f.id}, nil
}

// serveImpostor serves f on a free loopback port with creds (nil: plaintext
// gRPC) and returns its port.
func serveImpostor(t *testing.T, f *impostor, creds *rpc.Creds) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var gs *grpc.Server
	if creds == nil {
		gs = grpc.NewServer()
	} else {
		gs = rpc.NewServer(rpc.ServerConfig{Name: "impostor", Creds: creds,
			Access: map[string][]pki.Role{agentv1.NodeAgentService_ServiceDesc.ServiceName: {pki.RoleCoordinator}}}).Server
	}
	agentv1.RegisterNodeAgentServiceServer(gs, f)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().(*net.TCPAddr).Port
}

// TestImpostorNodeAgentNeverGetsWork registers in Consul, as anyone with a
// Consul token allowed to register services could, entries that look like
// node agents, each with passing checks, spare capacity and the right meta,
// pointing at gRPC servers without a Slipway nodeagent certificate naming
// that node: plaintext, a nodeagent certificate for another node, the right
// name from another CA. A deploy runs on the one real agent beside them:
// the impostors never receive a single call (no SyncAllocations, so no
// spec and no env), are never recorded as nodes, nothing is placed on them,
// and the rollout succeeds on the real node. Consul runs with ACLs, default
// deny, and every component with its documented minimal policy.
func TestImpostorNodeAgentNeverGetsWork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent and demo processes")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL())
	// Children run as nobody: the executables live in a directory it can
	// reach (t.TempDir is 0700).
	imgDir, err := os.MkdirTemp("", "slipway-impostor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(imgDir) })
	if err := os.Chmod(imgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	buildDemo(t, imgDir, "v1")
	real := startAgent(t, c.Addr(), imgDir)

	impostors := map[string]*rpc.Creds{
		"fake-plain":     nil,
		"fake-othername": testenv.Creds(t, pki.RoleNodeAgent, "someone-else"),
		"fake-otherca":   testenv.NewPKI(t).Creds(t, pki.RoleNodeAgent, "fake-otherca"),
	}
	// Registered by a holder of a node agent's Consul token (service
	// write), the most a compromised host has.
	registrar := c.Client(t, c.ComponentToken(t, "nodeagent"))
	fakes := map[string]*impostor{}
	for id, creds := range impostors {
		f := &impostor{id: id}
		fakes[id] = f
		port := serveImpostor(t, f, creds)
		if err := registrar.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: catalog.AgentServiceID(id), Name: catalog.AgentService, Address: "127.0.0.1", Port: port,
			Meta: map[string]string{catalog.MetaNodeID: id, catalog.MetaCPU: "64000", catalog.MetaMemory: "65536",
				catalog.MetaDriver: "process"},
			Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing},
		}); err != nil {
			t.Fatalf("register impostor %s: %v", id, err)
		}
		t.Logf("impostor %s on port %s", id, strconv.Itoa(port))
	}

	co := coordtest.Start(t, c.Addr(), nil)
	e := newE2E(t, co, c.Addr())
	v1 := e.deployWith("slipway/demo:v1", 3, nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	if got := e.passingOn(); got[real.nodeID] != 3 || len(got) != 1 {
		t.Errorf("passing instances per node = %v, want all 3 on %s", got, real.nodeID)
	}
	// The impostors were never recorded as nodes: only the real agent is.
	resp, err := clusterv1.NewClusterServiceClient(co.Conn).ListNodes(context.Background(), &clusterv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ns := resp.GetNodes(); len(ns) != 1 || ns[0].GetId() != real.nodeID {
		t.Errorf("nodes = %v, want only %s", ns, real.nodeID)
	}
	for id, f := range fakes {
		if calls := f.seen(); len(calls) > 0 {
			t.Errorf("impostor %s received %v", id, calls)
		}
	}
}
