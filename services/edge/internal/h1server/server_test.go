package h1server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

// start serves h on a free port with lim and returns the address.
func start(t *testing.T, h http.Handler, lim Limits) (string, *Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Handler: h, Lean: true, Limits: lim})
	done := make(chan struct{})
	go func() { s.Serve(lis); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	return lis.Addr().String(), s
}

// pathOf answers with the path that served the request: lean or net/http.
var pathOf = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	path := "nethttp"
	if _, ok := w.(*response); ok {
		path = "lean"
	}
	fmt.Fprintf(w, "%s %s %s %s", path, r.Method, r.URL.RequestURI(), b)
})

// exchange writes raw on a new connection and reads n responses.
func exchange(t *testing.T, addr, raw string, n int) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	var out []string
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d of %q: %v", i, raw, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, fmt.Sprintf("%d %s", resp.StatusCode, b))
	}
	return out
}

// TestPathChoice: the common request takes the lean path; the others reach
// net/http on the same connection, which then keeps it.
func TestPathChoice(t *testing.T) {
	addr, _ := start(t, pathOf, Limits{})
	cases := []struct{ raw, want string }{
		{"GET /a?x=1 HTTP/1.1\r\nHost: w\r\n\r\n", "200 lean GET /a?x=1 "},
		{"POST /p HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\n\r\nhi", "200 lean POST /p hi"},
		{"GET /a HTTP/1.0\r\nHost: w\r\n\r\n", "200 nethttp GET /a "},
		{"POST /c HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", "200 nethttp POST /c hi"},
		{"GET /%41 HTTP/1.1\r\nHost: w\r\n\r\n", "200 nethttp GET /%41 "},
		{"GET http://w/abs HTTP/1.1\r\nHost: w\r\n\r\n", "200 nethttp GET /abs "},
		{"GET / HTTP/1.1\r\nHost: w\r\nExpect: 100-continue\r\n\r\n", "200 nethttp GET / "},
		{"GET / HTTP/1.1\r\nHost: w\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\n\r\n", "200 nethttp GET / "},
	}
	for _, c := range cases {
		if got := exchange(t, addr, c.raw, 1); got[0] != c.want {
			t.Errorf("%.40q: got %q, want %q", c.raw, got[0], c.want)
		}
	}
	// A connection that fell back stays with net/http, in order.
	got := exchange(t, addr, "GET /1 HTTP/1.1\r\nHost: w\r\n\r\nGET /%32 HTTP/1.1\r\nHost: w\r\n\r\nGET /3 HTTP/1.1\r\nHost: w\r\n\r\n", 3)
	if want := "[200 lean GET /1  200 nethttp GET /%32  200 nethttp GET /3 ]"; fmt.Sprint(got) != want {
		t.Fatalf("mixed pipeline %v, want %s", got, want)
	}
}

