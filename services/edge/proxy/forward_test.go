package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"

	"slipway.dev/edge/internal/h1server"
	"slipway.dev/edge/routetable"
)

// proxyTo starts a proxy server routing host "w" to the handler's server.
func proxyTo(t *testing.T, h http.HandlerFunc) (url string) {
	t.Helper()
	be := httptest.NewServer(h)
	t.Cleanup(be.Close)
	p := New(Config{})
	t.Cleanup(p.Close)
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{up(be, "a")}}))
	return serve(t, p)
}

// serve starts the edge's own server (lean path on) for h and returns its
// URL; it is closed when the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, true, h1server.Limits{}, nil)
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return "http://" + lis.Addr().String()
}

func TestLeanPathChoice(t *testing.T) {
	mk := func(method, target string, hdr ...string) *http.Request {
		req := httptest.NewRequest(method, target, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return req
	}
	cases := []struct {
		req  *http.Request
		want bool
	}{
		{mk("GET", "http://w/a?x=1&y=2"), true},
		{mk("HEAD", "http://w/"), true},
		{mk("GET", "http://w/", "Connection", "keep-alive"), true},
		{mk("POST", "http://w/"), false},
		{mk("GET", "http://w/a?x=1;y=2"), false},
		{mk("GET", "http://w/a?x=%zz"), false},
		{mk("GET", "http://w/", "Te", "trailers"), false},
		{mk("GET", "http://w/", "Upgrade", "websocket", "Connection", "Upgrade"), false},
	}
	for i, c := range cases {
		if got := leanPath(c.req); got != c.want {
			t.Errorf("case %d %s %s %v: leanPath = %v, want %v", i, c.req.Method, c.req.URL, c.req.Header, got, c.want)
		}
	}
}

// TestLeanPathHeaders checks ReverseProxy's header rules on the lean path:
// hop-by-hop and Connection-named headers dropped both ways, forwarding
// headers replaced, no default User-Agent, end-to-end headers and the query
// kept.
func TestLeanPathHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	gotQuery := make(chan string, 1)
	url := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		gotQuery <- r.URL.RawQuery
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "kept")
		io.WriteString(w, "ok")
	})
	req, _ := http.NewRequest("GET", url+"/p?a=1&b=2", nil)
	req.Host = "w"
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("Proxy-Authorization", "secret")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	req.Header.Set("X-Custom", "v")
	req.Header["User-Agent"] = nil
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h := <-got
	for _, k := range []string{"X-Hop", "Proxy-Authorization", "Forwarded", "User-Agent", "Connection"} {
		if v, ok := h[k]; ok {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
	want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "w", "X-Forwarded-Proto": "http", "X-Custom": "v"}
	for k, v := range want {
		if h.Get(k) != v || len(h[k]) != 1 {
			t.Errorf("upstream %s = %q, want %q", k, h[k], v)
		}
	}
	if q := <-gotQuery; q != "a=1&b=2" {
		t.Errorf("query %q", q)
	}
	if string(body) != "ok" || resp.Header.Get("X-End") != "kept" || resp.Header.Get("X-Resp-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("response %q headers %v", body, resp.Header)
	}
}

func TestLeanPathStreamsAndTrailers(t *testing.T) {
	next := make(chan struct{})
	url := proxyTo(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/trailer" {
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		<-next
		io.WriteString(w, "data: two\n\n")
	})
	req, _ := http.NewRequest("GET", url+"/events", nil)
	req.Host = "w"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	lineC := make(chan string, 1)
	go func() { l, _ := br.ReadString('\n'); lineC <- l }()
	select {
	case l := <-lineC:
		if l != "data: one\n" {
			t.Fatalf("first event %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first event not streamed before the upstream finished")
	}
	close(next)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest %q", rest)
	}

	req, _ = http.NewRequest("GET", url+"/trailer", nil)
	req.Host = "w"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("body %q trailer %v", body, resp.Trailer)
	}
}

