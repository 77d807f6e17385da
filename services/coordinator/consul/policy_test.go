package consul_test

import (
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"

	"slipway.dev/coordinator/consul"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/nodepolicy"
)

func TestNodeFromServicePolicy(t *testing.T) {
	meta := map[string]string{catalog.MetaNodeID: "n1", catalog.MetaCPU: "1", catalog.MetaMemory: "1",
		nodepolicy.MetaPrivileged: "true", nodepolicy.MetaCaps: "NET_ADMIN", nodepolicy.MetaHostPaths: "/data", nodepolicy.MetaImages: "slipway/*",
		catalog.MetaBoot: "b00t"}
	n, err := consul.NodeFromService(&api.AgentService{ID: "x", Address: "h", Port: 1, Meta: meta}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Boot != "b00t" {
		t.Errorf("boot id = %q, want b00t (the engine resyncs a node whose boot id changed)", n.Boot)
	}
	if p := n.Security; !p.Privileged || !slices.Equal(p.Caps, []string{"NET_ADMIN"}) || !slices.Equal(p.HostPaths, []string{"/data"}) || !slices.Equal(p.Images, []string{"slipway/*"}) {
		t.Errorf("policy = %+v", p)
	}
	meta[nodepolicy.MetaCaps] = "FLY"
	if _, err := consul.NodeFromService(&api.AgentService{ID: "x", Address: "h", Port: 1, Meta: meta}, nil); err == nil {
		t.Error("a malformed policy in the meta must be refused")
	}
}