// TestResponseFraming covers the writer: a declared length, a short body
// sized at the end, a long body chunked, flushes, trailers, HEAD and 204.
func TestResponseFraming(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sized":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/short":
			io.WriteString(w, "short")
		case "/long":
			io.WriteString(w, strings.Repeat("x", 10000))
		case "/flush":
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		}
	}), Limits{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	do := func(method, path string) *http.Response {
		t.Helper()
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: w\r\n\r\n", method, path)
		req, _ := http.NewRequest(method, "http://w"+path, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp
	}
	body := func(resp *http.Response) string {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if r := do("GET", "/sized"); r.ContentLength != 5 || body(r) != "hello" {
		t.Fatalf("sized: %d", r.ContentLength)
	}
	if r := do("GET", "/short"); r.ContentLength != 5 || body(r) != "short" || r.Header.Get("Date") == "" {
		t.Fatalf("short: length %d date %q", r.ContentLength, r.Header.Get("Date"))
	}
	if r := do("GET", "/long"); r.ContentLength != -1 || len(r.TransferEncoding) != 1 || len(body(r)) != 10000 {
		t.Fatalf("long: length %d te %v", r.ContentLength, r.TransferEncoding)
	}
	if r := do("GET", "/flush"); body(r) != "ab" {
		t.Fatal("flush")
	}
	if r := do("GET", "/trailer"); body(r) != "body" || r.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("trailer %v", r.Trailer)
	}
	if r := do("HEAD", "/sized"); r.ContentLength != 5 || body(r) != "" {
		t.Fatalf("head: %d", r.ContentLength)
	}
	if r := do("GET", "/nocontent"); r.StatusCode != 204 || body(r) != "" {
		t.Fatalf("204: %d", r.StatusCode)
	}
}

// TestLimits: the body limit (413), the per-client limit (429) and the
// header count (431) on both paths.
func TestLimits(t *testing.T) {
	entered, release := make(chan struct{}, 4), make(chan struct{})
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge) // what the proxy answers
		}
	}), Limits{MaxBodyBytes: 10, MaxRequestsPerClient: 2, MaxHeaderCount: 5})
	status := func(raw string) string { return strings.Fields(exchange(t, addr, raw, 1)[0])[0] }
	if got := status("POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 11\r\n\r\n01234567890"); got != "413" {
		t.Errorf("lean body over the limit: %s, want 413", got)
	}
	if got := status("POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n01234567890\r\n0\r\n\r\n"); got != "413" {
		t.Errorf("chunked body over the limit: %s, want 413", got)
	}
	if got := status("GET / HTTP/1.1\r\nHost: w\r\n" + strings.Repeat("X-A: 1\r\n", 6) + "\r\n"); got != "431" {
		t.Errorf("lean head with 7 fields: %s, want 431", got)
	}
	if got := status("GET / HTTP/1.0\r\nHost: w\r\n" + strings.Repeat("X-A: 1\r\n", 6) + "\r\n"); got != "431" {
		t.Errorf("net/http head with 7 fields: %s, want 431", got)
	}
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Go(func() { exchange(t, addr, "GET /hold HTTP/1.1\r\nHost: w\r\n\r\n", 1) })
		<-entered
	}
	if got := status("GET / HTTP/1.1\r\nHost: w\r\n\r\n"); got != "429" {
		t.Errorf("third request in flight from one address: %s, want 429", got)
	}
	close(release)
	wg.Wait()
	if got := status("GET / HTTP/1.1\r\nHost: w\r\n\r\n"); got != "200" {
		t.Errorf("after the others finished: %s, want 200", got)
	}
}

