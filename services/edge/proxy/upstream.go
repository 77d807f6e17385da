package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// h1Transport is a lean HTTP/1.1 client for the proxy's hot path: bodyless
// idempotent requests (GET, HEAD, OPTIONS, TRACE) that are not upgrades. It
// writes the request and reads the response on the caller's goroutine over a
// pooled keep-alive connection, without http.Transport's per-connection
// read/write goroutines, channels and per-request context plumbing. Every
// other request (bodies, Upgrade, Expect, other methods) goes through the
// shared http.Transport; fastPath decides.
//
// A pooled connection the upstream closed while idle fails before any
// response byte arrives; such a request is replayed on another connection
// (safe: it is idempotent and has no body), as http.Transport does.
type h1Transport struct {
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle       int
	headerTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*h1Conn
	// live, when set, holds the addresses connections may be pooled for
	// (the current route table's instances); see keepOnly.
	live map[string]bool
}

type h1Conn struct {
	t    *h1Transport
	addr string
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	// rdl is the read deadline set on nc (zero: none). Setting a deadline
	// costs a runtime timer update, so it is set lazily (see roundTrip).
	rdl time.Time
}

// fastPath reports whether h1Transport can carry req.
func fastPath(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	if (req.Body != nil && req.Body != http.NoBody) || req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
		return false
	}
	h := req.Header
	return len(h["Upgrade"]) == 0 && len(h["Expect"]) == 0 && len(h["Connection"]) == 0 && req.URL.Scheme == "http"
}

func newH1Transport(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxIdle int, headerTimeout time.Duration) *h1Transport {
	return &h1Transport{dial: dial, maxIdle: maxIdle, headerTimeout: headerTimeout, idle: map[string][]*h1Conn{}}
}

// get returns an idle connection to addr, or dials one. reused tells which.
func (t *h1Transport) get(ctx context.Context, addr string) (c *h1Conn, reused bool, err error) {
	t.mu.Lock()
	if cs := t.idle[addr]; len(cs) > 0 {
		c = cs[len(cs)-1]
		cs[len(cs)-1] = nil
		t.idle[addr] = cs[:len(cs)-1]
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
	nc, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{t: t, addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096)}, false, nil
}

// put returns c to the idle pool, or closes it when the pool is full.
func (t *h1Transport) put(c *h1Conn) {
	t.mu.Lock()
	if (t.live == nil || t.live[c.addr]) && len(t.idle[c.addr]) < t.maxIdle {
		t.idle[c.addr] = append(t.idle[c.addr], c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	c.nc.Close()
}

// keepOnly closes the idle connections to addresses not in live and stops
// pooling connections to them, so instances that left the route table leave
// no open connections behind.
func (t *h1Transport) keepOnly(live map[string]bool) {
	var drop []*h1Conn
	t.mu.Lock()
	t.live = live
	for addr, cs := range t.idle {
		if !live[addr] {
			drop = append(drop, cs...)
			delete(t.idle, addr)
		}
	}
	t.mu.Unlock()
	for _, c := range drop {
		c.nc.Close()
	}
}

// CloseIdleConnections closes every pooled connection; connections in use
// are closed when their response ends.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	t.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.nc.Close()
		}
	}
}

var errH1Upgrade = errors.New("proxy: upstream switched protocols on a request that asked for no upgrade")

// RoundTrip sends req (for which fastPath is true) to req.URL.Host. 1xx
// responses go to the request context's httptrace Got1xxResponse.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.roundTrip(req, nil, nil)
}

// roundTrip is RoundTrip with got1xx, when not nil, receiving 1xx responses
// instead of the context's trace, and writeHead, when not nil, writing the
// request head instead of req.Write.
func (t *h1Transport) roundTrip(req *http.Request, got1xx func(int, http.Header), writeHead func(*bufio.Writer, *http.Request) error) (*http.Response, error) {
	ctx := req.Context()
	for {
		c, reused, err := t.get(ctx, req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, sent, err := c.roundTrip(req, got1xx, writeHead)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("proxy: %w: %w", ctx.Err(), err)
		}
		if reused && !sent {
			// The upstream closed this idle connection; replay on another.
			continue
		}
		return nil, err
	}
}

