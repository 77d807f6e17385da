package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// Transport is a lean HTTP/1.1 client for the proxy's hot path: bodyless
// idempotent requests (GET, HEAD, OPTIONS, TRACE) that are not upgrades. It
// writes the request and reads the response on the caller's goroutine over a
// pooled keep-alive connection, without http.Transport's per-connection
// read/write goroutines, channels and per-request context plumbing. Every
// other request (bodies, Upgrade, Expect, other methods) goes through the
// shared http.Transport; CanCarry decides.
//
// A pooled connection the upstream closed while idle fails before any
// response byte arrives; such a request is replayed on another connection
// (safe: it is idempotent and has no body), as http.Transport does.
type Transport struct {
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle       int
	headerTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*conn
	// live, when set, holds the addresses connections may be pooled for
	// (the current route table's instances); see KeepOnly.
	live map[string]bool
}

type conn struct {
	t    *Transport
	addr string
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	// rdl is the read deadline set on nc (zero: none). Setting a deadline
	// costs a runtime timer update, so it is set lazily (see roundTrip).
	rdl time.Time

	// The request context's cancellation interrupts an exchange by moving
	// nc's deadline into the past. The context.AfterFunc registration
	// (two allocations) is kept across exchanges while their requests
	// share a context, as every lean-path request of the edge's server
	// does (its base context), and replaced when one comes with another.
	mu      sync.Mutex
	ctx     context.Context // watched by unwatch's registration
	unwatch func() bool
	// busy is set while an exchange on ctx is in flight; interrupted when
	// ctx's cancellation cut it.
	busy, interrupted bool
	interruptFn       func() // c.interrupt, made once
}

// watch makes the cancellation of ctx interrupt the exchange that starts;
// false when ctx is done already.
func (c *conn) watch(ctx context.Context) bool {
	var old func() bool
	c.mu.Lock()
	if c.ctx != ctx {
		old, c.unwatch, c.ctx = c.unwatch, nil, ctx
		if ctx.Done() != nil {
			if c.interruptFn == nil {
				c.interruptFn = c.interrupt
			}
			c.unwatch = context.AfterFunc(ctx, c.interruptFn)
		}
	}
	c.busy, c.interrupted = true, false
	c.mu.Unlock()
	if old != nil {
		old()
	}
	return ctx.Err() == nil
}

// interrupt cuts the exchange in flight when the watched context is done.
// A registration replaced but already started finds the new context live
// and does nothing.
func (c *conn) interrupt() {
	c.mu.Lock()
	if c.busy && c.ctx != nil && c.ctx.Err() != nil {
		c.interrupted = true
		c.nc.SetDeadline(time.Unix(1, 0))
	}
	c.mu.Unlock()
}

// end ends the exchange in flight: false when its context interrupted it
// (the connection's deadline is then in the past: close it).
func (c *conn) end() bool {
	c.mu.Lock()
	c.busy = false
	ok := !c.interrupted
	c.mu.Unlock()
	return ok
}

// close drops the context registration and closes the connection.
func (c *conn) close() {
	c.mu.Lock()
	stop := c.unwatch
	c.unwatch, c.ctx = nil, nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	c.nc.Close()
}

// CanCarry reports whether Transport can carry req.
func CanCarry(req *http.Request) bool {
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

// Config configures a Transport.
type Config struct {
	// Dial opens a connection to an upstream (required).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerHost is the keep-alive pool size per upstream address
	// (default 256).
	MaxIdlePerHost int
	// HeaderTimeout bounds the wait for a response head after the request
	// was written (zero: none).
	HeaderTimeout time.Duration
}

// New returns a Transport with an empty pool.
func New(cfg Config) *Transport {
	if cfg.MaxIdlePerHost == 0 {
		cfg.MaxIdlePerHost = 256
	}
	return &Transport{dial: cfg.Dial, maxIdle: cfg.MaxIdlePerHost, headerTimeout: cfg.HeaderTimeout, idle: map[string][]*conn{}}
}

// Idle returns the number of pooled idle connections to addr.
func (t *Transport) Idle(addr string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle[addr])
}

// get returns an idle connection to addr, or dials one. reused tells which.
func (t *Transport) get(ctx context.Context, addr string) (c *conn, reused bool, err error) {
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
	return &conn{t: t, addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096)}, false, nil
}

// put returns c to the idle pool, or closes it when the pool is full.
func (t *Transport) put(c *conn) {
	t.mu.Lock()
	if (t.live == nil || t.live[c.addr]) && len(t.idle[c.addr]) < t.maxIdle {
		t.idle[c.addr] = append(t.idle[c.addr], c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	c.close()
}

// keepOnly closes the idle connections to addresses not in live and stops
// pooling connections to them, so instances that left the route table leave
// no open connections behind.
func (t *Transport) KeepOnly(live map[string]bool) {
	var drop []*conn
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
		c.close()
	}
}

// CloseIdleConnections closes every pooled connection; connections in use
// are closed when their response ends.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*conn{}
	t.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.close()
		}
	}
}