// TestSlowloris: hundreds of connections trickling a head byte by byte do
// not keep normal clients from being served, and each slow connection is
// closed once its head outlasts ReadHeaderTimeout.
func TestSlowloris(t *testing.T) {
	addr, _ := start(t, pathOf, Limits{ReadHeaderTimeout: 500 * time.Millisecond, MaxConns: 1000})
	const slow = 300
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var closed atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := 0; i < slow; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			head := "GET / HTTP/1.1\r\nHost: w\r\nX-Slow: " + strings.Repeat("s", 1000)
			for i := 0; i < len(head); i++ {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					closed.Add(1)
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for i := 0; i < 50; i++ {
		resp, err := client.Get("http://" + addr + "/normal")
		if err != nil {
			t.Fatalf("normal request %d while %d slow connections are open: %v", i, slow, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "lean GET /normal " {
			t.Fatalf("normal request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	testenv.Eventually(t, 30*time.Second, "slow connections closed by the header timeout", func() error {
		if n := closed.Load(); n < slow {
			return fmt.Errorf("%d of %d closed", n, slow)
		}
		return nil
	})
}

// TestShutdownWaitsForRequests: Shutdown lets a request in flight finish
// and closes idle connections.
func TestShutdownWaitsForRequests(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	addr, s := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}), Limits{})
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	got := make(chan []string, 1)
	go func() { got <- exchange(t, addr, "GET /hold HTTP/1.1\r\nHost: w\r\n\r\n", 1) }()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("idle connection during shutdown: read %d, %v; want closed", n, err)
	}
	close(release)
	if r := <-got; r[0] != "200 done" {
		t.Fatalf("request in flight: %v", r)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestWriteTimeout: a client that sends a request and then reads nothing
// holds no handler past WriteTimeout, on the lean path, on net/http's path
// for a connection the lean path handed over (HTTP/1.0) and on a server
// with the lean path off: the blocked write fails with a deadline error.
func TestWriteTimeout(t *testing.T) {
	for _, c := range []struct {
		name string
		lean bool
		raw  string
		want string // the path that must have served it
	}{
		{"lean", true, "GET /big HTTP/1.1\r\nHost: w\r\n\r\n", "lean"},
		{"handed-over", true, "GET /big HTTP/1.0\r\nHost: w\r\n\r\n", "nethttp"},
		{"nethttp-only", false, "GET /big HTTP/1.1\r\nHost: w\r\n\r\n", "nethttp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			type outcome struct {
				path string
				err  error
			}
			done := make(chan outcome, 1)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := New(Config{Lean: c.lean, Limits: Limits{WriteTimeout: 300 * time.Millisecond}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				path := "nethttp"
				if _, ok := w.(*response); ok {
					path = "lean"
				}
				chunk := make([]byte, 32<<10)
				// Far more than loopback socket buffers hold: the
				// writes block once they are full.
				for i := 0; i < 1<<14; i++ {
					if _, err := w.Write(chunk); err != nil {
						done <- outcome{path, err}
						return
					}
				}
				done <- outcome{path, nil}
			})})
			served := make(chan struct{})
			go func() { s.Serve(lis); close(served) }()
			t.Cleanup(func() { s.Close(); <-served })
			conn, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, c.raw); err != nil {
				t.Fatal(err)
			}
			// The client reads nothing from here on.
			select {
			case o := <-done:
				if o.path != c.want {
					t.Fatalf("served on the %s path, want %s", o.path, c.want)
				}
				if !errors.Is(o.err, os.ErrDeadlineExceeded) {
					t.Fatalf("handler's write to a client that reads nothing: %v, want a deadline error", o.err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the handler's write still blocked 30s after the client stopped reading (write timeout 300ms)")
			}
		})
	}
}

// TestReadsAcrossPackets: a head and a body arriving in pieces, a
// pipelined request whose head is still arriving (the response before it
// must not wait for it: a client may read that response before sending
// the rest) and the next request on the same connection.
func TestReadsAcrossPackets(t *testing.T) {
	addr, _ := start(t, pathOf, Limits{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func() string {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	pause := func() { time.Sleep(20 * time.Millisecond) } // separate packets (not a synchronisation)
	for _, part := range []string{"POST /p HTTP/1.1\r\nHo", "st: w\r\nContent-Length: 5\r\n\r\n", "he", "llo"} {
		io.WriteString(c, part)
		pause()
	}
	if got := read(); got != "200 lean POST /p hello" {
		t.Fatalf("request in pieces: %q", got)
	}
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: w\r\n\r\nGET /2 HTTP/1.1\r\n")
	if got := read(); got != "200 lean GET /1 " {
		t.Fatalf("first of a partial pipeline: %q", got)
	}
	io.WriteString(c, "Host: w\r\n\r\n")
	if got := read(); got != "200 lean GET /2 " {
		t.Fatalf("second of a partial pipeline: %q", got)
	}
	io.WriteString(c, "GET /3 HTTP/1.1\r\nHost: w\r\n\r\n")
	if got := read(); got != "200 lean GET /3 " {
		t.Fatalf("next request: %q", got)
	}
}

// TestHalfCloseAfterRequest: a client that shuts its side down right after
// a keep-alive request gets its response and then the connection's end
// (the lean path's next read finds it), long before the idle timeout.
func TestHalfCloseAfterRequest(t *testing.T) {
	addr, _ := start(t, pathOf, Limits{IdleTimeout: time.Minute})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /h HTTP/1.1\r\nHost: w\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "lean GET /h " {
		t.Fatalf("response %q", b)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the response: read %d, %v; want the connection closed (EOF)", n, err)
	}
}
