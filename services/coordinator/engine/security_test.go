package engine

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"slipway.dev/platform/nodepolicy"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestTemplateCarriesSecurity(t *testing.T) {
	s := &deployv1.ServiceSpec{Name: "web", Image: "slipway/demo:v1", Port: 8080, Security: &deployv1.Security{
		Privileged: true, CapAdd: []string{"NET_ADMIN"}, HostMounts: []*deployv1.HostMount{{HostPath: "/data", ContainerPath: "/d", ReadOnly: true}}}}
	a := Template(s, 1, "stable")
	want := &agentv1.Allocation{Privileged: true, CapAdd: []string{"NET_ADMIN"}, Mounts: []*agentv1.Mount{{HostPath: "/data", ContainerPath: "/d", ReadOnly: true}}}
	got := &agentv1.Allocation{Privileged: a.GetPrivileged(), CapAdd: a.GetCapAdd(), Mounts: a.GetMounts()}
	if !proto.Equal(got, want) {
		t.Errorf("Template security = %v, want %v", got, want)
	}
	if b := Template(&deployv1.ServiceSpec{Name: "web"}, 1, "stable"); b.GetPrivileged() || b.GetCapAdd() != nil || b.GetMounts() != nil {
		t.Errorf("a spec without security asks for some: %v", b)
	}
}

func TestSecurityProto(t *testing.T) {
	if securityProto(nodepolicy.Policy{}) != nil {
		t.Error("the zero policy must be recorded as none, like nodes recorded before policies")
	}
	got := securityProto(nodepolicy.Policy{Privileged: true, Caps: []string{"NET_ADMIN"}, Images: []string{"slipway/*"}})
	want := &clusterv1.NodeSecurity{Privileged: true, Caps: []string{"NET_ADMIN"}, Images: []string{"slipway/*"}}
	if !proto.Equal(got, want) {
		t.Errorf("securityProto = %v, want %v", got, want)
	}
}
