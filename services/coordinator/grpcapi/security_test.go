package grpcapi_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// Deploy refuses a spec asking for more than any node allows, naming the
// node agent flag, and accepts it once a ready node allows it.
func TestDeployRefusesWhatNoNodeAllows(t *testing.T) {
	c := startCluster(t, 1)
	leader := c.leader()
	ctx := context.Background()
	s := spec("sys", "slipway/demo:v1")
	s.Security = &deployv1.Security{Privileged: true, CapAdd: []string{"NET_ADMIN"},
		HostMounts: []*deployv1.HostMount{{HostPath: "/data/sys", ContainerPath: "/data"}}}

	_, err := leader.deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: s})
	wantCode(t, "privileged without nodes", err, codes.InvalidArgument, "spec.security.privileged: no node allows privileged containers (node agents need -allow-privileged)")
	wantCode(t, "cap without nodes", err, codes.InvalidArgument, "spec.security.cap_add[0]: no node allows capability NET_ADMIN (node agents need -allow-caps NET_ADMIN)")
	wantCode(t, "mount without nodes", err, codes.InvalidArgument, "spec.security.host_mounts[0].host_path: no node allows host path /data/sys")

	upsert := func(n *clusterv1.Node) {
		t.Helper()
		n.Status = clusterv1.NodeStatus_NODE_STATUS_READY
		if _, err := leader.node.Apply(ctx, &statev1.Command{Op: &statev1.Command_UpsertNode{UpsertNode: &statev1.UpsertNodeOp{Node: n}}}); err != nil {
			t.Fatal(err)
		}
	}
	upsert(&clusterv1.Node{Id: "w1", Address: "10.0.0.1:7410", Security: &clusterv1.NodeSecurity{Privileged: true, Images: []string{"slipway/*"}}})
	_, err = leader.deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: s})
	wantCode(t, "cap with a privileged-only node", err, codes.InvalidArgument, "spec.security.cap_add[0]: no node allows capability NET_ADMIN")

	other := spec("web", "nginx:1.27")
	_, err = leader.deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: other})
	wantCode(t, "image no node runs", err, codes.InvalidArgument, `spec.image: no node allows image "nginx:1.27" (node agents restrict images with -allow-images: slipway/*)`)

	upsert(&clusterv1.Node{Id: "w1", Address: "10.0.0.1:7410", Security: &clusterv1.NodeSecurity{Privileged: true,
		Caps: []string{"NET_ADMIN"}, HostPaths: []string{"/data"}, Images: []string{"slipway/*"}}})
	if _, err := leader.deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: s}); err != nil {
		t.Fatalf("Deploy once w1 allows everything: %v", err)
	}
}
