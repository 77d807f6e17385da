package consul

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// TestAckIsSessionBound: the ack lives only as long as the edge's session;
// a lost session is recreated and the ack republished; stopping the edge
// deletes it.
func TestAckIsSessionBound(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real Consul")
	}
	c := testenv.StartConsul(t)
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr()
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcker(client, "e1", 10*time.Second, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	ack := &edgev1.EdgeAck{EdgeId: "e1", Generations: map[string]uint64{"web": 3}, Instances: map[string]*edgev1.InstanceList{"web": {Ids: []string{"w1"}}}}
	if err := a.Publish(ctx, ack); err != nil {
		t.Fatal(err)
	}
	read := func() (*edgev1.EdgeAck, string) {
		kv, _, err := client.KV().Get(catalog.EdgeKey("e1"), nil)
		if err != nil || kv == nil {
			return nil, ""
		}
		var got edgev1.EdgeAck
		if err := protojson.Unmarshal(kv.Value, &got); err != nil {
			t.Fatal(err)
		}
		return &got, kv.Session
	}
	got, session := read()
	if got.GetGenerations()["web"] != 3 || session == "" {
		t.Fatalf("ack %v session %q", got, session)
	}
	info, _, err := client.Session().Info(session, nil)
	if err != nil || info == nil || info.Behavior != api.SessionBehaviorDelete {
		t.Fatalf("session %v, %v: want behavior delete", info, err)
	}
	// The session dies (as when the edge's TTL lapses): the key goes with it.
	if _, err := client.Session().Destroy(session, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "ack deleted with its session", func() error {
		if g, s := read(); g != nil {
			return fmt.Errorf("ack %v still present under session %q", g, s)
		}
		return nil
	})
	testenv.Eventually(t, 20*time.Second, "ack republished under a new session", func() error {
		if g, s := read(); g == nil || s == session {
			return fmt.Errorf("ack %v under session %q (the destroyed one is %q)", g, s, session)
		}
		return nil
	})

	cancel()
	<-done
	if g, _ := read(); g != nil {
		t.Fatal("ack still present after the edge stopped")
	}
}
