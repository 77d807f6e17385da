package grpcapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/grpcapi"
	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// aclNode is one in-process coordinator with ACLs enabled.
type aclNode struct {
	id   string
	node *raftnode.Node
	fsm  *state.FSM
	api  *grpcapi.API
	addr string
	conn *grpc.ClientConn
	off  atomic.Bool // the token interceptors let everything through
}

// startACLCluster starts n in-process coordinators (raft over
// InmemTransport, real gRPC servers on loopback, mutual TLS) with the token
// interceptors installed (skipped on a node while its off is set), and
// waits for a registered leader.
func startACLCluster(t *testing.T, n int) []*aclNode {
	t.Helper()
	var trans []*raft.InmemTransport
	for i := range n {
		_, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("acl-raft-%d:7000", i)))
		trans = append(trans, tr)
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	var nodes []*aclNode
	var servers []raftnode.Server
	for i := range n {
		id := fmt.Sprintf("a%d", i)
		creds := testenv.Creds(t, pki.RoleCoordinator, id)
		fsm := state.New()
		node, err := raftnode.New(raftnode.Config{ID: id, Transport: trans[i], LogOutput: io.Discard, Tune: func(rc *raft.Config) {
			// Fast elections, but not so fast that a loaded machine (the
			// race detector, packages tested in parallel) loses its leader
			// mid-test.
			rc.HeartbeatTimeout = 500 * time.Millisecond
			rc.ElectionTimeout = 500 * time.Millisecond
			rc.LeaderLeaseTimeout = 250 * time.Millisecond
			rc.CommitTimeout = 5 * time.Millisecond
		}}, fsm)
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		api := grpcapi.New(node, fsm, lis.Addr().String(), creds, nil)
		an := &aclNode{id: id, node: node, fsm: fsm, api: api, addr: lis.Addr().String()}
		unary, stream := api.UnaryACL(), api.StreamACL()
		srv := rpc.NewServer(rpc.ServerConfig{Name: "test", Creds: creds, Access: grpcapi.Access,
			UnaryInterceptors: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if an.off.Load() {
					return h(ctx, req)
				}
				return unary(ctx, req, info, h)
			}},
			StreamInterceptors: []grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if an.off.Load() {
					return h(srv, ss)
				}
				return stream(srv, ss, info, h)
			}}})
		api.Register(srv)
		go srv.Serve(lis)
		conn, err := rpc.Dial(lis.Addr().String(), testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleCoordinator))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			conn.Close()
			srv.Stop()
			api.Close()
			_ = node.Shutdown()
		})
		an.conn = conn
		nodes = append(nodes, an)
		servers = append(servers, raftnode.Server{ID: id, Address: string(trans[i].LocalAddr()), Voter: true})
	}
	if err := nodes[0].node.Bootstrap(servers); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "a leader registered on every node", func() error {
		for _, l := range nodes {
			if !l.node.IsLeader() {
				continue
			}
			if err := l.api.RegisterSelf(context.Background()); err != nil {
				return err
			}
			for _, m := range nodes {
				if p, ok := m.fsm.Peer(l.id); !ok || p.GetGrpcAddress() != l.addr {
					return fmt.Errorf("%s does not know the leader %s's address yet", m.id, l.id)
				}
			}
			return nil
		}
		return fmt.Errorf("no leader")
	})
	return nodes
}

func leaderOf(t *testing.T, nodes []*aclNode) (leader, follower *aclNode) {
	t.Helper()
	for _, n := range nodes {
		if n.node.IsLeader() {
			leader = n
		} else if follower == nil {
			follower = n
		}
	}
	if leader == nil || follower == nil {
		t.Fatal("no leader and follower")
	}
	return leader, follower
}

func withToken(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

func wantDenied(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	for _, c := range contains {
		if !strings.Contains(status.Convert(err).Message(), c) {
			t.Fatalf("message %q does not contain %q", status.Convert(err).Message(), c)
		}
	}
}

func aclSpec(name string) *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{Name: name, Image: "slipway/demo:v1", Count: 1, Port: 8080}
}

