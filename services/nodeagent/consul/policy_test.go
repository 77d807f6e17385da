package consul

import (
	"context"
	"slices"
	"testing"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/nodepolicy"
	"slipway.dev/platform/testenv"
)

// The agent's policy reaches Consul as meta that nodepolicy.FromMeta (the
// coordinator's reader) reads back, with the boot id, and a
// re-registration replaces it.
func TestRegisterAgentPublishesPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("real Consul; skipped by -short")
	}
	t.Parallel()
	c := testenv.StartConsul(t)
	r, err := New(c.Addr(), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	read := func() nodepolicy.Policy {
		t.Helper()
		svcs, err := r.Client().Agent().Services()
		if err != nil {
			t.Fatal(err)
		}
		s, ok := svcs[catalog.AgentServiceID("n1")]
		if !ok {
			t.Fatal("agent not registered")
		}
		p, err := nodepolicy.FromMeta(s.Meta)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	n := Node{ID: "n1", GRPCAddr: "127.0.0.1:7410", CPUMHz: 1, MemoryMB: 1, Driver: "docker", BootID: "b00t",
		Policy: nodepolicy.Policy{Privileged: true, Caps: []string{"NET_ADMIN"}, HostPaths: []string{"/data"}, Images: []string{"slipway/*"}}}
	if err := r.RegisterAgent(ctx, n); err != nil {
		t.Fatal(err)
	}
	if p := read(); !p.Privileged || !slices.Equal(p.Caps, []string{"NET_ADMIN"}) || !slices.Equal(p.HostPaths, []string{"/data"}) || !slices.Equal(p.Images, []string{"slipway/*"}) {
		t.Errorf("policy read back = %+v", p)
	}
	// The boot id too, which tells the coordinator the agent restarted.
	if svcs, err := r.Client().Agent().Services(); err != nil {
		t.Fatal(err)
	} else if got := svcs[catalog.AgentServiceID("n1")].Meta[catalog.MetaBoot]; got != "b00t" {
		t.Errorf("meta %s = %q, want b00t", catalog.MetaBoot, got)
	}
	n.Policy = nodepolicy.Policy{}
	if err := r.RegisterAgent(ctx, n); err != nil {
		t.Fatal(err)
	}
	if p := read(); p.Privileged || len(p.Caps)+len(p.HostPaths)+len(p.Images) != 0 {
		t.Errorf("after re-registering without allowances: %+v", p)
	}
}
