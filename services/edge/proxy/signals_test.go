package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"slipway.dev/edge/routetable"
	"slipway.dev/edge/signals"
)

// Every proxied response is counted for its release: a canary answering
// 500s shows as errors of its release only, and an instance that refuses
// connections (no other instance to retry on) counts as a transport failure.
func TestGoldenSignalsPerRelease(t *testing.T) {
	stable := startBackend(t, "stable")
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(bad.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()

	var c signals.Counter
	p := New(Config{Signals: &c})
	defer p.Close()
	p.Apply(context.Background(), routetable.Table{Routes: map[string]routetable.Route{
		"web": {Service: "web", Host: "web.local", Path: "/", Generation: 1, Backends: []routetable.Backend{
			{Release: 1, Weight: 80, Upstreams: []routetable.Upstream{up(stable, "s1")}},
			{Release: 2, Weight: 20, Upstreams: []routetable.Upstream{up(bad, "c1")}},
		}},
		"api": {Service: "api", Host: "api.local", Path: "/", Generation: 1, Backends: []routetable.Backend{
			{Release: 3, Weight: 100, Upstreams: []routetable.Upstream{{ID: "dead", Address: dead}}},
		}},
	}})
	for i := 0; i < 100; i++ {
		get(t, p, "web.local", nil)
	}
	if code, _ := get(t, p, "api.local", nil); code != http.StatusBadGateway {
		t.Fatalf("dead instance: %d, want 502", code)
	}
	s := c.Snapshot()
	if got := s[signals.Key{Service: "web", Release: 1}]; got.Requests != 80 || got.Errors != 0 || got.Latency.Total() != 80 {
		t.Errorf("web v1: %d requests, %d errors, %d latencies; want 80, 0, 80", got.Requests, got.Errors, got.Latency.Total())
	}
	if got := s[signals.Key{Service: "web", Release: 2}]; got.Requests != 20 || got.Errors != 20 {
		t.Errorf("web v2: %d requests, %d errors; want 20, 20", got.Requests, got.Errors)
	}
	if got := s[signals.Key{Service: "api", Release: 3}]; got.Requests != 1 || got.Errors != 1 {
		t.Errorf("api v3 (transport failure): %d requests, %d errors; want 1, 1", got.Requests, got.Errors)
	}
}
