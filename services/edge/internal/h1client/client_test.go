package h1client

import (
	"bufio"
	"context"
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
	"sync/atomic"
	"testing"
	"time"
)

func newTestH1(headerTimeout time.Duration) *Transport {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return New(Config{Dial: d.DialContext, MaxIdlePerHost: 4, HeaderTimeout: headerTimeout})
}

func TestCanCarryBodylessIdempotentRequests(t *testing.T) {
	mk := func(method, body string, hdr ...string) *http.Request {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, "http://w/", r)
		if body == "" {
			req.Body = nil
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return req
	}
	cases := []struct {
		req  *http.Request
		want bool
	}{
		{mk("GET", ""), true},
		{mk("HEAD", ""), true},
		{mk("OPTIONS", ""), true},
		{mk("POST", ""), false},
		{mk("DELETE", ""), false},
		{mk("GET", "body"), false},
		{mk("GET", "", "Upgrade", "websocket", "Connection", "Upgrade"), false},
		{mk("GET", "", "Expect", "100-continue"), false},
	}
	for i, c := range cases {
		if got := CanCarry(c.req); got != c.want {
			t.Errorf("case %d %s %v: CanCarry = %v, want %v", i, c.req.Method, c.req.Header, got, c.want)
		}
	}
}

// rawServer answers every request on a connection with "ok" and closes the
// connection after `per` responses without saying so (as an upstream that
// drops idle keep-alive connections does).
func rawServer(t *testing.T, per int) (addr string, accepted *atomic.Int64) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	accepted = &atomic.Int64{}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; i < per; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return lis.Addr().String(), accepted
}

func TestH1ReplaysOnConnectionClosedWhileIdle(t *testing.T) {
	addr, accepted := rawServer(t, 1)
	tr := newTestH1(time.Minute)
	t.Cleanup(tr.CloseIdleConnections)
	for i := 0; i < 5; i++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "ok" {
			t.Fatalf("request %d: %q %v", i, b, err)
		}
	}
	if n := accepted.Load(); n < 5 {
		t.Fatalf("%d connections for 5 requests on an upstream closing each one", n)
	}
}

func TestH1BodyNotReadToEndClosesConnection(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(strings.Repeat("x", 64<<10)))
	}))
	t.Cleanup(be.Close)
	addr := strings.TrimPrefix(be.URL, "http://")
	tr := newTestH1(time.Minute)
	t.Cleanup(tr.CloseIdleConnections)
	get := func() *http.Response {
		req, _ := http.NewRequest("GET", be.URL+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get()
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	if n := tr.Idle(addr); n != 0 {
		t.Fatalf("%d idle connections after an abandoned body, want 0", n)
	}
	resp = get()
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 64<<10 {
		t.Fatalf("body %d bytes, %v", len(b), err)
	}
	resp.Body.Close()
	if n := tr.Idle(addr); n != 1 {
		t.Fatalf("%d idle connections after a full body, want 1", n)
	}
}

func TestH1CancelAndHeaderTimeout(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() { // accept and never answer
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	url := "http://" + lis.Addr().String() + "/"

	tr := newTestH1(200 * time.Millisecond)
	t.Cleanup(tr.CloseIdleConnections)
	req, _ := http.NewRequest("GET", url, nil)
	start := time.Now()
	var ne net.Error
	if _, err := tr.RoundTrip(req); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("silent upstream: err %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("header timeout took %v", d)
	}

	tr = newTestH1(time.Hour)
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", url, nil)
	errc := make(chan error, 1)
	go func() { _, err := tr.RoundTrip(req); errc <- err }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled request: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("canceled request still waiting for the upstream")
	}
}

func TestH1Forwards1xx(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte("final"))
	}))
	t.Cleanup(be.Close)
	tr := newTestH1(time.Minute)
	t.Cleanup(tr.CloseIdleConnections)
	var got []int
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error { got = append(got, code); return nil },
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", be.URL+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "final" || len(got) != 1 || got[0] != 103 {
		t.Fatalf("status %d body %q 1xx %v", resp.StatusCode, b, got)
	}
}

