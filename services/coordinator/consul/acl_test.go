package consul_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/coordinator/consul"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// TestEngineCallsWithMinimalACLPolicy runs every call of the leader
// engine's adapter against a Consul with ACLs on and default deny, with a
// token holding only deployments/consul/coordinator.hcl: node discovery
// (agents registered with the nodeagent token), intents written, read and
// listed, edge acks (published with the edge token) followed. A coordinator
// without a token is refused.
func TestEngineCallsWithMinimalACLPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	registerAgent(t, c.Client(t, c.ComponentToken(t, "nodeagent")), "n1", api.HealthPassing, 7410)

	cl, err := consul.NewFromConfig(c.ComponentConfig(t, "coordinator"), nil)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "n1 discovered with the coordinator token", func() error {
		nodes, err := cl.Nodes(ctx)
		if err != nil {
			return err
		}
		if len(nodes) != 1 || nodes[0].ID != "n1" {
			return fmt.Errorf("nodes %+v, want n1", nodes)
		}
		return nil
	})
	in := &edgev1.TrafficIntent{Service: "web", Host: "web.test", Generation: 1}
	if err := cl.WriteIntent(ctx, in); err != nil {
		t.Fatalf("WriteIntent with the coordinator token: %v", err)
	}
	if got, err := cl.ReadIntent(ctx, "web"); err != nil || got.GetHost() != "web.test" {
		t.Fatalf("ReadIntent = %v, %v", got, err)
	}
	if all, err := cl.Intents(ctx); err != nil || all["web"].GetGeneration() != 1 {
		t.Fatalf("Intents = %v, %v", all, err)
	}

	// Node fences: written, listed and lifted with the coordinator token.
	if err := cl.Fence(ctx, "n1", "lost"); err != nil {
		t.Fatalf("Fence with the coordinator token: %v", err)
	}
	if f, err := cl.Fenced(ctx); err != nil || !f["n1"] || len(f) != 1 {
		t.Fatalf("Fenced = %v, %v", f, err)
	}
	if err := cl.Unfence(ctx, "n1"); err != nil {
		t.Fatalf("Unfence with the coordinator token: %v", err)
	}
	if f, err := cl.Fenced(ctx); err != nil || len(f) != 0 {
		t.Fatalf("Fenced after Unfence = %v, %v", f, err)
	}

	// An edge acknowledges with its own token; the watch sees it.
	go cl.WatchAcks(ctx)
	edge := c.Client(t, c.ComponentToken(t, "edge"))
	sid, _, err := edge.Session().Create(&api.SessionEntry{TTL: "30s", Behavior: api.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := protojson.Marshal(&edgev1.EdgeAck{EdgeId: "e1", Generations: map[string]uint64{"web": 1}})
	if ok, _, err := edge.KV().Acquire(&api.KVPair{Key: catalog.EdgeKey("e1"), Value: b, Session: sid}, nil); err != nil || !ok {
		t.Fatalf("edge ack: %v, %v", ok, err)
	}
	testenv.Eventually(t, 10*time.Second, "the edge's ack seen with the coordinator token", func() error {
		acks, err := cl.Acks(ctx)
		if err != nil {
			return err
		}
		if len(acks) != 1 || acks[0].GetGenerations()["web"] != 1 {
			return errors.New("no ack of generation 1")
		}
		return nil
	})

	// Nothing beyond the policy: the coordinator cannot register services.
	raw := c.Client(t, c.ComponentToken(t, "coordinator"))
	if err := raw.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "fake", Name: catalog.AgentService, Port: 1}); !consulconf.IsPermissionDenied(err) {
		t.Errorf("coordinator token registering a node agent: err = %v, want permission denied", err)
	}

	// Without a token: intents are refused, with the policy to give.
	anon, err := consul.NewFromConfig(c.Config(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = anon.WriteIntent(ctx, in)
	if !errors.Is(err, consulconf.ErrPermissionDenied) || !strings.Contains(err.Error(), "deployments/consul/coordinator.hcl") {
		t.Fatalf("WriteIntent without a token: err = %v, want permission denied naming the policy", err)
	}
	t.Logf("without a token: %v", err)
	// Reads are filtered rather than refused: an anonymous coordinator
	// sees no node at all, so it places nothing.
	if nodes, err := anon.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Errorf("Nodes without a token = %v, %v; want none", nodes, err)
	}
}
