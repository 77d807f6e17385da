package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"slipway.dev/edge/routetable"
)

// TestStickyRoute: a client without the cookie gets a bucket in it and
// the release of that bucket; with the cookie it stays there; the cookie
// bucket maps by the weights; a pin still wins.
func TestStickyRoute(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := New(Config{})
	defer p.Close()
	tab := routeTable("web.local", []routetable.Pin{{Kind: routetable.PinHeader, Name: "X-Canary", Release: 2}},
		routetable.Backend{Release: 1, Weight: 90, Upstreams: []routetable.Upstream{up(a, "a")}},
		routetable.Backend{Release: 2, Weight: 10, Upstreams: []routetable.Upstream{up(b, "b")}})
	r := tab.Routes["web"]
	r.Sticky = &routetable.Sticky{Cookie: "slipway-web", MaxAge: 60}
	tab.Routes["web"] = r
	p.Apply(context.Background(), tab)

	send := func(cookie string, hdr map[string]string) (string, string) {
		req := httptest.NewRequest("GET", "http://web.local/x", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		return rec.Body.String(), rec.Header().Get("Set-Cookie")
	}
	for bucket, want := range map[string]string{"0": "a", "89": "a", "90": "b", "99": "b"} {
		for i := 0; i < 5; i++ {
			if got, set := send("slipway-web="+bucket, nil); got != want || set != "" {
				t.Fatalf("bucket %s: %s (Set-Cookie %q), want %s and no new cookie", bucket, got, set, want)
			}
		}
	}
	onB := 0
	for i := 0; i < 1000; i++ {
		got, set := send("", nil)
		if !strings.HasPrefix(set, "slipway-web=") || !strings.Contains(set, "Max-Age=60") || !strings.Contains(set, "Path=/") {
			t.Fatalf("Set-Cookie %q", set)
		}
		// The cookie it was given keeps it where it went.
		cookie := strings.SplitN(set, ";", 2)[0]
		if again, _ := send(cookie, nil); again != got {
			t.Fatalf("client with %s went to %s, then %s", cookie, got, again)
		}
		if got == "b" {
			onB++
		}
	}
	if onB < 65 || onB > 135 {
		t.Fatalf("%d of 1000 new clients on the 10%% release", onB)
	}
	if got, _ := send("slipway-web=3", map[string]string{"X-Canary": "1"}); got != "b" {
		t.Fatalf("pinned request went to %s", got)
	}
	// A bad cookie is replaced.
	if _, set := send("slipway-web=x", nil); set == "" {
		t.Fatal("a bad bucket got no new cookie")
	}
}
