package grpcapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/grpcapi"
	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// tnode is one in-process coordinator: raft over an InmemTransport, the
// real FSM and a real gRPC server on loopback.
type tnode struct {
	id   string
	node *raftnode.Node
	fsm  *state.FSM
	api  *grpcapi.API
	addr string
	conn *grpc.ClientConn
	// trans is its raft transport, to cut it off from the others.
	trans *raft.InmemTransport
}

func (n *tnode) deploy() deployv1.DeployServiceClient { return deployv1.NewDeployServiceClient(n.conn) }
func (n *tnode) cluster() clusterv1.ClusterServiceClient {
	return clusterv1.NewClusterServiceClient(n.conn)
}

type tcluster struct {
	t     *testing.T
	nodes []*tnode
}

func startCluster(t *testing.T, n int) *tcluster {
	t.Helper()
	var trans []*raft.InmemTransport
	for i := range n {
		_, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("raft-%d:7000", i)))
		trans = append(trans, tr)
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	c := &tcluster{t: t}
	var servers []raftnode.Server
	for i := range n {
		id := fmt.Sprintf("n%d", i)
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
		creds := testenv.Creds(t, pki.RoleCoordinator, id)
		api := grpcapi.New(node, fsm, lis.Addr().String(), creds, nil)
		srv := rpc.NewServer(rpc.ServerConfig{Name: "test", Creds: creds, Access: grpcapi.Access})
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
		c.nodes = append(c.nodes, &tnode{id: id, node: node, fsm: fsm, api: api, addr: lis.Addr().String(), conn: conn, trans: trans[i]})
		servers = append(servers, raftnode.Server{ID: id, Address: string(trans[i].LocalAddr()), Voter: true})
	}
	if err := c.nodes[0].node.Bootstrap(servers); err != nil {
		t.Fatal(err)
	}
	c.leader()
	return c
}

// leader waits until one node leads, every node knows it, and its gRPC
// address is registered and applied everywhere.
func (c *tcluster) leader() *tnode {
	c.t.Helper()
	var leader *tnode
	testenv.Eventually(c.t, 20*time.Second, "a leader known to every node", func() error {
		last := fmt.Errorf("no node leads")
	nodes:
		for _, n := range c.nodes {
			if !n.node.IsLeader() {
				continue
			}
			if err := n.api.RegisterSelf(context.Background()); err != nil {
				return fmt.Errorf("%s leads but cannot register itself: %w", n.id, err)
			}
			for _, m := range c.nodes {
				id, _ := m.node.Leader()
				p, has := m.fsm.Peer(n.id)
				if id != n.id || !has || p.GetGrpcAddress() != n.addr {
					last = fmt.Errorf("%s leads; %s sees leader %q and its peer entry %v (present %v)", n.id, m.id, id, p, has)
					continue nodes
				}
			}
			leader = n
			return nil
		}
		return last
	})
	return leader
}

func (c *tcluster) follower() *tnode {
	l := c.leader()
	for _, n := range c.nodes {
		if n != l {
			return n
		}
	}
	return nil
}

func spec(name, image string) *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{Name: name, Image: image, Count: 1, Port: 8080}
}

func wantCode(t *testing.T, what string, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: code %v (%v), want %v", what, status.Code(err), err, code)
		return
	}
	if contains != "" && !strings.Contains(status.Convert(err).Message(), contains) {
		t.Errorf("%s: message %q does not mention %q", what, status.Convert(err).Message(), contains)
	}
}