// roundTrip writes req and reads the response head. sent is true once any
// byte of a response arrived. On error the connection is closed.
func (c *h1Conn) roundTrip(req *http.Request, got1xx func(int, http.Header), writeHead func(*bufio.Writer, *http.Request) error) (resp *http.Response, sent bool, err error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		c.nc.Close()
		return nil, sent, err
	}
	if writeHead == nil {
		err = req.Write(c.bw)
	} else {
		err = writeHead(c.bw, req)
	}
	if err != nil {
		return fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err)
	}
	if c.t.headerTimeout > 0 {
		// The response head must arrive within headerTimeout; the
		// deadline is moved only when less than 3/4 of it remains, so a
		// busy connection rarely touches its timer: the effective limit
		// is between 3/4 and all of headerTimeout.
		if now := time.Now(); c.rdl.Sub(now) < c.t.headerTimeout*3/4 {
			c.rdl = now.Add(c.t.headerTimeout)
			c.nc.SetReadDeadline(c.rdl)
		}
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(err)
	}
	sent = true
	for {
		var fast bool
		if resp, fast = readSimpleResponse(c.br, req); !fast {
			resp, err = http.ReadResponse(c.br, req)
		}
		if err != nil {
			return fail(err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errH1Upgrade)
		}
		if resp.StatusCode >= 200 {
			break
		}
		if got1xx != nil {
			got1xx(resp.StatusCode, resp.Header)
		} else if tr := httptrace.ContextClientTrace(ctx); tr != nil && tr.Got1xxResponse != nil {
			if err := tr.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if !c.rdl.IsZero() && (resp.ContentLength < 0 || int64(c.br.Buffered()) < resp.ContentLength) {
		// The body needs more reads, which have no time limit (streams).
		// A body already buffered leaves the deadline for the next head.
		c.rdl = time.Time{}
		c.nc.SetReadDeadline(c.rdl)
		if ctx.Err() != nil {
			// Canceled while the deadline was being cleared.
			return fail(ctx.Err())
		}
	}
	keep := !resp.Close
	if resp.Body == http.NoBody || resp.Body == nil {
		c.release(stop, keep)
		return resp, true, nil
	}
	if sb, ok := resp.Body.(*simpleBody); ok {
		// The Content-Length reader lives in h1Body: one allocation less.
		resp.Body = &h1Body{c: c, stop: stop, keep: keep, n: sb.n}
		return resp, true, nil
	}
	resp.Body = &h1Body{c: c, rc: resp.Body, stop: stop, keep: keep}
	return resp, true, nil
}

// release returns the connection to the pool when the exchange ended cleanly
// and the request context did not interrupt it; else closes it.
func (c *h1Conn) release(stop func() bool, keep bool) {
	if stop() && keep && c.br.Buffered() == 0 {
		c.t.put(c)
		return
	}
	c.nc.Close()
}

// h1Body is a response body that gives its connection back on EOF. Read
// is not called concurrently; Close may race with it.
type h1Body struct {
	c  *h1Conn
	rc io.ReadCloser
	// n, when rc is nil, is the number of body bytes left on c.br.
	n    int64
	stop func() bool
	keep bool
	done atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, io.EOF
	}
	var n int
	var err error
	if b.rc != nil {
		n, err = b.rc.Read(p)
	} else {
		n, err = b.readN(p)
	}
	if err != nil && b.done.CompareAndSwap(false, true) {
		if err == io.EOF {
			b.c.release(b.stop, b.keep)
		} else {
			b.stop()
			b.c.nc.Close()
		}
	}
	return n, err
}

// Close ends the exchange; a body not read to its end closes the connection.
func (b *h1Body) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.stop()
		b.c.nc.Close()
	}
	return nil
}

// readN reads the rest of a body of known length from the connection, as
// http's body over an io.LimitedReader does: io.EOF with the last bytes,
// io.ErrUnexpectedEOF when the connection ends early.
func (b *h1Body) readN(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.c.br.Read(p)
	b.n -= int64(n)
	if b.n == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// simpleBody marks a response body of n bytes still on the connection's
// reader; h1Conn.roundTrip replaces it by an h1Body reading them.
type simpleBody struct {
	n int64
}

func (*simpleBody) Read([]byte) (int, error) { return 0, errors.New("proxy: simpleBody is a marker") }
func (*simpleBody) Close() error             { return nil }

// readSimpleResponse parses the common response to a GET without
// http.ReadResponse's per-field allocations: a complete head already
// buffered in br, HTTP/1.1, a status with a body (200-599 but 204 and 304),
// exactly one plain Content-Length, no Transfer-Encoding, Trailer or Pragma,
// no Connection but keep-alive, no folded line and only bytes ReadResponse
// accepts.
// The head becomes one string that the status and fields slice. ok is false,
// with br untouched, for anything else: ReadResponse then reads it.
func readSimpleResponse(br *bufio.Reader, req *http.Request) (resp *http.Response, ok bool) {
	if req.Method != http.MethodGet {
		return nil, false
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 || !bytes.HasPrefix(buf, http11) {
		return nil, false
	}
	head := string(buf[:end+2]) // status line and fields, each ending in CRLF
	line, rest, _ := strings.Cut(head, "\r\n")
	status := line[len(http11):]
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') || hasCTL(status) {
		return nil, false
	}
	code := 0
	for i := 0; i < 3; i++ {
		c := status[i]
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	// A bare LF ends up inside a field line, where the checks below
	// decline it.
	n := strings.Count(rest, "\n")
	h := make(http.Header, n)
	strs := make([]string, n)
	length := int64(-1)
	for rest != "" {
		var kv string
		kv, rest, _ = strings.Cut(rest, "\r\n")
		k, v, found := strings.Cut(kv, ":")
		if !found || !validFieldName(k) {
			return nil, false
		}
		v = strings.TrimRight(strings.TrimLeft(v, " \t"), " \t")
		for i := 0; i < len(v); i++ {
			if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
				return nil, false
			}
		}
		if !canonicalKey(k) {
			k = textproto.CanonicalMIMEHeaderKey(k)
		}
		switch k {
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil, false
		case "Connection":
			// Only the keep-alive that some servers send on every
			// response; close and anything else go to ReadResponse.
			if !asciiEqualFold(v, "keep-alive") {
				return nil, false
			}
		case "Content-Length":
			if length >= 0 || v == "" || len(v) > 18 {
				return nil, false
			}
			length = 0
			for i := 0; i < len(v); i++ {
				if v[i] < '0' || v[i] > '9' {
					return nil, false
				}
				length = length*10 + int64(v[i]-'0')
			}
		}
		if vv := h[k]; vv == nil {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = v
			h[k] = vv
		} else {
			h[k] = append(vv, v)
		}
	}
	if length < 0 {
		return nil, false
	}
	br.Discard(end + 4)
	resp = &http.Response{Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: length, Request: req}
	if length == 0 {
		resp.Body = http.NoBody
	} else {
		resp.Body = &simpleBody{n: length}
	}
	return resp, true
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	http11   = []byte("HTTP/1.1 ")
)

// canonicalKey reports whether k (a valid field name) is already in
// textproto's canonical form.
func canonicalKey(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}
