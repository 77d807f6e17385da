package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"slipway.dev/platform/rpc"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestClusterServiceErrorCodes: every error the caller's input or the
// cluster's state causes has a precise code and a message naming the cause,
// never INTERNAL.
func TestClusterServiceErrorCodes(t *testing.T) {
	c := startCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := c.leader()
	cl := n.cluster()

	// Single voter: no transfer, no removal of itself.
	_, err := cl.TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{})
	wantCode(t, "transfer on a single-node cluster", err, codes.FailedPrecondition, "no other voter to transfer leadership to")
	_, err = cl.RemovePeer(ctx, &clusterv1.RemovePeerRequest{Id: n.id})
	wantCode(t, "remove the last voter", err, codes.FailedPrecondition, "last voter")

	// A non-voter (never reachable) does not count as a transfer target.
	if _, err := cl.AddPeer(ctx, &clusterv1.AddPeerRequest{Id: "watcher", RaftAddress: "raft-watcher:7000", NonVoter: true}); err != nil {
		t.Fatalf("add non-voter: %v", err)
	}

	for _, tc := range []struct {
		name     string
		call     func() error
		code     codes.Code
		contains string
		fields   []string
	}{
		{"transfer with only a non-voter", func() error {
			_, err := cl.TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{})
			return err
		}, codes.FailedPrecondition, "no other voter to transfer leadership to", nil},
		{"transfer to a non-voter", func() error {
			_, err := cl.TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{Id: "watcher"})
			return err
		}, codes.FailedPrecondition, "non-voter", nil},
		{"transfer to self", func() error {
			_, err := cl.TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{Id: n.id})
			return err
		}, codes.FailedPrecondition, "already the leader", nil},
		{"transfer to an unknown peer", func() error {
			_, err := cl.TransferLeadership(ctx, &clusterv1.TransferLeadershipRequest{Id: "ghost"})
			return err
		}, codes.NotFound, "ghost", nil},
		{"remove an unknown peer", func() error {
			_, err := cl.RemovePeer(ctx, &clusterv1.RemovePeerRequest{Id: "ghost"})
			return err
		}, codes.NotFound, "ghost", nil},
		{"remove the last voter with a non-voter left", func() error {
			_, err := cl.RemovePeer(ctx, &clusterv1.RemovePeerRequest{Id: n.id})
			return err
		}, codes.FailedPrecondition, "last voter", nil},
		{"remove without id", func() error {
			_, err := cl.RemovePeer(ctx, &clusterv1.RemovePeerRequest{})
			return err
		}, codes.InvalidArgument, "", []string{"id"}},
		{"add without anything", func() error {
			_, err := cl.AddPeer(ctx, &clusterv1.AddPeerRequest{})
			return err
		}, codes.InvalidArgument, "", []string{"id", "raft_address"}},
		{"add with an address without port", func() error {
			_, err := cl.AddPeer(ctx, &clusterv1.AddPeerRequest{Id: "x", RaftAddress: "10.0.0.1"})
			return err
		}, codes.InvalidArgument, "", []string{"raft_address"}},
		{"add with a bad port", func() error {
			_, err := cl.AddPeer(ctx, &clusterv1.AddPeerRequest{Id: "x", RaftAddress: "10.0.0.1:99999"})
			return err
		}, codes.InvalidArgument, "", []string{"raft_address"}},
		{"add with no host", func() error {
			_, err := cl.AddPeer(ctx, &clusterv1.AddPeerRequest{Id: "x", RaftAddress: ":7000"})
			return err
		}, codes.InvalidArgument, "", []string{"raft_address"}},
		{"add at an address another peer uses", func() error {
			_, err := cl.AddPeer(ctx, &clusterv1.AddPeerRequest{Id: "x", RaftAddress: n.node.Addr()})
			return err
		}, codes.AlreadyExists, n.id, nil},
		{"drain without id", func() error {
			_, err := cl.DrainNode(ctx, &clusterv1.DrainNodeRequest{Enable: true})
			return err
		}, codes.InvalidArgument, "", []string{"id"}},
		{"drain an unknown node", func() error {
			_, err := cl.DrainNode(ctx, &clusterv1.DrainNodeRequest{Id: "w9", Enable: true})
			return err
		}, codes.NotFound, "w9", nil},
	} {
		err := tc.call()
		wantCode(t, tc.name, err, tc.code, tc.contains)
		wantFields(t, tc.name, err, tc.fields)
	}
	// Nothing was changed by the refused requests.
	peers, err := cl.ListPeers(ctx, &clusterv1.ListPeersRequest{})
	if err != nil || len(peers.GetPeers()) != 2 || peers.GetLeaderId() != n.id {
		t.Fatalf("peers after refused requests = %v, %v", peers, err)
	}
}