func TestDeployServiceThroughFollower(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	f := c.follower().deploy()

	resp, err := f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "a", CreatedBy: "ci", Reason: "first"})
	if err != nil {
		t.Fatalf("deploy through follower: %v", err)
	}
	if resp.GetRelease().GetNumber() != 1 || resp.GetRollout().GetId() != "web-1" || resp.GetRollout().GetState() != deployv1.RolloutState_ROLLOUT_STATE_PENDING {
		t.Fatalf("deploy = %v", resp)
	}
	if resp.GetRelease().GetCreatedAt() == nil || resp.GetRelease().GetCreatedBy() != "ci" {
		t.Errorf("release lacks who/when: %v", resp.GetRelease())
	}
	// The stored spec is normalized (defaults filled in by package spec).
	if got := resp.GetRelease().GetSpec(); got.GetResources().GetCpuMhz() == 0 {
		t.Errorf("stored spec not normalized: %v", got)
	}
	// An empty request_id gets a generated one.
	noID, err := c.leader().deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: spec("api", "slipway/demo:v1")})
	if err != nil || noID.GetRelease().GetRequestId() == "" {
		t.Errorf("deploy without request_id = %v, %v; want a generated id", noID, err)
	}

	// A leader-verified read through the follower sees the write at once.
	svc, err := f.GetService(ctx, &deployv1.GetServiceRequest{Name: "web", Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil || svc.GetService().GetActiveRollout() != "web-1" {
		t.Fatalf("leader read = %v, %v", svc, err)
	}

	_, err = f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v2"), RequestId: "b"})
	wantCode(t, "second deploy", err, codes.FailedPrecondition, "web-1")

	// request_id is an idempotency key: the same request again is a replay,
	// a different spec under it is refused, naming the key and the release.
	again, err := f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "a", CreatedBy: "ci"})
	if err != nil || !again.GetReplayed() || again.GetRelease().GetNumber() != 1 {
		t.Errorf("retried deploy = %v, %v; want release 1 replayed", again, err)
	}
	_, err = f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v2"), RequestId: "a", Supersede: true})
	wantCode(t, "request_id reused with another spec", err, codes.AlreadyExists, `request_id "a" was used for release 1 of service "web" with a different spec`)

	_, err = f.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{Name: "Bad_Name", Port: 70000, Count: -1}, RequestId: "c"})
	wantCode(t, "invalid spec", err, codes.InvalidArgument, "")
	if vs := rpc.Violations(err); len(vs) < 2 {
		t.Errorf("invalid spec: violations %v, want every one listed", vs)
	}

	_, err = f.GetRollout(ctx, &deployv1.GetRolloutRequest{Id: "nope-1"})
	wantCode(t, "unknown rollout", err, codes.NotFound, "nope-1")
	_, err = f.ListReleases(ctx, &deployv1.ListReleasesRequest{Service: "nope", Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	wantCode(t, "unknown service", err, codes.NotFound, "nope")

	// Operator commands are recorded through the follower.
	p, err := f.PauseRollout(ctx, &deployv1.PauseRolloutRequest{Id: "web-1", By: "alice", Reason: "look"})
	if err != nil || len(p.GetRollout().GetCommands()) != 1 || p.GetRollout().GetCommands()[0].GetKind() != deployv1.CommandKind_COMMAND_KIND_PAUSE {
		t.Fatalf("pause = %v, %v", p, err)
	}
	if _, err := f.ResumeRollout(ctx, &deployv1.ResumeRolloutRequest{Id: "web-1"}); err != nil {
		t.Fatal(err)
	}
	pr, err := f.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: "web-1", Full: true})
	if err != nil || !pr.GetRollout().GetCommands()[2].GetFull() {
		t.Fatalf("promote = %v, %v", pr, err)
	}
	if _, err := f.AbortRollout(ctx, &deployv1.AbortRolloutRequest{Id: "web-1"}); err != nil {
		t.Fatal(err)
	}
	_, err = f.PauseRollout(ctx, &deployv1.PauseRolloutRequest{})
	wantCode(t, "pause without id", err, codes.InvalidArgument, "id")

	// Supersede, then commands on the superseded rollout are refused.
	if _, err := f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v2"), RequestId: "d", Supersede: true}); err != nil {
		t.Fatal(err)
	}
	_, err = f.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: "web-1"})
	wantCode(t, "promote superseded", err, codes.FailedPrecondition, "SUPERSEDED")

	// Rollback through the follower copies release 1.
	rb, err := f.RollbackService(ctx, &deployv1.RollbackServiceRequest{Service: "web", RequestId: "e", Supersede: true, By: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if rb.GetRelease().GetNumber() != 3 || rb.GetRelease().GetRollbackOf() != 1 || rb.GetRelease().GetSpec().GetImage() != "slipway/demo:v1" {
		t.Errorf("rollback = %v", rb.GetRelease())
	}
	_, err = f.RollbackService(ctx, &deployv1.RollbackServiceRequest{Service: "web", ToRelease: 9, RequestId: "f", Supersede: true})
	wantCode(t, "rollback to a missing release", err, codes.NotFound, "9")

	list, err := f.ListRollouts(ctx, &deployv1.ListRolloutsRequest{Service: "web", Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil || len(list.GetRollouts()) != 3 || list.GetRollouts()[0].GetId() != "web-3" {
		t.Errorf("list rollouts = %v, %v; want web-3, web-2, web-1", list, err)
	}
	active, err := f.ListRollouts(ctx, &deployv1.ListRolloutsRequest{ActiveOnly: true, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil || len(active.GetRollouts()) != 2 {
		t.Errorf("active rollouts = %v, %v; want web-3 and api-1", active, err)
	}
	rels, err := f.ListReleases(ctx, &deployv1.ListReleasesRequest{Service: "web", Limit: 2, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil || len(rels.GetReleases()) != 2 || rels.GetReleases()[0].GetNumber() != 3 || len(rels.GetAudit()) == 0 {
		t.Errorf("list releases = %v, %v", rels, err)
	}
	all, err := f.ListServices(ctx, &deployv1.ListServicesRequest{Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil || len(all.GetServices()) != 2 || all.GetServices()[0].GetName() != "api" {
		t.Errorf("list services = %v, %v", all, err)
	}
}

func TestWatchRolloutResumesAndEnds(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fn := c.follower()
	f := fn.deploy()
	if _, err := f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "a"}); err != nil {
		t.Fatal(err)
	}
	stream, err := f.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	created, err := stream.Recv()
	if err != nil || created.GetEvent().GetKind() != "created" {
		t.Fatalf("first event = %v, %v", created, err)
	}
	// Events committed after the watch started arrive on the stream.
	if _, err := f.PauseRollout(ctx, &deployv1.PauseRolloutRequest{Id: "web-1", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	cmd, err := stream.Recv()
	if err != nil || cmd.GetEvent().GetKind() != "command" || len(cmd.GetRollout().GetCommands()) != 1 {
		t.Fatalf("second event = %v, %v", cmd, err)
	}
	if _, err := f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v2"), RequestId: "b", Supersede: true}); err != nil {
		t.Fatal(err)
	}
	sup, err := stream.Recv()
	if err != nil || sup.GetEvent().GetKind() != "superseded" || sup.GetRollout().GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED {
		t.Fatalf("third event = %v, %v", sup, err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream of a final rollout did not end: %v", err)
	}

	// Resuming after the first event replays only the later ones, then ends.
	again, err := f.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: "web-1", FromIndex: created.GetEvent().GetIndex()})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for {
		ev, err := again.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, ev.GetEvent().GetKind())
	}
	if strings.Join(kinds, ",") != "command,superseded" {
		t.Errorf("resumed events = %v, want command,superseded", kinds)
	}

	missing, err := f.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: "nope-1"})
	if err == nil {
		_, err = missing.Recv()
	}
	wantCode(t, "watch unknown rollout", err, codes.NotFound, "nope-1")
}

// WatchEvents streams the events of every service in index order from any
// coordinator, resumes on another one after the last index seen, filters by
// service and by time, and ends after the history when asked to.
func TestWatchEventsAcrossServices(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, fn := c.leader(), c.follower()
	f := fn.deploy()
	if _, err := f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "w1"}); err != nil {
		t.Fatal(err)
	}
	stream, err := f.WatchEvents(ctx, &deployv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(s grpc.ServerStreamingClient[deployv1.WatchEventsResponse]) *deployv1.WatchEventsResponse {
		t.Helper()
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		return resp
	}
	first := recv(stream)
	if first.GetService() != "web" || first.GetEvent().GetKind() != "created" || first.GetEvent().GetRolloutId() != "web-1" {
		t.Fatalf("first event = %v", first)
	}
	// New events of other services follow on the same stream, in order.
	if _, err := f.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("api", "slipway/demo:v1"), RequestId: "a1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.PauseRollout(ctx, &deployv1.PauseRolloutRequest{Id: "web-1", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	api, pause := recv(stream), recv(stream)
	if api.GetService() != "api" || api.GetEvent().GetKind() != "created" || pause.GetService() != "web" || pause.GetEvent().GetKind() != "command" {
		t.Fatalf("next events = %v, %v", api, pause)
	}
	if !(first.GetEvent().GetIndex() < api.GetEvent().GetIndex() && api.GetEvent().GetIndex() < pause.GetEvent().GetIndex()) {
		t.Fatalf("indexes not increasing: %d, %d, %d", first.GetEvent().GetIndex(), api.GetEvent().GetIndex(), pause.GetEvent().GetIndex())
	}

	// Resuming on the leader after the first index replays the rest, then
	// (history_only) ends.
	kinds := func(n *tnode, req *deployv1.WatchEventsRequest) string {
		t.Helper()
		s, err := n.deploy().WatchEvents(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			resp, err := s.Recv()
			if err == io.EOF {
				return strings.Join(got, ",")
			}
			if err != nil {
				t.Fatalf("WatchEvents %v: %v", req, err)
			}
			got = append(got, resp.GetService()+":"+resp.GetEvent().GetKind())
		}
	}
	if got := kinds(leader, &deployv1.WatchEventsRequest{FromIndex: first.GetEvent().GetIndex(), HistoryOnly: true}); got != "api:created,web:command" {
		t.Errorf("resumed on the leader: %s", got)
	}
	if got := kinds(fn, &deployv1.WatchEventsRequest{Service: "web", HistoryOnly: true}); got != "web:created,web:command" {
		t.Errorf("web only: %s", got)
	}
	if got := kinds(fn, &deployv1.WatchEventsRequest{Since: timestamppb.New(time.Now().Add(time.Hour)), HistoryOnly: true}); got != "" {
		t.Errorf("since an hour from now: %s", got)
	}
	if got := kinds(fn, &deployv1.WatchEventsRequest{Since: pause.GetEvent().GetAt(), HistoryOnly: true}); !strings.HasSuffix(got, "web:command") {
		t.Errorf("since the pause: %s", got)
	}
	bad, err := f.WatchEvents(ctx, &deployv1.WatchEventsRequest{Since: &timestamppb.Timestamp{Nanos: -1}})
	if err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, "bad since", err, codes.InvalidArgument, "since")
}

func TestClusterService(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader()
	fn := c.follower()
	f := fn.cluster()

	peers, err := f.ListPeers(ctx, &clusterv1.ListPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, p := range peers.GetPeers() {
		if p.GetRole() == clusterv1.PeerRole_PEER_ROLE_LEADER {
			leaders++
		}
	}
	if len(peers.GetPeers()) != 3 || leaders != 1 || peers.GetLeaderId() != leader.id || peers.GetTerm() == 0 {
		t.Errorf("peers = %v", peers)
	}
	// Followers register their gRPC addresses through the leader; ListPeers
	// then shows every peer's, on any node.
	byID := map[string]*tnode{}
	for _, n := range c.nodes {
		byID[n.id] = n
		if err := n.api.RegisterSelf(ctx); err != nil {
			t.Fatalf("register %s: %v", n.id, err)
		}
	}
	for {
		changed := fn.fsm.Changed()
		peers, err = f.ListPeers(ctx, &clusterv1.ListPeersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ok := len(peers.GetPeers()) == 3
		for _, p := range peers.GetPeers() {
			ok = ok && p.GetGrpcAddress() == byID[p.GetId()].addr
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("peers never showed every gRPC address: %v", peers)
		case <-changed:
		}
	}
	if st, _ := leader.node.Status(); len(st.Servers) != 3 {
		t.Errorf("registration changed the configuration: %v", st.Servers)
	}
	gl, err := f.GetLeader(ctx, &clusterv1.GetLeaderRequest{})
	if err != nil || gl.GetLeaderId() != leader.id || gl.GetGrpcAddress() != leader.addr || gl.GetSelfId() != fn.id {
		t.Errorf("get leader = %v, %v; want %s at %s", gl, err, leader.id, leader.addr)
	}

	// Remove and re-add a follower through a follower.
	var victim *tnode
	for _, n := range c.nodes {
		if n != leader && n != fn {
			victim = n
		}
	}
	rm, err := f.RemovePeer(ctx, &clusterv1.RemovePeerRequest{Id: victim.id})
	if err != nil || len(rm.GetPeers()) != 2 {
		t.Fatalf("remove peer = %v, %v", rm, err)
	}
	_, err = f.RemovePeer(ctx, &clusterv1.RemovePeerRequest{Id: "ghost"})
	wantCode(t, "remove unknown peer", err, codes.NotFound, "ghost")
	_, err = f.AddPeer(ctx, &clusterv1.AddPeerRequest{})
	wantCode(t, "add peer without id", err, codes.InvalidArgument, "raft_address")
	add, err := f.AddPeer(ctx, &clusterv1.AddPeerRequest{Id: victim.id, RaftAddress: victim.node.Addr()})
	if err != nil || len(add.GetPeers()) != 3 {
		t.Fatalf("add peer = %v, %v", add, err)
	}

	// Nodes: drain needs a known node.
	_, err = f.DrainNode(ctx, &clusterv1.DrainNodeRequest{Id: "w1", Enable: true})
	wantCode(t, "drain unknown node", err, codes.NotFound, "w1")
	if _, err := leader.node.Apply(ctx, &statev1.Command{Op: &statev1.Command_UpsertNode{UpsertNode: &statev1.UpsertNodeOp{Node: &clusterv1.Node{Id: "w1", Address: "10.0.0.1:7410"}}}}); err != nil {
		t.Fatal(err)
	}
	dr, err := f.DrainNode(ctx, &clusterv1.DrainNodeRequest{Id: "w1", Enable: true, By: "ops"})
	if err != nil || !dr.GetNode().GetDraining() {
		t.Fatalf("drain = %v, %v", dr, err)
	}
	nodes, err := leader.cluster().ListNodes(ctx, &clusterv1.ListNodesRequest{})
	if err != nil || len(nodes.GetNodes()) != 1 || !nodes.GetNodes()[0].GetDraining() {
		t.Errorf("nodes = %v, %v", nodes, err)
	}

	// Transfer leadership through a follower.
	tr, err := f.TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{Id: fn.id})
	if err != nil || tr.GetLeaderId() != fn.id {
		t.Fatalf("transfer = %v, %v; want %s", tr, err, fn.id)
	}
	if now := c.leader(); now != fn {
		t.Errorf("leader after transfer = %s, want %s", now.id, fn.id)
	}
	// Writes through the old leader (now a follower) are forwarded.
	if _, err := leader.deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "after-transfer"}); err != nil {
		t.Errorf("deploy through the old leader: %v", err)
	}
}