// TestSimpleResponseMatchesReadResponse checks readSimpleResponse against
// http.ReadResponse on the same bytes: the same status, fields, length and
// body where it parses, and the reader untouched where it declines.
func TestSimpleResponseMatchesReadResponse(t *testing.T) {
	get, _ := http.NewRequest("GET", "http://w/", nil)
	head, _ := http.NewRequest("HEAD", "http://w/", nil)
	cases := []struct {
		raw  string
		req  *http.Request
		fast bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A: 1\r\nx-a:  2 \r\nset-cookie: a\r\nSet-Cookie: b\r\n\r\nhello", get, true},
		{"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\n\r\n", get, true},
		{"HTTP/1.1 200\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Obs: caf\xc3\xa9\r\n\r\nok", get, true},
		{"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\nX-Empty:\r\n\r\nbad", get, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", head, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", get, false},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\r\n\r\nuntil close", get, false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", get, false},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n", get, false},
		{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Fold: a\r\n b\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\nContent-Length: 2\n\nok\r\n\r\n", get, false},
		{"HTTP/1.1 200 OK\r\nBad Key: 1\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\r\nX-Ctl: a\x01b\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", get, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", get, false}, // head not complete
	}
	for i, c := range cases {
		br := bufio.NewReader(strings.NewReader(c.raw))
		br.Peek(1) // buffer what there is, as roundTrip's Peek does
		got, fast := readSimpleResponse(br, c.req, nil)
		if fast != c.fast {
			t.Fatalf("case %d: fast = %v, want %v", i, fast, c.fast)
		}
		if !fast {
			if br.Buffered() != len(c.raw) {
				t.Fatalf("case %d: declined after consuming %d bytes", i, len(c.raw)-br.Buffered())
			}
			continue
		}
		want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(c.raw)), c.req)
		if err != nil {
			t.Fatalf("case %d: ReadResponse: %v", i, err)
		}
		if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
			got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor || got.ContentLength != want.ContentLength ||
			got.Close != want.Close || !reflect.DeepEqual(got.Header, want.Header) || got.Request != want.Request {
			t.Errorf("case %d:\n got %+v\nwant %+v", i, got, want)
		}
		wantBody, _ := io.ReadAll(want.Body)
		var gotBody []byte
		if got.Body == simpleBodyMark {
			b := &body{c: &conn{br: br}, n: got.ContentLength}
			for {
				buf := make([]byte, 2) // small reads: the length is tracked across them
				n, err := b.readN(buf)
				gotBody = append(gotBody, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("case %d: body: %v", i, err)
				}
			}
		} else if got.Body != http.NoBody || want.Body != http.NoBody {
			t.Errorf("case %d: body %T, ReadResponse's %T", i, got.Body, want.Body)
		}
		if string(gotBody) != string(wantBody) {
			t.Errorf("case %d: body %q, want %q", i, gotBody, wantBody)
		}
	}
	// A body cut short is an unexpected EOF, as ReadResponse's body says.
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf"))
	br.Peek(1)
	got, fast := readSimpleResponse(br, get, nil)
	if !fast {
		t.Fatal("declined a simple response")
	}
	b := &body{c: &conn{br: br}, n: got.ContentLength}
	if body, err := io.ReadAll(readerFunc(b.readN)); string(body) != "half" || err != io.ErrUnexpectedEOF {
		t.Fatalf("short body %q, %v", body, err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestH1SharedContextRegistration: requests sharing a context (the lean
// path's are all on the server's base context) share one connection and
// its cancellation watch; the watch kept across them still interrupts a
// later request when that context is canceled, and a per-request context
// canceled while its connection idles in the pool does not spoil the
// connection for the next request.
func TestH1SharedContextRegistration(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	var accepted atomic.Int64
	silent := make(chan struct{}, 1)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			t.Cleanup(func() { c.Close() })
			go func() {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/silent" {
						silent <- struct{}{}
						continue // read, never answered
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	url := "http://" + lis.Addr().String()
	tr := newTestH1(time.Hour)
	t.Cleanup(tr.CloseIdleConnections)
	get := func(ctx context.Context, path string) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != "ok" {
			err = fmt.Errorf("body %q", b)
		}
		return err
	}
	shared, cancelShared := context.WithCancel(context.Background())
	defer cancelShared()
	for i := 0; i < 3; i++ {
		if err := get(shared, "/"); err != nil {
			t.Fatalf("request %d on the shared context: %v", i, err)
		}
	}
	own, cancelOwn := context.WithCancel(context.Background())
	if err := get(own, "/"); err != nil {
		t.Fatalf("request on its own context: %v", err)
	}
	cancelOwn() // its connection is idle in the pool now
	for i := 0; i < 3; i++ {
		if err := get(shared, "/"); err != nil {
			t.Fatalf("request %d after an idle connection's context was canceled: %v", i, err)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d upstream connections for sequential requests, want 1", n)
	}
	errc := make(chan error, 1)
	go func() { errc <- get(shared, "/silent") }()
	<-silent // written on the pooled connection, waiting for its answer
	cancelShared()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("request on the canceled shared context: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request on the canceled shared context still waiting for the upstream")
	}
}