// ErrUpgrade is returned when an upstream answers 101 to a request that did
// not ask to switch protocols.
var ErrUpgrade = errors.New("h1client: upstream switched protocols on a request that asked for no upgrade")

// RoundTrip sends req (for which CanCarry is true) to req.URL.Host. 1xx
// responses go to the request context's httptrace Got1xxResponse.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.Do(req, nil, nil, nil)
}

// Exchange is storage for one request's response that the caller owns (the
// proxy keeps it in its per-request state), so that a response the fast
// parser reads costs no allocation of its own: the Response, its body and
// the header values' slices live here. It is used for one request (its
// attempts included) and not reused after.
type Exchange struct {
	// Header, when not nil and empty, receives the fields of a response
	// the fast parser reads (the proxy passes its client's response
	// header); the Response's Header is then this map (see Direct).
	Header http.Header

	direct bool
	resp   http.Response
	body   body
	strs   [16]string
}

// Direct reports whether the last response's fields were parsed into
// e.Header itself.
func (e *Exchange) Direct() bool { return e.direct }

// Do is RoundTrip with ex, when not nil, holding the response (see
// Exchange), got1xx, when not nil, receiving 1xx responses instead of the
// context's trace, and writeHead, when not nil, writing the request head
// instead of req.Write (the proxy writes its outbound head straight from
// the inbound header).
func (t *Transport) Do(req *http.Request, ex *Exchange, got1xx func(int, http.Header), writeHead func(*bufio.Writer, *http.Request) error) (*http.Response, error) {
	ctx := req.Context()
	for {
		c, reused, err := t.get(ctx, req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, sent, err := c.roundTrip(req, ex, got1xx, writeHead)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("h1client: %w: %w", ctx.Err(), err)
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
func (c *conn) roundTrip(req *http.Request, ex *Exchange, got1xx func(int, http.Header), writeHead func(*bufio.Writer, *http.Request) error) (resp *http.Response, sent bool, err error) {
	ctx := req.Context()
	fail := func(err error) (*http.Response, bool, error) {
		c.end()
		c.close()
		return nil, sent, err
	}
	if !c.watch(ctx) {
		return fail(ctx.Err())
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
		if resp, fast = readSimpleResponse(c.br, req, ex); !fast {
			resp, err = http.ReadResponse(c.br, req)
		}
		if err != nil {
			return fail(err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(ErrUpgrade)
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
		c.release(keep)
		return resp, true, nil
	}
	var b *body
	if ex != nil {
		b = &ex.body
	} else {
		b = new(body)
	}
	if resp.Body == simpleBodyMark {
		// The Content-Length reader lives in body: one allocation less.
		*b = body{c: c, keep: keep, n: resp.ContentLength}
	} else {
		*b = body{c: c, rc: resp.Body, keep: keep}
	}
	resp.Body = b
	return resp, true, nil
}

// release returns the connection to the pool when the exchange ended cleanly
// and the request context did not interrupt it; else closes it.
func (c *conn) release(keep bool) {
	if c.end() && keep && c.br.Buffered() == 0 {
		c.t.put(c)
		return
	}
	c.close()
}

// body is a response body that gives its connection back on EOF. Read
// is not called concurrently; Close may race with it.
type body struct {
	c  *conn
	rc io.ReadCloser
	// n, when rc is nil, is the number of body bytes left on c.br.
	n    int64
	keep bool
	done atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
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
			b.c.release(b.keep)
		} else {
			b.c.end()
			b.c.close()
		}
	}
	return n, err
}

// Close ends the exchange; a body not read to its end closes the connection.
func (b *body) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.c.end()
		b.c.close()
	}
	return nil
}

// readN reads the rest of a body of known length from the connection, as
// http's body over an io.LimitedReader does: io.EOF with the last bytes,
// io.ErrUnexpectedEOF when the connection ends early.
func (b *body) readN(p []byte) (int, error) {
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

// simpleBody marks a response body of ContentLength bytes still on the
// connection's reader (simpleBodyMark, the only value); conn.roundTrip
// replaces it by a body reading them.
type simpleBody struct{}

var simpleBodyMark io.ReadCloser = &simpleBody{}

func (*simpleBody) Read([]byte) (int, error) {
	return 0, errors.New("h1client: simpleBody is a marker")
}
func (*simpleBody) Close() error { return nil }
