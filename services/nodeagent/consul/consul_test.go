package consul

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

func TestRegistryAgainstConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("real Consul; skipped by -short")
	}
	t.Parallel()
	c := testenv.StartConsul(t)
	r, err := New(c.Addr(), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(c.Addr(), "n2", nil)
	ctx := context.Background()
	s := allocation.Spec{ID: "a1", Service: "web", Release: 4, Track: "canary", Check: allocation.Check{TCP: true}}
	if err := r.Register(ctx, s, allocation.Instance{HostPort: 1}, "127.0.0.1", false); err != nil {
		t.Fatal(err)
	}
	s2 := s
	s2.ID = "b1"
	if err := other.Register(ctx, s2, allocation.Instance{HostPort: 2}, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	owned, self, err := r.Owned(ctx)
	if err != nil || len(owned) != 1 || !owned["a1"] || self {
		t.Errorf("Owned = %v, %v, %v; want only a1, no self", owned, self, err)
	}
	hs, err := r.Checks(ctx)
	if err != nil || hs["b1"] != Passing {
		t.Errorf("Checks = %v, %v; want b1 passing (registered passing)", hs, err)
	}
	if err := r.Deregister(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Deregister(ctx, "a1"); err != nil {
		t.Errorf("deregistering twice: %v", err)
	}

	// Route barrier: no edges -> the window.
	t0 := time.Now()
	if err := r.WaitRoutes(ctx, "web", "a1", 5*time.Second, 200*time.Millisecond); err != nil || time.Since(t0) < 200*time.Millisecond {
		t.Errorf("no edges: %v after %s, want nil after the window", err, time.Since(t0))
	}
	kv := r.Client().KV()
	ack := func(ids ...string) []byte {
		b, _ := protojson.Marshal(&edgev1.EdgeAck{EdgeId: "e", Instances: map[string]*edgev1.InstanceList{"web": {Ids: ids}}})
		return b
	}
	// A key without a session is a dead edge's leftover: ignored.
	if _, err := kv.Put(&api.KVPair{Key: catalog.EdgeKey("dead"), Value: ack("a1")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitRoutes(ctx, "web", "a1", 5*time.Second, 10*time.Millisecond); err != nil {
		t.Errorf("dead edge only: %v", err)
	}
	// A live edge routing to a1 holds the barrier until it stops doing so.
	sid, _, err := r.Client().Session().Create(&api.SessionEntry{TTL: "30s", Behavior: api.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := kv.Acquire(&api.KVPair{Key: catalog.EdgeKey("live"), Value: ack("a1", "x"), Session: sid}, nil); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := r.WaitRoutes(ctx, "web", "a1", 300*time.Millisecond, 0); !errors.Is(err, ErrBarrierTimeout) {
		t.Errorf("live edge routing: %v, want ErrBarrierTimeout", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.WaitRoutes(ctx, "web", "a1", 10*time.Second, 0) }()
	if ok, _, err := kv.Acquire(&api.KVPair{Key: catalog.EdgeKey("live"), Value: ack("x"), Session: sid}, nil); err != nil || !ok {
		t.Fatal(ok, err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("after the edge stopped routing: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("barrier not released after the edge stopped routing")
	}
}
