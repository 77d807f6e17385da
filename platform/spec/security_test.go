package spec

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/platform/rpc"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func node(id string, sec *clusterv1.NodeSecurity) *clusterv1.Node {
	return &clusterv1.Node{Id: id, Status: clusterv1.NodeStatus_NODE_STATUS_READY, Security: sec}
}

func TestCheckNodes(t *testing.T) {
	plain := node("plain", nil)
	privNode := node("priv", &clusterv1.NodeSecurity{Privileged: true})
	capsNode := node("caps", &clusterv1.NodeSecurity{Caps: []string{"NET_ADMIN"}, HostPaths: []string{"/data"}})
	imgNode := node("img", &clusterv1.NodeSecurity{Images: []string{"slipway/*"}})
	drained := node("drained", &clusterv1.NodeSecurity{Privileged: true})
	drained.Draining = true
	down := node("down", &clusterv1.NodeSecurity{Privileged: true})
	down.Status = clusterv1.NodeStatus_NODE_STATUS_DOWN

	withSec := func(sec *deployv1.Security) *deployv1.ServiceSpec {
		s := valid()
		s.Security = sec
		return s
	}
	everything := &deployv1.Security{Privileged: true, CapAdd: []string{"net_admin", "SYS_TIME"},
		HostMounts: []*deployv1.HostMount{{HostPath: "/data/x", ContainerPath: "/x"}, {HostPath: "/etc", ContainerPath: "/e"}}}
	tests := []struct {
		name  string
		spec  *deployv1.ServiceSpec
		nodes []*clusterv1.Node
		want  []rpc.FieldViolation
	}{
		{name: "default spec, no nodes", spec: valid()},
		{name: "default spec, plain node", spec: valid(), nodes: []*clusterv1.Node{plain}},
		{name: "privileged, no nodes", spec: withSec(&deployv1.Security{Privileged: true}), want: []rpc.FieldViolation{
			{Field: "spec.security.privileged", Description: "no node allows privileged containers (node agents need -allow-privileged)"},
		}},
		{name: "privileged, only drained and down nodes allow it", spec: withSec(&deployv1.Security{Privileged: true}),
			nodes: []*clusterv1.Node{plain, drained, down}, want: []rpc.FieldViolation{
				{Field: "spec.security.privileged", Description: "no node allows privileged containers (node agents need -allow-privileged)"},
			}},
		{name: "privileged, one node allows it", spec: withSec(&deployv1.Security{Privileged: true}), nodes: []*clusterv1.Node{plain, privNode}},
		{name: "everything, nobody allows most", spec: withSec(everything), nodes: []*clusterv1.Node{plain, capsNode}, want: []rpc.FieldViolation{
			{Field: "spec.security.privileged", Description: "no node allows privileged containers (node agents need -allow-privileged)"},
			{Field: "spec.security.cap_add[1]", Description: "no node allows capability SYS_TIME (node agents need -allow-caps SYS_TIME)"},
			{Field: "spec.security.host_mounts[1].host_path", Description: "no node allows host path /etc (node agents need -allow-host-paths /etc or a parent directory)"},
		}},
		{name: "each ask allowed, never together", spec: withSec(&deployv1.Security{Privileged: true, CapAdd: []string{"NET_ADMIN"}}),
			nodes: []*clusterv1.Node{privNode, capsNode}, want: []rpc.FieldViolation{
				{Field: "spec.security", Description: "no single node allows everything the spec asks (priv refuses cap_add[0]; caps refuses privileged)"},
			}},
		{name: "image allowed by the unrestricted node", spec: func() *deployv1.ServiceSpec { s := valid(); s.Image = "busybox"; return s }(),
			nodes: []*clusterv1.Node{imgNode, plain}},
		{name: "image refused by every node", spec: func() *deployv1.ServiceSpec { s := valid(); s.Image = "busybox"; return s }(),
			nodes: []*clusterv1.Node{imgNode}, want: []rpc.FieldViolation{
				{Field: "spec.image", Description: `no node allows image "busybox" (node agents restrict images with -allow-images: slipway/*)`},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, CheckNodes(tt.spec, tt.nodes)); diff != "" {
				t.Errorf("CheckNodes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateSecurity(t *testing.T) {
	s := valid()
	s.Security = &deployv1.Security{CapAdd: []string{"NET_ADMIN", "FLY"}, HostMounts: []*deployv1.HostMount{
		{HostPath: "/data", ContainerPath: "/d"}, {HostPath: "data/../x", ContainerPath: "/d"}, {HostPath: "/srv", ContainerPath: "/"},
	}}
	var fields []string
	for _, v := range Validate(s) {
		fields = append(fields, v.Field)
	}
	want := []string{"spec.security.cap_add[1]", "spec.security.host_mounts[1].host_path", "spec.security.host_mounts[1].container_path", "spec.security.host_mounts[2].container_path"}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("Validate fields (-want +got):\n%s", diff)
	}
}
