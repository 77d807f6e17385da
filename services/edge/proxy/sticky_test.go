package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestStickyCookieSurvives1xx: a new client on a sticky route gets the
// edge's cookie (and the upstream's own Set-Cookie) on the final response
// also when a 1xx came first: a POST with Expect: 100-continue (the
// upstream's 100 Continue relayed through ReverseProxy) and a plain GET
// answered with 103 Early Hints first (the lean path's relay). Relaying a
// 1xx clears the response header, which used to take the cookie with it.
func TestStickyCookieSurvives1xx(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Hints") != "" {
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		body, err := io.ReadAll(r.Body) // sends 100 Continue when asked for
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "up"})
		io.WriteString(w, "got:"+string(body))
	}))
	defer be.Close()
	p := New(Config{})
	defer p.Close()
	tab := routeTable("web.local", nil, routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{up(be, "a")}})
	r := tab.Routes["web"]
	r.Sticky = &routetable.Sticky{Cookie: "slipway-web"}
	tab.Routes["web"] = r
	p.Apply(context.Background(), tab)
	base := serve(t, p)
	tr := &http.Transport{ExpectContinueTimeout: time.Minute} // waits for the 100: it has to come
	defer tr.CloseIdleConnections()

	for _, c := range []struct {
		name, method, body, expect, hints string
		want1xx                           int
	}{
		{"expect 100-continue", "POST", "hello", "100-continue", "", http.StatusContinue},
		{"103 early hints", "GET", "", "", "1", http.StatusEarlyHints},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got1xx []int
			var mu sync.Mutex
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
					mu.Lock()
					got1xx = append(got1xx, code)
					mu.Unlock()
					return nil
				},
			})
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			req, err := http.NewRequestWithContext(ctx, c.method, base+"/x", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "web.local"
			if c.expect != "" {
				req.Header.Set("Expect", c.expect)
			}
			if c.hints != "" {
				req.Header.Set("X-Hints", c.hints)
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(b) != "got:"+c.body {
				t.Fatalf("status %d body %q", resp.StatusCode, b)
			}
			mu.Lock()
			seen := slices.Contains(got1xx, c.want1xx)
			mu.Unlock()
			if !seen {
				t.Fatalf("1xx seen %v, want %d before the response", got1xx, c.want1xx)
			}
			var edge, upstream bool
			for _, v := range resp.Header.Values("Set-Cookie") {
				edge = edge || strings.HasPrefix(v, "slipway-web=")
				upstream = upstream || strings.HasPrefix(v, "session=up")
			}
			if !edge || !upstream {
				t.Fatalf("Set-Cookie %q: want the edge's slipway-web cookie and the upstream's session cookie", resp.Header.Values("Set-Cookie"))
			}
		})
	}
}
