package grpcapi_test

import (
	"context"
	"net"
	"slipway.dev/coordinator/grpcapi"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// recordingLeader is a hand-written DeployService that records the metadata
// of the Deploy calls it receives.
type recordingLeader struct {
	deployv1.UnimplementedDeployServiceServer
	mu  sync.Mutex
	got []metadata.MD
}

func (r *recordingLeader) Deploy(ctx context.Context, req *deployv1.DeployRequest) (*deployv1.DeployResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	r.got = append(r.got, md.Copy())
	r.mu.Unlock()
	return &deployv1.DeployResponse{Release: &deployv1.Release{Service: req.GetSpec().GetName(), Number: 1}}, nil
}

// TestForwardKeepsCallerMetadata: a follower forwards a write with the
// caller's metadata (auth tokens, request ids, binary headers) and its own
// forwarded marker, without hop-by-hop or gRPC-reserved headers.
func TestForwardKeepsCallerMetadata(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader()
	fn := c.follower()

	// Point the leader's recorded gRPC address at a recording server, so
	// that the follower forwards there.
	rec := &recordingLeader{}
	srv := rpc.NewServer(rpc.ServerConfig{Name: "recorder", Creds: testenv.Creds(t, pki.RoleCoordinator, "recorder"), Access: grpcapi.Access})
	deployv1.RegisterDeployServiceServer(srv, rec)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	if _, err := leader.node.Apply(ctx, &statev1.Command{Op: &statev1.Command_RegisterPeer{RegisterPeer: &statev1.RegisterPeerOp{
		Peer: &statev1.PeerAddress{Id: leader.id, RaftAddress: leader.node.Addr(), GrpcAddress: lis.Addr().String()}}}}); err != nil {
		t.Fatal(err)
	}
	for {
		changed := fn.fsm.Changed()
		if p, _ := fn.fsm.Peer(leader.id); p.GetGrpcAddress() == lis.Addr().String() {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("follower never applied the leader's new address")
		case <-changed:
		}
	}

	cctx := metadata.AppendToOutgoingContext(ctx,
		"authorization", "Bearer t0ken",
		"x-request-id", "req-42",
		"x-multi", "a", "x-multi", "b",
		"trace-bin", string([]byte{0, 1, 2, 255}),
	)
	if _, err := fn.deploy().Deploy(cctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "fwd-1"}); err != nil {
		t.Fatalf("deploy through the follower: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 1 {
		t.Fatalf("the leader saw %d calls, want 1", len(rec.got))
	}
	md := rec.got[0]
	for k, want := range map[string][]string{
		"authorization":       {"Bearer t0ken"},
		"x-request-id":        {"req-42"},
		"x-multi":             {"a", "b"},
		"trace-bin":           {string([]byte{0, 1, 2, 255})},
		"x-slipway-forwarded": {fn.id},
	} {
		if got := md.Get(k); !equal(got, want) {
			t.Errorf("metadata %s = %q, want %q (all: %v)", k, got, want, md)
		}
	}
	if got := md.Get("user-agent"); len(got) != 1 {
		t.Errorf("user-agent = %q, want exactly the follower's own", got)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
