package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"slipway.dev/edge/routetable"
)

// TestProxyReusesUpstreamConnections checks keep-alive through the fast
// path for sized, chunked, HEAD and 204 responses, and that a POST with a
// body (the http.Transport path) still works.
func TestProxyReusesUpstreamConnections(t *testing.T) {
	var conns atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part1-"))
			http.NewResponseController(w).Flush()
			w.Write([]byte("part2"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/post":
			b, _ := io.ReadAll(r.Body)
			w.Write(append([]byte("got:"), b...))
		default:
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("sized"))
		}
	}))
	be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	be.Start()
	t.Cleanup(be.Close)
	p := New(Config{})
	t.Cleanup(p.Close)
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{up(be, "a")}}))
	srvURL := serve(t, p)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	do := func(method, path, body string) (int, string) {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, srvURL+path, r)
		req.Host = "w"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := 0; i < 20; i++ {
		if code, body := do("GET", "/", ""); code != 200 || body != "sized" {
			t.Fatalf("sized: %d %q", code, body)
		}
		if code, body := do("GET", "/chunked", ""); code != 200 || body != "part1-part2" {
			t.Fatalf("chunked: %d %q", code, body)
		}
		if code, body := do("HEAD", "/", ""); code != 200 || body != "" {
			t.Fatalf("head: %d %q", code, body)
		}
		if code, _ := do("GET", "/empty", ""); code != 204 {
			t.Fatalf("no content: %d", code)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("sequential fast-path requests used %d upstream connections, want 1", n)
	}
	if code, body := do("POST", "/post", "hello"); code != 200 || body != "got:hello" {
		t.Fatalf("post: %d %q", code, body)
	}
}

func TestApplyClosesIdleConnectionsToRemovedInstances(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := New(Config{})
	t.Cleanup(p.Close)
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{up(a, "a")}}))
	if code, body := get(t, p, "w", nil); code != 200 || body != "a" {
		t.Fatalf("%d %q", code, body)
	}
	addrA := up(a, "a").Address
	if n := p.h1.Idle(addrA); n != 1 {
		t.Fatalf("%d idle connections to a, want 1", n)
	}
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 2, Weight: 100, Upstreams: []routetable.Upstream{up(b, "b")}}))
	if n := p.h1.Idle(addrA); n != 0 {
		t.Fatalf("%d idle connections to a removed instance, want 0", n)
	}
	if code, body := get(t, p, "w", nil); code != 200 || body != "b" {
		t.Fatalf("%d %q", code, body)
	}
	if n := p.h1.Idle(up(b, "b").Address); n != 1 {
		t.Fatalf("%d idle connections to b, want 1", n)
	}
}
