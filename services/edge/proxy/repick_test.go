package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"slipway.dev/edge/routetable"
)

// TestConnectionFailureAfterSwapPicksFromTheNewTable covers the race between
// the route barrier and requests already picked: a request chooses an
// instance from the old table, the edge applies (and acknowledges) routes
// without it, the node agent stops it, and the request's connection is
// refused. The request never reached the instance, so it must go to the new
// table's instances instead of failing with 502, for any method.
func TestConnectionFailureAfterSwapPicksFromTheNewTable(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			fresh := startBackend(t, "new")
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			old := lis.Addr().String()
			lis.Close() // stopped: connections are refused

			p := New(Config{})
			defer p.Close()
			p.Apply(context.Background(), routeTable("w", nil,
				routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{{ID: "old", Address: old}}}))

			var swaps atomic.Int32
			swapThenDial := func(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
				return func(ctx context.Context, network, addr string) (net.Conn, error) {
					if addr == old && swaps.Add(1) == 1 {
						p.Apply(context.Background(), routeTable("w", nil,
							routetable.Backend{Release: 2, Weight: 100, Upstreams: []routetable.Upstream{up(fresh, "new")}}))
					}
					return dial(ctx, network, addr)
				}
			}
			p.dial = swapThenDial(p.dial)

			req := httptest.NewRequest(method, "http://w/x", strings.NewReader("payload"))
			if method == "GET" {
				req = httptest.NewRequest(method, "http://w/x", nil)
			}
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Body.String() != "new" {
				t.Fatalf("%s picked before the swap: %d %q, want 200 from the new table's instance", method, rec.Code, rec.Body.String())
			}
			if swaps.Load() != 1 {
				t.Fatalf("old instance dialled %d times, want once", swaps.Load())
			}
		})
	}
}

// TestConnectionFailureWithoutNewTableStillFails checks that repicking only
// happens when there is a newer table: a dead only instance is a 502.
func TestConnectionFailureWithoutNewTableStillFails(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	p := New(Config{})
	defer p.Close()
	p.Apply(context.Background(), routeTable("w", nil,
		routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{{ID: "dead", Address: dead}}}))
	if code, _ := get(t, p, "w", nil); code != http.StatusBadGateway {
		t.Fatalf("dead only instance: %d, want 502", code)
	}
}