func TestLeanPathRelays1xx(t *testing.T) {
	url := proxyTo(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	})
	var links []string
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if code == http.StatusEarlyHints {
				links = append(links, h.Get("Link"))
			}
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/", nil)
	req.Host = "w"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "final" || len(links) != 1 || !strings.Contains(links[0], "a.css") {
		t.Fatalf("body %q early hints %v", body, links)
	}
}

// TestLeanHeadMatchesReverseProxy checks that writeLeanHead sends what
// ReverseProxy (the proxy's own configuration of it) would send for the
// same inbound request, field by field.
func TestLeanHeadMatchesReverseProxy(t *testing.T) {
	p := New(Config{})
	t.Cleanup(p.Close)
	cases := []struct {
		raw string
		tls bool
	}{
		{raw: "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: w\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"},
		{raw: "GET / HTTP/1.1\r\nHost: w\r\n\r\n"},
		{raw: "HEAD /x HTTP/1.1\r\nHost: w:8080\r\nUser-Agent:\r\nCookie: a=1\r\nCookie: b=2\r\nAccept: a\r\nAccept: b\r\n\r\n"},
		{raw: "GET /h HTTP/1.1\r\nHost: w\r\nConnection: keep-alive, X-Hop ,x-other\r\nX-Hop: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n" +
			"Keep-Alive: 5\r\nProxy-Authorization: secret\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 6.6.6.6\r\n" +
			"X-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nUser-Agent: one\r\nUser-Agent: two\r\n\r\n"},
		{raw: "GET /a%20b/c%2Fd?q HTTP/1.1\r\nHost: w\r\nX-Sp:   padded   \r\n\r\n", tls: true},
		{raw: "GET /forced? HTTP/1.1\r\nHost: w\r\n\r\n"},
		{raw: "OPTIONS * HTTP/1.1\r\nHost: w\r\n\r\n"},
		{raw: "TRACE /t HTTP/1.0\r\n\r\n"},
		{raw: "GET /z HTTP/1.1\r\nHost: [fe80::1%25en0]:80\r\n\r\n"},
	}
	for i, c := range cases {
		in, err := http.ReadRequest(bufio.NewReader(strings.NewReader(c.raw)))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		in.RemoteAddr = "127.0.0.9:5555"
		if c.tls {
			in.TLS = &tls.ConnectionState{}
		}
		if !leanPath(in) {
			t.Fatalf("case %d: not a lean-path request", i)
		}

		var want bytes.Buffer
		rp := p.rp
		rp.Transport = roundTripFunc(func(out *http.Request) (*http.Response, error) {
			out.URL.Host = "upstream:80"
			if err := out.Write(&want); err != nil {
				t.Fatalf("case %d: reference write: %v", i, err)
			}
			return nil, errors.New("captured")
		})
		rp.ServeHTTP(httptest.NewRecorder(), in.Clone(context.Background()))

		var got bytes.Buffer
		st := &state{}
		out := st.leanRequest(in)
		out.URL.Host = "upstream:80"
		bw := bufio.NewWriter(&got)
		if err := writeLeanHead(bw, out); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		bw.Flush()

		wr, err := http.ReadRequest(bufio.NewReader(&want))
		if err != nil {
			t.Fatalf("case %d: reference %q: %v", i, want.String(), err)
		}
		gr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(got.Bytes())))
		if err != nil {
			t.Fatalf("case %d: lean head %q: %v", i, got.String(), err)
		}
		if gr.Method != wr.Method || gr.RequestURI != wr.RequestURI || gr.Host != wr.Host || !reflect.DeepEqual(gr.Header, wr.Header) {
			t.Errorf("case %d:\nlean head:\n%s\nReverseProxy:\n%s", i, got.String(), wr.Method+" "+wr.RequestURI+" "+wr.Host+fmt.Sprint(wr.Header))
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
