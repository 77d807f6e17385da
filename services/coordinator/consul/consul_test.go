package consul_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/consul"
	"slipway.dev/coordinator/engine"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

func start(t *testing.T) (*consul.Client, *api.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
	c := testenv.StartConsul(t)
	cl, err := consul.New(c.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr()
	raw, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, raw
}

func registerAgent(t *testing.T, raw *api.Client, id, status string, port int) {
	t.Helper()
	err := raw.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: catalog.AgentServiceID(id), Name: catalog.AgentService, Address: "127.0.0.1", Port: port,
		Meta: map[string]string{catalog.MetaNodeID: id, catalog.MetaCPU: "2000", catalog.MetaMemory: "1024",
			catalog.MetaDriver: "process", catalog.MetaLabelPrefix + "zone": "a"},
		Check: &api.AgentServiceCheck{TTL: "1m", Status: status},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNodesFromPassingAgents(t *testing.T) {
	cl, raw := start(t)
	ctx := context.Background()
	registerAgent(t, raw, "n1", api.HealthPassing, 7410)
	registerAgent(t, raw, "n2", api.HealthCritical, 7411)
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 {
		t.Fatalf("nodes = %+v, want only the passing n1", nodes)
	}
	n := nodes[0]
	if n.ID != "n1" || n.Addr != "127.0.0.1:7410" || n.CPU != 2000 || n.MemoryMB != 1024 || n.Driver != "process" || n.Labels["zone"] != "a" {
		t.Errorf("node = %+v", n)
	}
	// A node whose agent fails its check goes away.
	if err := raw.Agent().UpdateTTL("service:"+catalog.AgentServiceID("n1"), "", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	if nodes, err := cl.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Errorf("after n1 failed: %+v, %v", nodes, err)
	}
}

func TestNodeFromServiceRejectsBadMeta(t *testing.T) {
	for name, s := range map[string]*api.AgentService{
		"no id":      {ID: "x", Address: "h", Port: 1, Meta: map[string]string{catalog.MetaCPU: "1", catalog.MetaMemory: "1"}},
		"bad cpu":    {ID: "x", Address: "h", Port: 1, Meta: map[string]string{catalog.MetaNodeID: "n", catalog.MetaCPU: "x", catalog.MetaMemory: "1"}},
		"no memory":  {ID: "x", Address: "h", Port: 1, Meta: map[string]string{catalog.MetaNodeID: "n", catalog.MetaCPU: "1"}},
		"no address": {ID: "x", Port: 1, Meta: map[string]string{catalog.MetaNodeID: "n", catalog.MetaCPU: "1", catalog.MetaMemory: "1"}},
	} {
		if _, err := consul.NodeFromService(s, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestIntentRoundTrip(t *testing.T) {
	cl, raw := start(t)
	ctx := context.Background()
	in := &edgev1.TrafficIntent{Service: "web", Generation: 4, Host: "web.test", Path: "/", Weights: map[string]int32{"1": 75, "2": 25},
		Pins: []*edgev1.Pin{{Header: "X-Preview", Release: 2}}}
	if err := cl.WriteIntent(ctx, in); err != nil {
		t.Fatal(err)
	}
	kv, _, err := raw.KV().Get(catalog.RouteKey("web"), nil)
	if err != nil || kv == nil {
		t.Fatalf("get: %v %v", kv, err)
	}
	got := &edgev1.TrafficIntent{}
	if err := protojson.Unmarshal(kv.Value, got); err != nil {
		t.Fatalf("stored value is not protojson: %v: %s", err, kv.Value)
	}
	if got.GetGeneration() != 4 || got.GetWeights()["2"] != 25 || got.GetPins()[0].GetRelease() != 2 {
		t.Errorf("stored = %v", got)
	}
	if back, err := cl.ReadIntent(ctx, "web"); err != nil || back.GetGeneration() != 4 {
		t.Errorf("ReadIntent = %v, %v", back, err)
	}
}

// A deposed leader's last write cannot put a newer leader's routes back:
// WriteIntent leaves a key of a higher generation as it is and says so
// with engine.ErrNewerIntent; the same or a lower generation, or an
// undecodable value, is overwritten.
func TestWriteIntentRefusesLowerGeneration(t *testing.T) {
	cl, raw := start(t)
	ctx := context.Background()
	newer := &edgev1.TrafficIntent{Service: "web", Generation: 7, Host: "web.test", Path: "/", Weights: map[string]int32{"3": 100}}
	if err := cl.WriteIntent(ctx, newer); err != nil {
		t.Fatal(err)
	}
	older := &edgev1.TrafficIntent{Service: "web", Generation: 6, Host: "web.test", Path: "/", Weights: map[string]int32{"2": 100}}
	if err := cl.WriteIntent(ctx, older); !errors.Is(err, engine.ErrNewerIntent) {
		t.Fatalf("writing generation 6 over 7: %v, want ErrNewerIntent", err)
	}
	if back, err := cl.ReadIntent(ctx, "web"); err != nil || !proto.Equal(back, newer) {
		t.Fatalf("after the refused write Consul holds %v (%v), want %v", back, err, newer)
	}
	same := proto.CloneOf(newer)
	same.Weights = map[string]int32{"3": 50, "4": 50}
	if err := cl.WriteIntent(ctx, same); err != nil {
		t.Fatalf("rewriting generation 7: %v", err)
	}
	if _, err := raw.KV().Put(&api.KVPair{Key: catalog.RouteKey("web"), Value: []byte("{not json")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.WriteIntent(ctx, older); err != nil {
		t.Fatalf("writing over an undecodable value: %v", err)
	}
	if back, err := cl.ReadIntent(ctx, "web"); err != nil || !proto.Equal(back, older) {
		t.Errorf("Consul holds %v (%v), want %v", back, err, older)
	}
}

// Intents reads back every intent in one query, so the leader can compare
// what Consul holds with raft state: missing keys are absent, undecodable
// ones present as nil, keys below a service's key ignored.
func TestIntentsReadBack(t *testing.T) {
	cl, raw := start(t)
	ctx := context.Background()
	if got, err := cl.Intents(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v", got, err)
	}
	web := &edgev1.TrafficIntent{Service: "web", Generation: 3, Host: "web.test", Path: "/", Weights: map[string]int32{"1": 100}}
	if err := cl.WriteIntent(ctx, web); err != nil {
		t.Fatal(err)
	}
	for key, val := range map[string]string{catalog.RouteKey("api"): `{"generation":`, catalog.RouteKey("web") + "/x": `{}`} {
		if _, err := raw.KV().Put(&api.KVPair{Key: key, Value: []byte(val)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := cl.Intents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !proto.Equal(got["web"], web) || got["api"] != nil {
		t.Errorf("Intents = %v, want web as written and api present but nil", got)
	}
	if _, ok := got["api"]; !ok {
		t.Error("an undecodable intent is not reported (it would never be rewritten)")
	}
	// The key lost (Consul restarted without its data): absent.
	if _, err := raw.KV().DeleteTree(catalog.RoutesPrefix, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.Intents(ctx); err != nil || len(got) != 0 {
		t.Errorf("after the keys were lost: %v, %v", got, err)
	}
}

func TestWatchAcksFollowsLiveEdges(t *testing.T) {
	cl, raw := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() { cl.WatchAcks(ctx); close(done) }()

	// A key without a session (a dead edge's leftover) is ignored.
	stale, _ := protojson.Marshal(&edgev1.EdgeAck{EdgeId: "old", Generations: map[string]uint64{"web": 1}})
	if _, err := raw.KV().Put(&api.KVPair{Key: catalog.EdgeKey("old"), Value: stale}, nil); err != nil {
		t.Fatal(err)
	}
	changed := cl.Changed()
	sess, _, err := raw.Session().Create(&api.SessionEntry{Name: "edge-e1", TTL: "30s", Behavior: api.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := protojson.Marshal(&edgev1.EdgeAck{EdgeId: "e1", Generations: map[string]uint64{"web": 7}})
	if ok, _, err := raw.KV().Acquire(&api.KVPair{Key: catalog.EdgeKey("e1"), Value: b, Session: sess}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	deadline := time.After(10 * time.Second)
	for {
		acks, err := cl.Acks(ctx)
		if err == nil && len(acks) == 1 && acks[0].GetEdgeId() == "e1" && acks[0].GetGenerations()["web"] == 7 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("acks = %v, %v; want e1 at generation 7 only", acks, err)
		case <-changed:
			changed = cl.Changed()
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The edge's session ends: its ack disappears.
	if _, err := raw.Session().Destroy(sess, nil); err != nil {
		t.Fatal(err)
	}
	for {
		acks, err := cl.Acks(ctx)
		if err == nil && len(acks) == 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("acks after session end = %v, %v", acks, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestWatchNodesFollowsAgents: the blocking-query watch of the node agents'
// instances sees an agent join, fail its check and pass again, and Nodes
// answers from it.
func TestWatchNodesFollowsAgents(t *testing.T) {
	cl, raw := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() { cl.WatchNodes(ctx); close(done) }()

	ids := func() []string {
		nodes, err := cl.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range nodes {
			out = append(out, n.ID)
		}
		return out
	}
	registerAgent(t, raw, "n1", api.HealthPassing, 7410)
	registerAgent(t, raw, "n2", api.HealthPassing, 7411)
	want := func(w ...string) func() error {
		return func() error {
			if got := ids(); !slices.Equal(got, w) {
				return fmt.Errorf("nodes %v, want %v", got, w)
			}
			return nil
		}
	}
	testenv.Eventually(t, 10*time.Second, "both agents seen by the watch", want("n1", "n2"))
	if err := raw.Agent().UpdateTTL("service:"+catalog.AgentServiceID("n1"), "", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "n1 gone once its check fails", want("n2"))
	if err := raw.Agent().UpdateTTL("service:"+catalog.AgentServiceID("n1"), "", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "n1 back once it passes", want("n1", "n2"))
}

// TestNodesAnswersFromWatch: while WatchNodes runs, Nodes queries Consul no
// more (requests are counted by a proxy in front of a real Consul agent).
func TestNodesAnswersFromWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
	c := testenv.StartConsul(t)
	target, err := url.Parse("http://" + c.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var lists atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/health/service/") {
			lists.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cl, err := consul.New(strings.TrimPrefix(srv.URL, "http://"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr()
	raw, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	registerAgent(t, raw, "n1", api.HealthPassing, 7410)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() { cl.WatchNodes(ctx); close(done) }()
	testenv.Eventually(t, 10*time.Second, "watch loaded", func() error {
		if lists.Load() < 2 { // the first list answered, the blocking one waits
			return fmt.Errorf("%d lists", lists.Load())
		}
		return nil
	})
	before := lists.Load()
	for range 50 {
		if nodes, err := cl.Nodes(ctx); err != nil || len(nodes) != 1 {
			t.Fatalf("Nodes = %v, %v", nodes, err)
		}
	}
	if n := lists.Load() - before; n > 1 {
		t.Errorf("50 Nodes calls made %d Consul queries, want them answered from the watch", n)
	}
}
