package consul

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// TestRegistryWithMinimalACLPolicy runs every call the node agent makes
// against a Consul with ACLs on and default deny, with a token holding only
// deployments/consul/nodeagent.hcl; and shows an agent without a token is
// refused, with an error naming the policy to give it.
func TestRegistryWithMinimalACLPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("real Consul; skipped by -short")
	}
	t.Parallel()
	c := testenv.StartConsul(t, testenv.ConsulACL())
	ctx := context.Background()
	node := Node{ID: "n1", GRPCAddr: "127.0.0.1:7410", CPUMHz: 1000, MemoryMB: 512, Driver: "process"}

	anon, err := NewFromConfig(c.Config(""), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = anon.RegisterAgent(ctx, node)
	if !errors.Is(err, consulconf.ErrPermissionDenied) || !strings.Contains(err.Error(), "deployments/consul/nodeagent.hcl") {
		t.Fatalf("RegisterAgent without a token: err = %v, want permission denied naming the policy", err)
	}
	t.Logf("without a token: %v", err)
	s := allocation.Spec{ID: "a1", Service: "web", Release: 4, Track: "canary", Check: allocation.Check{TCP: true}}
	if err := anon.Register(ctx, s, allocation.Instance{HostPort: 1}, "127.0.0.1", true); !errors.Is(err, consulconf.ErrPermissionDenied) {
		t.Fatalf("Register without a token: err = %v, want permission denied", err)
	}
	admin := c.AdminClient(t)
	if svcs, _, err := admin.Catalog().Services(nil); err != nil || len(svcs) != 1 { // "consul" only
		t.Fatalf("catalog after the refused registrations = %v, %v", svcs, err)
	}

	r, err := NewFromConfig(c.ComponentConfig(t, "nodeagent"), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterAgent(ctx, node); err != nil {
		t.Fatalf("RegisterAgent with the nodeagent policy: %v", err)
	}
	img := allocation.Instance{HostPort: 2, ImageHealth: allocation.ImageHealthy}
	s2 := s
	s2.ID, s2.Service = "b1", "api"
	for _, reg := range []struct {
		s    allocation.Spec
		inst allocation.Instance
	}{{s, allocation.Instance{HostPort: 1}}, {s2, img}} {
		if err := r.Register(ctx, reg.s, reg.inst, "127.0.0.1", true); err != nil {
			t.Fatalf("Register %s with the nodeagent policy: %v", reg.s.ID, err)
		}
	}
	if err := r.SetImageHealth(ctx, "b1", allocation.ImageUnhealthy); err != nil {
		t.Fatalf("SetImageHealth: %v", err)
	}
	owned, self, err := r.Owned(ctx)
	if err != nil || len(owned) != 2 || !owned["a1"] || !owned["b1"] || !self {
		t.Errorf("Owned = %v, %v, %v; want a1, b1 and self", owned, self, err)
	}
	hs, err := r.Checks(ctx)
	if err != nil || hs["b1"] != Critical {
		t.Errorf("Checks = %v, %v; want b1 critical (image unhealthy)", hs, err)
	}
	// What the agent registered reached the catalog with its token.
	testenv.Eventually(t, 10*time.Second, "the agent and web in the catalog", func() error {
		for _, svc := range []string{catalog.AgentService, "web"} {
			es, _, err := admin.Catalog().Service(svc, "", nil)
			if err != nil {
				return err
			}
			if len(es) != 1 {
				return errors.New(svc + " not in the catalog")
			}
		}
		return nil
	})

	// The route barrier reads the edges' acks.
	sid, _, err := admin.Session().Create(&api.SessionEntry{TTL: "30s", Behavior: api.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := protojson.Marshal(&edgev1.EdgeAck{EdgeId: "e", Instances: map[string]*edgev1.InstanceList{"web": {Ids: []string{"a1"}}}})
	if ok, _, err := admin.KV().Acquire(&api.KVPair{Key: catalog.EdgeKey("e"), Value: b, Session: sid}, nil); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := r.WaitRoutes(ctx, "web", "a1", 300*time.Millisecond, 0); !errors.Is(err, ErrBarrierTimeout) {
		t.Errorf("live edge routing to a1: %v, want ErrBarrierTimeout (the token reads the acks)", err)
	}
	if err := r.WaitRoutes(ctx, "api", "b1", 5*time.Second, 0); err != nil {
		t.Errorf("live edge not routing to b1: %v", err)
	}
	// Nothing beyond the policy: no KV writes, not even its edges' keys.
	if _, err := r.Client().KV().Put(&api.KVPair{Key: catalog.RouteKey("web"), Value: []byte("{}")}, nil); !consulconf.IsPermissionDenied(err) {
		t.Errorf("nodeagent token writing a traffic intent: err = %v, want permission denied", err)
	}

	for _, id := range []string{"a1", "b1"} {
		if err := r.Deregister(ctx, id); err != nil {
			t.Errorf("Deregister %s: %v", id, err)
		}
	}
	if err := r.DeregisterAgent(ctx); err != nil {
		t.Errorf("DeregisterAgent: %v", err)
	}
}