// TestDeployServiceErrorCodes: the DeployService counterpart.
func TestDeployServiceErrorCodes(t *testing.T) {
	c := startCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := c.leader().deploy()
	if _, err := d.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "e1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v2"), RequestId: "e2", Supersede: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("solo", "slipway/demo:v1"), RequestId: "e3"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		call     func() error
		code     codes.Code
		contains string
		fields   []string
	}{
		{"deploy an invalid spec", func() error {
			_, err := d.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{}})
			return err
		}, codes.InvalidArgument, "", []string{"spec.name"}},
		{"deploy over an active rollout", func() error {
			_, err := d.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v3")})
			return err
		}, codes.FailedPrecondition, "web-2", nil},
		{"rollback without service", func() error {
			_, err := d.RollbackService(ctx, &deployv1.RollbackServiceRequest{})
			return err
		}, codes.InvalidArgument, "", []string{"service"}},
		{"rollback an unknown service", func() error {
			_, err := d.RollbackService(ctx, &deployv1.RollbackServiceRequest{Service: "ghost"})
			return err
		}, codes.NotFound, "ghost", nil},
		{"rollback a single release", func() error {
			_, err := d.RollbackService(ctx, &deployv1.RollbackServiceRequest{Service: "solo", Supersede: true})
			return err
		}, codes.FailedPrecondition, "only release", nil},
		{"rollback to a release that does not exist", func() error {
			_, err := d.RollbackService(ctx, &deployv1.RollbackServiceRequest{Service: "web", ToRelease: 9, Supersede: true})
			return err
		}, codes.NotFound, "release 9", nil},
		{"promote without id", func() error {
			_, err := d.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{})
			return err
		}, codes.InvalidArgument, "", []string{"id"}},
		{"promote an unknown rollout", func() error {
			_, err := d.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: "web-9"})
			return err
		}, codes.NotFound, "web-9", nil},
		{"abort a superseded rollout", func() error {
			_, err := d.AbortRollout(ctx, &deployv1.AbortRolloutRequest{Id: "web-1"})
			return err
		}, codes.FailedPrecondition, "SUPERSEDED", nil},
		{"get rollout without id", func() error {
			_, err := d.GetRollout(ctx, &deployv1.GetRolloutRequest{})
			return err
		}, codes.InvalidArgument, "", []string{"id"}},
		{"get an unknown rollout", func() error {
			_, err := d.GetRollout(ctx, &deployv1.GetRolloutRequest{Id: "nope-1"})
			return err
		}, codes.NotFound, "nope-1", nil},
		{"get service without name", func() error {
			_, err := d.GetService(ctx, &deployv1.GetServiceRequest{})
			return err
		}, codes.InvalidArgument, "", []string{"name"}},
		{"get an unknown service", func() error {
			_, err := d.GetService(ctx, &deployv1.GetServiceRequest{Name: "ghost"})
			return err
		}, codes.NotFound, "ghost", nil},
		{"list releases without service", func() error {
			_, err := d.ListReleases(ctx, &deployv1.ListReleasesRequest{})
			return err
		}, codes.InvalidArgument, "", []string{"service"}},
		{"list releases with a negative limit", func() error {
			_, err := d.ListReleases(ctx, &deployv1.ListReleasesRequest{Service: "web", Limit: -1})
			return err
		}, codes.InvalidArgument, "", []string{"limit"}},
		{"list rollouts with a negative limit", func() error {
			_, err := d.ListRollouts(ctx, &deployv1.ListRolloutsRequest{Limit: -1})
			return err
		}, codes.InvalidArgument, "", []string{"limit"}},
		{"watch without id", func() error {
			st, err := d.WatchRollout(ctx, &deployv1.WatchRolloutRequest{})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, codes.InvalidArgument, "", []string{"id"}},
		{"watch an unknown rollout", func() error {
			st, err := d.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: "ghost-1"})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, codes.NotFound, "ghost-1", nil},
	} {
		err := tc.call()
		wantCode(t, tc.name, err, tc.code, tc.contains)
		wantFields(t, tc.name, err, tc.fields)
	}
}

// wantFields checks that err's BadRequest names exactly fields (in any
// order) when fields is not nil.
func wantFields(t *testing.T, what string, err error, fields []string) {
	t.Helper()
	if fields == nil {
		return
	}
	got := map[string]bool{}
	for _, v := range rpc.Violations(err) {
		got[v.Field] = true
	}
	for _, f := range fields {
		if !got[f] {
			t.Errorf("%s: violations %v do not name field %q", what, rpc.Violations(err), f)
		}
	}
}
