package consul

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

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
	waitFor(t, "ack deleted with its session", func() bool { g, _ := read(); return g == nil })
	waitFor(t, "ack republished under a new session", func() bool { g, s := read(); return g != nil && s != session })

	cancel()
	<-done
	if g, _ := read(); g != nil {
		t.Fatal("ack still present after the edge stopped")
	}
}
