package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"slipway.dev/edge/routetable"
)

func TestSmoothWeightedSpreads(t *testing.T) {
	w := []int{5, 1, 1}
	cur := make([]int, 3)
	var got []int
	for i := 0; i < 7; i++ {
		got = append(got, smoothWeighted(w, cur, nil))
	}
	// nginx's documented sequence for 5,1,1: a a b a c a a.
	want := []int{0, 0, 1, 0, 2, 0, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sequence %v, want %v", got, want)
	}
	if i := smoothWeighted([]int{0, 0}, []int{0, 0}, nil); i != -1 {
		t.Fatalf("all zero weights chose %d", i)
	}
}

func startBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "echo")
			w.WriteHeader(http.StatusSwitchingProtocols)
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			line, _ := brw.ReadString('\n')
			fmt.Fprintf(brw, "%s:%s", name, line)
			brw.Flush()
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func routeTable(host string, pins []routetable.Pin, bs ...routetable.Backend) routetable.Table {
	return routetable.Table{Routes: map[string]routetable.Route{"web": {Service: "web", Host: host, Path: "/", Generation: 1, Backends: bs, Pins: pins}}}
}

func up(s *httptest.Server, id string) routetable.Upstream {
	return routetable.Upstream{ID: id, Address: strings.TrimPrefix(s.URL, "http://")}
}

func get(t *testing.T, h http.Handler, host string, hdr map[string]string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "http://"+host+"/x", nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestWeightsPinsAndSwap(t *testing.T) {
	a1, a2, b1 := startBackend(t, "a1"), startBackend(t, "a2"), startBackend(t, "b1")
	p := New(Config{})
	defer p.Close()
	pins := []routetable.Pin{{Kind: routetable.PinHeader, Name: "X-Canary", Value: "yes", Release: 2}, {Kind: routetable.PinCookie, Name: "stable", Release: 1}}
	p.Apply(context.Background(), routeTable("web.local", pins,
		routetable.Backend{Release: 1, Weight: 80, Upstreams: []routetable.Upstream{up(a1, "a1"), up(a2, "a2")}},
		routetable.Backend{Release: 2, Weight: 20, Upstreams: []routetable.Upstream{up(b1, "b1")}}))
	counts := map[string]int{}
	for i := 0; i < 100; i++ {
		code, body := get(t, p, "web.local:8080", nil)
		if code != 200 {
			t.Fatalf("code %d", code)
		}
		counts[body]++
	}
	if counts["a1"] != 40 || counts["a2"] != 40 || counts["b1"] != 20 {
		t.Fatalf("counts %v, want a1=40 a2=40 b1=20", counts)
	}
	for i := 0; i < 5; i++ {
		if _, body := get(t, p, "web.local", map[string]string{"X-Canary": "yes"}); body != "b1" {
			t.Fatalf("header pin went to %s", body)
		}
		if _, body := get(t, p, "web.local", map[string]string{"X-Canary": "yes", "Cookie": "x=1"}); body != "b1" {
			t.Fatalf("header pin went to %s", body)
		}
	}
	p.Apply(context.Background(), routeTable("web.local", pins,
		routetable.Backend{Release: 1, Weight: 0, Upstreams: []routetable.Upstream{up(a1, "a1")}},
		routetable.Backend{Release: 2, Weight: 100, Upstreams: []routetable.Upstream{up(b1, "b1")}}))
	for i := 0; i < 10; i++ {
		if _, body := get(t, p, "web.local", nil); body != "b1" {
			t.Fatalf("after swap got %s", body)
		}
		if _, body := get(t, p, "web.local", map[string]string{"Cookie": "stable=1"}); body != "a1" {
			t.Fatalf("cookie pin went to %s", body)
		}
	}
	if code, _ := get(t, p, "other.local", nil); code != 404 {
		t.Fatalf("unknown host: %d", code)
	}
}

func TestRetryAndEjectDeadInstance(t *testing.T) {
	live := startBackend(t, "live")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	p := New(Config{})
	defer p.Close()
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 1, Weight: 100,
		Upstreams: []routetable.Upstream{{ID: "dead", Address: dead}, up(live, "live")}}))
	for i := 0; i < 20; i++ {
		if code, body := get(t, p, "w", nil); code != 200 || body != "live" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if !p.isEjected(dead) {
		t.Fatal("dead instance not ejected")
	}
}

func TestUpgradePassThrough(t *testing.T) {
	b := startBackend(t, "ws")
	p := New(Config{})
	defer p.Close()
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{up(b, "ws")}}))
	conn, err := net.Dial("tcp", strings.TrimPrefix(serve(t, p), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ws:ping\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
}

func TestH2C(t *testing.T) {
	b := startBackend(t, "h2")
	p := New(Config{})
	defer p.Close()
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{up(b, "h2")}}))
	url := serve(t, p)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	req, _ := http.NewRequest("GET", url+"/", nil)
	req.Host = "w"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || string(body) != "h2" {
		t.Fatalf("proto %s body %q", resp.Proto, body)
	}
}

func TestInFlightRequestFinishesOnItsTable(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "slow")
	}))
	defer slow.Close()
	fast := startBackend(t, "fast")
	p := New(Config{})
	defer p.Close()
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{up(slow, "slow")}}))
	type reply struct {
		code int
		body string
	}
	done := make(chan reply, 1)
	go func() {
		req := httptest.NewRequest("GET", "http://w/", nil)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		done <- reply{rec.Code, rec.Body.String()}
	}()
	<-entered
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 2, Weight: 100, Upstreams: []routetable.Upstream{up(fast, "fast")}}))
	if _, body := get(t, p, "w", nil); body != "fast" {
		t.Fatalf("new request went to %q after the swap", body)
	}
	close(release)
	if r := <-done; r.code != 200 || r.body != "slow" {
		t.Fatalf("in-flight request: %d %q", r.code, r.body)
	}
}

func TestAccessLogAndMetricsPerRoute(t *testing.T) {
	b := startBackend(t, "a")
	var buf syncBuffer
	reg := prometheus.NewRegistry()
	p := New(Config{AccessLog: true, Logger: slog.New(slog.NewTextHandler(&buf, nil)), Registerer: reg})
	defer p.Close()
	p.Apply(context.Background(), routeTable("w", nil, routetable.Backend{Release: 3, Weight: 100, Upstreams: []routetable.Upstream{up(b, "inst-a")}}))
	get(t, p, "w", nil)
	line := buf.String()
	for _, want := range []string{"msg=access", "service=web", "release=3", "upstream=inst-a", "status=200"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log %q lacks %s", line, want)
		}
	}
	if got := testutil.ToFloat64(p.m.requests.WithLabelValues("web", "3", "200")); got != 1 {
		t.Fatalf("requests_total{web,3,200} = %v", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