// Bootstrap through a follower (forwarded), then the whole token flow with
// every call sent to a follower: the follower checks the token and the
// leader checks it again on the forwarded call.
func TestACLThroughFollower(t *testing.T) {
	nodes := startACLCluster(t, 3)
	leader, follower := leaderOf(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	facl := aclv1.NewAclServiceClient(follower.conn)
	fdep := deployv1.NewDeployServiceClient(follower.conn)

	// Without a token: UNAUTHENTICATED, naming how to send one.
	_, err := fdep.ListServices(ctx, &deployv1.ListServicesRequest{})
	wantDenied(t, err, codes.Unauthenticated, "authorization: Bearer")
	_, err = fdep.Deploy(withToken(ctx, "not-a-token"), &deployv1.DeployRequest{Spec: aclSpec("web-1")})
	wantDenied(t, err, codes.Unauthenticated, "unknown or revoked token")
	// Health and reflection stay open; the internal service is not a
	// token's business but a coordinator certificate's.
	peerConn, err := rpc.Dial(follower.addr, testenv.Creds(t, pki.RoleCoordinator, "peer"), rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		t.Fatal(err)
	}
	defer peerConn.Close()
	if _, err := statev1.NewInternalServiceClient(peerConn).GetPeerInfo(ctx, &statev1.GetPeerInfoRequest{}); err != nil {
		t.Fatalf("GetPeerInfo from a coordinator without token: %v", err)
	}
	if _, err := statev1.NewInternalServiceClient(follower.conn).GetPeerInfo(ctx, &statev1.GetPeerInfoRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GetPeerInfo from a client certificate: %v, want PermissionDenied", err)
	}

	boot, err := facl.Bootstrap(ctx, &aclv1.BootstrapRequest{})
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if len(boot.GetSecret()) != 64 || boot.GetToken().GetAccessorId() == "" {
		t.Fatalf("bootstrap answer %v: want a 64-hex-digit secret and an accessor", boot)
	}
	_, err = aclv1.NewAclServiceClient(leader.conn).Bootstrap(ctx, &aclv1.BootstrapRequest{})
	wantDenied(t, err, codes.FailedPrecondition, "bootstrapped already")
	admin := withToken(ctx, boot.GetSecret())

	ci, err := facl.CreateToken(admin, &aclv1.CreateTokenRequest{Policies: []aclv1.Policy{aclv1.Policy_POLICY_DEPLOY}, Services: []string{"web-*"}, Description: "ci"})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	if ci.GetToken().GetCreatedBy() != boot.GetToken().GetAccessorId() {
		t.Errorf("created_by = %q, want the admin's accessor", ci.GetToken().GetCreatedBy())
	}
	_, err = facl.CreateToken(admin, &aclv1.CreateTokenRequest{Policies: []aclv1.Policy{aclv1.Policy_POLICY_DEPLOY}})
	wantDenied(t, err, codes.InvalidArgument)
	ciCtx := withToken(ctx, ci.GetSecret())

	// The token is used at once on the follower (it waits for the token to
	// replicate rather than refusing it).
	if _, err := fdep.Deploy(ciCtx, &deployv1.DeployRequest{Spec: aclSpec("web-1"), CreatedBy: "pipeline"}); err != nil {
		t.Fatalf("deploy web-1 with the ci token: %v", err)
	}
	_, err = fdep.Deploy(ciCtx, &deployv1.DeployRequest{Spec: aclSpec("api")})
	wantDenied(t, err, codes.PermissionDenied, `token "ci"`, `lacks deploy on service "api"; it has deploy:web-*`)
	_, err = fdep.PauseRollout(ciCtx, &deployv1.PauseRolloutRequest{Id: "web-1-1"})
	wantDenied(t, err, codes.PermissionDenied, `lacks operate on service "web-1"`)
	_, err = facl.ListTokens(ciCtx, &aclv1.ListTokensRequest{})
	wantDenied(t, err, codes.PermissionDenied, "lacks admin")
	_, err = clusterv1.NewClusterServiceClient(follower.conn).DrainNode(ciCtx, &clusterv1.DrainNodeRequest{Id: "n1", Enable: true})
	wantDenied(t, err, codes.PermissionDenied, `lacks operate on every service ("*")`)

	// A scoped token lists only its services.
	if _, err := fdep.Deploy(admin, &deployv1.DeployRequest{Spec: aclSpec("api")}); err != nil {
		t.Fatalf("deploy api as admin: %v", err)
	}
	testenv.Eventually(t, 5*time.Second, "the follower lists web-1 only for ci and both for admin", func() error {
		for _, c := range []struct {
			ctx  context.Context
			want string
		}{{ciCtx, "web-1"}, {admin, "api,web-1"}} {
			resp, err := fdep.ListServices(c.ctx, &deployv1.ListServicesRequest{})
			if err != nil {
				return err
			}
			var names []string
			for _, s := range resp.GetServices() {
				names = append(names, s.GetName())
			}
			if got := strings.Join(names, ","); got != c.want {
				return fmt.Errorf("listed %q, want %q", got, c.want)
			}
		}
		return nil
	})
	ro, err := fdep.ListRollouts(ciCtx, &deployv1.ListRolloutsRequest{})
	if err != nil || len(ro.GetRollouts()) != 1 || ro.GetRollouts()[0].GetService() != "web-1" {
		t.Fatalf("ListRollouts for ci = %v, %v; want web-1's rollout only", ro, err)
	}

	// WatchEvents of every service shows a scoped token only its services'
	// events; asking for another service's is refused.
	evs, err := fdep.WatchEvents(ciCtx, &deployv1.WatchEventsRequest{HistoryOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		resp, err := evs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("WatchEvents for ci: %v", err)
		}
		seen = append(seen, resp.GetService())
	}
	if len(seen) == 0 || slices.ContainsFunc(seen, func(s string) bool { return s != "web-1" }) {
		t.Fatalf("WatchEvents for ci saw the events of %v; want web-1's only", seen)
	}
	deniedEvents, err := fdep.WatchEvents(ciCtx, &deployv1.WatchEventsRequest{Service: "api"})
	if err == nil {
		_, err = deniedEvents.Recv()
	}
	wantDenied(t, err, codes.PermissionDenied, `lacks read or deploy or operate on service "api"`)

	// The audit entry names the ci token's accessor, not only the free text.
	rel, err := fdep.ListReleases(ciCtx, &deployv1.ListReleasesRequest{Service: "web-1", Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil {
		t.Fatal(err)
	}
	if a := rel.GetAudit(); len(a) == 0 || a[0].GetAccessorId() != ci.GetToken().GetAccessorId() || a[0].GetActor() != "pipeline" {
		t.Fatalf("audit %v: want the deploy entry with actor pipeline and accessor %s", a, ci.GetToken().GetAccessorId())
	}

	who, err := facl.WhoAmI(ciCtx, &aclv1.WhoAmIRequest{})
	if err != nil || who.GetToken().GetDescription() != "ci" {
		t.Fatalf("WhoAmI = %v, %v", who, err)
	}
	pol, err := facl.ListPolicies(ciCtx, &aclv1.ListPoliciesRequest{})
	if err != nil || len(pol.GetPolicies()) != 4 {
		t.Fatalf("ListPolicies = %v, %v", pol, err)
	}

	// A WatchRollout stream of the ci token ends once the token is revoked.
	watch, err := fdep.WatchRollout(ciCtx, &deployv1.WatchRolloutRequest{Id: "web-1-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("first event: %v", err)
	}
	denied, err := fdep.WatchRollout(ciCtx, &deployv1.WatchRolloutRequest{Id: "api-1"})
	if err == nil {
		_, err = denied.Recv()
	}
	wantDenied(t, err, codes.PermissionDenied, `lacks read or deploy or operate on service "api"`)

	if _, err := facl.RevokeToken(admin, &aclv1.RevokeTokenRequest{AccessorId: ci.GetToken().GetAccessorId()}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	for {
		_, err := watch.Recv()
		if err == nil {
			continue
		}
		wantDenied(t, err, codes.Unauthenticated, "revoked")
		break
	}
	for _, n := range nodes {
		testenv.Eventually(t, time.Second, "the revoked token refused on "+n.id, func() error {
			_, err := deployv1.NewDeployServiceClient(n.conn).ListServices(ciCtx, &deployv1.ListServicesRequest{})
			if status.Code(err) != codes.Unauthenticated {
				return fmt.Errorf("ListServices with the revoked token: %v", err)
			}
			return nil
		})
	}
}

// A verified peer certificate that is not a coordinator's is refused on
// InternalService by the token interceptor too (defence in depth behind the
// rpc role check); a coordinator's passes without a token, and a public
// service still needs a token from a coordinator.
func TestACLInternalNeedsCoordinatorRole(t *testing.T) {
	nodes := startACLCluster(t, 1)
	icpt := nodes[0].api.UnaryACL()
	caPEM, keyPEM, err := pki.CreateCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(caPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	peerAs := func(role pki.Role) context.Context {
		certPEM, _, err := ca.CreateCert(pki.CertOptions{Identity: pki.Identity{Role: role, Name: "x"}})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := pki.ParseCertificate(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		info := credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: info})
	}
	h := func(ctx context.Context, req any) (any, error) { return "ok", nil }
	join := &grpc.UnaryServerInfo{FullMethod: statev1.InternalService_Join_FullMethodName}
	for _, c := range []struct {
		ctx  context.Context
		want codes.Code
	}{
		{context.Background(), codes.OK}, // plaintext: nothing to verify
		{peerAs(pki.RoleCoordinator), codes.OK},
		{peerAs(pki.RoleEdge), codes.PermissionDenied},
		{peerAs(pki.RoleClient), codes.PermissionDenied},
	} {
		if _, err := icpt(c.ctx, &statev1.JoinRequest{}, join, h); status.Code(err) != c.want {
			t.Errorf("Join: %v, want %v", err, c.want)
		}
	}
	deploy := &grpc.UnaryServerInfo{FullMethod: deployv1.DeployService_Deploy_FullMethodName}
	_, err = icpt(peerAs(pki.RoleCoordinator), &deployv1.DeployRequest{Spec: aclSpec("web")}, deploy, h)
	wantDenied(t, err, codes.Unauthenticated, "no token")
}

// Forwarding never bypasses the leader's check: a follower that checks no
// tokens (ACLs off there, or a forged forwarded marker) passes the caller's
// metadata on, and the leader refuses a write without a valid token.
func TestACLForwardedWriteCheckedOnLeader(t *testing.T) {
	nodes := startACLCluster(t, 2)
	leader, follower := leaderOf(t, nodes)
	follower.off.Store(true) // the follower checks nothing
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := deployv1.NewDeployServiceClient(follower.conn)
	_, err := open.Deploy(ctx, &deployv1.DeployRequest{Spec: aclSpec("web")})
	wantDenied(t, err, codes.Unauthenticated, "no token")
	// A forged forwarded marker on the leader itself changes nothing.
	forged := metadata.AppendToOutgoingContext(ctx, "x-slipway-forwarded", follower.id)
	_, err = deployv1.NewDeployServiceClient(leader.conn).Deploy(forged, &deployv1.DeployRequest{Spec: aclSpec("web")})
	wantDenied(t, err, codes.Unauthenticated, "no token")
	if _, err := leader.fsm.Service("web"); err == nil {
		t.Fatal("a write without a token was applied")
	}
	// With a valid token the same forwarded write passes the leader.
	boot, err := aclv1.NewAclServiceClient(follower.conn).Bootstrap(ctx, &aclv1.BootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Deploy(withToken(ctx, boot.GetSecret()), &deployv1.DeployRequest{Spec: aclSpec("web")}); err != nil {
		t.Fatalf("forwarded deploy with the admin token: %v", err)
	}
}
