package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// TestWatchAndAckWithMinimalACLPolicy runs the edge's watch and ack against
// a Consul with ACLs on and default deny, with a token holding only
// deployments/consul/edge.hcl, over HTTPS with a client certificate: the
// watch sees the instances a node agent registered with its token and the
// intent the coordinator wrote with its token, the ack is published and
// renewed. An edge without a token is refused.
func TestWatchAndAckWithMinimalACLPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real Consul")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL(), testenv.ConsulTLS())
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// What the node agent and the coordinator write, each with its token.
	agent := c.Client(t, c.ComponentToken(t, "nodeagent"))
	if err := agent.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "w1", Name: "web", Port: 9001, Address: "127.0.0.1",
		Tags:  []string{catalog.Tag, catalog.ReleaseTag(1), catalog.TrackTag("stable")},
		Meta:  map[string]string{catalog.MetaRelease: "1", catalog.MetaTrack: "stable", catalog.MetaAllocation: "w1", catalog.MetaNode: "n1"},
		Check: &api.AgentServiceCheck{TTL: "1m", Status: api.HealthPassing}}); err != nil {
		t.Fatalf("register with the nodeagent token: %v", err)
	}
	coord := c.Client(t, c.ComponentToken(t, "coordinator"))
	if _, err := coord.KV().Put(&api.KVPair{Key: catalog.RouteKey("web"), Value: []byte(`{"service":"web"}`)}, nil); err != nil {
		t.Fatalf("intent with the coordinator token: %v", err)
	}

	client := c.Client(t, c.ComponentToken(t, "edge"))
	w := NewWatcher(client, log)
	wdone := make(chan struct{})
	go func() { w.Run(ctx); close(wdone) }()
	defer func() { cancel(); <-wdone }()
	select {
	case <-w.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("watcher not ready")
	}
	testenv.Eventually(t, 20*time.Second, "web's instance and intent seen with the edge token", func() error {
		in := w.Snapshot()
		if len(in.Instances["web"]) != 1 || in.Instances["web"][0].Address != "127.0.0.1:9001" || in.Instances["web"][0].Node != "n1" {
			return fmt.Errorf("instances %v", in.Instances)
		}
		if string(in.Intents["web"]) != `{"service":"web"}` {
			return fmt.Errorf("intents %v", in.Intents)
		}
		return nil
	})

	// The coordinator fences a node: the edge token reads it.
	if _, err := coord.KV().Put(&api.KVPair{Key: catalog.FenceKey("n1"), Value: []byte("lost")}, nil); err != nil {
		t.Fatalf("fence with the coordinator token: %v", err)
	}
	testenv.Eventually(t, 20*time.Second, "the fence seen with the edge token", func() error {
		if in := w.Snapshot(); !in.Fenced["n1"] || len(in.Fenced) != 1 {
			return fmt.Errorf("fenced %v, want n1", in.Fenced)
		}
		return nil
	})
	if _, err := coord.KV().Delete(catalog.FenceKey("n1"), nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the fence lifted", func() error {
		if in := w.Snapshot(); len(in.Fenced) != 0 {
			return fmt.Errorf("fenced %v, want none", in.Fenced)
		}
		return nil
	})

	a := NewAcker(client, "e1", 10*time.Second, log)
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan struct{})
	go func() { a.Run(actx); close(adone) }()
	ack := &edgev1.EdgeAck{EdgeId: "e1", Generations: map[string]uint64{"web": 1}, Instances: map[string]*edgev1.InstanceList{"web": {Ids: []string{"w1"}}}}
	if err := a.Publish(ctx, ack); err != nil {
		t.Fatalf("publish with the edge token: %v", err)
	}
	admin := c.AdminClient(t)
	kv, _, err := admin.KV().Get(catalog.EdgeKey("e1"), nil)
	if err != nil || kv == nil || kv.Session == "" {
		t.Fatalf("ack = %v, %v: want a session-bound key", kv, err)
	}
	// Renewal (what Run does every TTL/3) is allowed to the edge token.
	if entry, _, err := client.Session().Renew(kv.Session, nil); err != nil || entry == nil {
		t.Fatalf("renew with the edge token: %v, %v", entry, err)
	}
	acancel()
	<-adone
	testenv.Eventually(t, 10*time.Second, "ack withdrawn on stop", func() error {
		if kv, _, err := admin.KV().Get(catalog.EdgeKey("e1"), nil); err != nil || kv != nil {
			return fmt.Errorf("ack %v, %v", kv, err)
		}
		return nil
	})

	// Nothing beyond the policy: the edge token cannot write intents.
	if _, err := client.KV().Put(&api.KVPair{Key: catalog.RouteKey("web"), Value: []byte("{}")}, nil); !consulconf.IsPermissionDenied(err) {
		t.Errorf("edge token writing an intent: err = %v, want permission denied", err)
	}

	// Without a token: the ack is refused, with the policy to give.
	anon := NewAcker(c.Client(t, ""), "e2", 10*time.Second, log)
	err = anon.Publish(ctx, ack)
	if !errors.Is(err, consulconf.ErrPermissionDenied) || !strings.Contains(err.Error(), "deployments/consul/edge.hcl") {
		t.Fatalf("publish without a token: err = %v, want permission denied naming the policy", err)
	}
	t.Logf("without a token: %v", err)
}
