package h1server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
)

// Config configures a Server. Zero values take the defaults named.
type Config struct {
	// Handler serves every request, on both paths (required).
	Handler http.Handler
	// Logger receives panics and accept errors.
	Logger *slog.Logger
	// Lean enables the lean path; when false every connection goes to
	// net/http (kept for comparison and as an escape hatch).
	Lean bool
	// Limits bound what a client may use.
	Limits Limits
}

// Limits bound what one client or all clients together may use. Zero
// fields take the defaults in DefaultLimits; negative ones switch a limit
// off.
type Limits struct {
	// MaxHeaderBytes bounds a request head (431 above it).
	MaxHeaderBytes int
	// MaxHeaderCount bounds the number of header fields (431 above it).
	MaxHeaderCount int
	// MaxBodyBytes bounds a request body (413 above it).
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds the time from a request's first byte to the
	// end of its head.
	ReadHeaderTimeout time.Duration
	// ReadBodyTimeout bounds the wait for each read of a request body.
	ReadBodyTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection.
	IdleTimeout time.Duration
	// WriteTimeout bounds the time each write to the client may block, on
	// both paths (on net/http's, also HTTP/2 and upgraded connections).
	WriteTimeout time.Duration
	// MaxConns bounds open client connections; further ones wait in the
	// listen backlog.
	MaxConns int
	// MaxRequestsPerClient bounds the requests in flight from one client
	// address (429 above it).
	MaxRequestsPerClient int
}

// DefaultLimits are the limits a zero Limits field takes.
var DefaultLimits = Limits{
	MaxHeaderBytes:       32 << 10,
	MaxHeaderCount:       100,
	MaxBodyBytes:         64 << 20,
	ReadHeaderTimeout:    10 * time.Second,
	ReadBodyTimeout:      60 * time.Second,
	IdleTimeout:          120 * time.Second,
	WriteTimeout:         60 * time.Second,
	MaxConns:             16384,
	MaxRequestsPerClient: 1024,
}

// WithDefaults returns l with its zero fields taken from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	pick := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	pickD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	pick(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	pick(&l.MaxHeaderCount, d.MaxHeaderCount)
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	pickD(&l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	pickD(&l.ReadBodyTimeout, d.ReadBodyTimeout)
	pickD(&l.IdleTimeout, d.IdleTimeout)
	pickD(&l.WriteTimeout, d.WriteTimeout)
	pick(&l.MaxConns, d.MaxConns)
	pick(&l.MaxRequestsPerClient, d.MaxRequestsPerClient)
	return l
}

// leanBuffer is the read buffer of a lean connection: a head that does not
// fit goes to net/http, which applies MaxHeaderBytes.
const leanBuffer = 4096

// Server serves HTTP/1.1 on the lean path and hands everything else to a
// net/http server (HTTP/1.x, h2c) over the same connection.
type Server struct {
	cfg     Config
	lim     Limits
	handler http.Handler // cfg.Handler behind the limits
	guard   *guard
	std     *http.Server
	handed  *connQueue
	log     *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
	stdOnce   sync.Once
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lim := cfg.Limits.WithDefaults()
	s := &Server{cfg: cfg, lim: lim, log: cfg.Logger, listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.guard = newGuard(lim)
	s.handler = s.guard.wrap(cfg.Handler)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	maxHeader := lim.MaxHeaderBytes
	if maxHeader < 0 {
		maxHeader = 0
	}
	s.std = &http.Server{Handler: s.guard.wrapStd(cfg.Handler, lim), Protocols: &protos,
		ReadHeaderTimeout: positive(lim.ReadHeaderTimeout), IdleTimeout: positive(lim.IdleTimeout), MaxHeaderBytes: maxHeader,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	s.handed = newConnQueue()
	return s
}

func positive(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// Serve accepts connections on l until Shutdown or Close; it returns
// http.ErrServerClosed then.
func (s *Server) Serve(l net.Listener) error {
	if s.lim.MaxConns > 0 {
		l = netutil.LimitListener(l, s.lim.MaxConns)
	}
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.stdOnce.Do(func() { go s.std.Serve(s.handed) })
	if !s.cfg.Lean {
		// Everything through net/http, still behind the connection limit.
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		err := s.std.Serve(writeTimeoutListener{Listener: l, d: s.lim.WriteTimeout})
		if s.shutdown.Load() {
			return http.ErrServerClosed
		}
		return err
	}
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTemporary(err)) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(nc)
		go c.serve()
	}
}

// errTemporary returns err when it says it is temporary (EMFILE and the
// like), else a sentinel nothing matches.
func errTemporary(err error) error {
	if t, ok := err.(interface{ Temporary() bool }); ok && t.Temporary() {
		return err
	}
	return errNotTemporary
}

var errNotTemporary = errors.New("not temporary")

// Shutdown stops accepting, closes idle connections, waits for requests in
// flight (both paths) until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.closeListeners()
	s.handed.close()
	stdErr := make(chan error, 1)
	go func() { stdErr <- s.std.Shutdown(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
	s.cancel()
	return <-stdErr
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.shutdown.Store(true)
	s.closeListeners()
	s.handed.close()
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return s.std.Close()
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
		delete(s.listeners, l)
	}
}

// closeIdle wakes the connections waiting for a request (they see the
// shutdown and close) and returns how many lean connections remain.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.idle.Load() {
			c.nc.SetReadDeadline(time.Unix(1, 0))
		}
	}
	return len(s.conns)
}

// conn is one client connection on the lean path.
type conn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string
	client string // remote without the port
	idle   atomic.Bool

	req  http.Request // reused for each request; tmpl holds its context
	tmpl http.Request
	url  url.URL
	hdr  http.Header
	slab []string
	body body
	resp response

	// rdl and wdl are the deadlines set on nc; they are moved lazily (only
	// when less than 3/4 of the timeout is left) so that a busy connection
	// rarely touches its timers.
	rdl, wdl time.Time
	// broken marks a connection whose next request must not be read (a
	// body left unread, an aborted response, a write error).
	broken bool
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, remote: nc.RemoteAddr().String(), hdr: http.Header{}}
	c.client = c.remote
	if h, _, err := net.SplitHostPort(c.remote); err == nil {
		c.client = h
	}
	c.tmpl = *(&http.Request{}).WithContext(s.ctx)
	c.resp.c = c
	c.resp.hdr = http.Header{}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c
}

func (c *conn) forget() {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
}

func (c *conn) close() {
	c.forget()
	c.nc.Close()
}

func (c *conn) serve() {
	c.br = bufio.NewReaderSize(c.nc, leanBuffer)
	c.bw = bufio.NewWriterSize(deadlineWriter{c}, leanBuffer)
	for {
		hd, v := c.readHead()
		switch v {
		case incomplete: // read error or timeout
			c.close()
			return
		case decline:
			c.handOver()
			return
		case refuse:
			c.refuse(hd.code, hd.reason)
			c.close()
			return
		}
		c.serveRequest(&hd)
		if c.broken || hd.close || c.resp.closeAfter || c.s.shutdown.Load() {
			c.close()
			return
		}
	}
}

// readHead waits for and parses the next request head. incomplete means
// the connection is done (closed, timed out, shutting down).
func (c *conn) readHead() (head, verdict) {
	lim := &c.s.lim
	if c.br.Buffered() == 0 {
		c.idle.Store(true)
		if c.s.shutdown.Load() {
			return head{}, incomplete
		}
		c.extendRead(lim.IdleTimeout)
		_, err := c.br.Peek(1)
		c.idle.Store(false)
		if err != nil {
			return head{}, incomplete
		}
	}
	headerDeadline := false
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		hd, v := parseHead(buf, len(buf) >= leanBuffer, c.hdr, &c.slab, c.s.lim.MaxHeaderCount)
		if v != incomplete {
			if v == decline && lim.MaxHeaderBytes > 0 && len(buf) >= leanBuffer && lim.MaxHeaderBytes < leanBuffer {
				return head{code: http.StatusRequestHeaderFieldsTooLarge, reason: "request head too large"}, refuse
			}
			return hd, v
		}
		if !headerDeadline && lim.ReadHeaderTimeout > 0 {
			// The head is arriving in pieces: from now on it has
			// ReadHeaderTimeout to complete.
			headerDeadline = true
			c.rdl = time.Now().Add(lim.ReadHeaderTimeout)
			c.nc.SetReadDeadline(c.rdl)
		}
		// A response held for the pipelined request whose head is still
		// arriving goes out first: the client may wait for it.
		if !c.flushHeld() {
			return head{}, incomplete
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			return head{}, incomplete
		}
	}
}

// flushHeld sends what the writer holds (finish leaves pipelined responses
// to the last one's flush, and the request after them may still be
// arriving); false when that fails (the connection is done).
func (c *conn) flushHeld() bool {
	if c.bw.Buffered() > 0 {
		if err := c.bw.Flush(); err != nil {
			c.broken = true
			return false
		}
	}
	return true
}

// extendRead makes the read deadline at least 3/4 of d away (d <= 0: none).
func (c *conn) extendRead(d time.Duration) {
	if d <= 0 {
		if !c.rdl.IsZero() {
			c.rdl = time.Time{}
			c.nc.SetReadDeadline(c.rdl)
		}
		return
	}
	if now := time.Now(); c.rdl.IsZero() || c.rdl.Sub(now) < d*3/4 || c.rdl.Sub(now) > d {
		c.rdl = now.Add(d)
		c.nc.SetReadDeadline(c.rdl)
	}
}

// extendWrite is extendRead for the write deadline.
func (c *conn) extendWrite(d time.Duration) {
	if d <= 0 {
		return
	}
	if now := time.Now(); c.wdl.IsZero() || c.wdl.Sub(now) < d*3/4 {
		c.wdl = now.Add(d)
		c.nc.SetWriteDeadline(c.wdl)
	}
}

// deadlineWriter writes to the connection under the write timeout.
type deadlineWriter struct{ c *conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.c.extendWrite(w.c.s.lim.WriteTimeout)
	return w.c.nc.Write(p)
}

// handOver gives the connection, with the bytes still buffered, to net/http.
func (c *conn) handOver() {
	c.forget()
	if err := c.bw.Flush(); err != nil { // a pipelined lean response
		c.nc.Close()
		return
	}
	c.nc.SetDeadline(time.Time{})
	if !c.s.handed.put(&handedConn{Conn: withWriteTimeout(c.nc, c.s.lim.WriteTimeout), r: c.br}) {
		c.nc.Close()
	}
}

// refuse answers a request the lean parser refused and closes.
func (c *conn) refuse(code int, reason string) {
	c.extendWrite(c.s.lim.WriteTimeout)
	msg := "slipway edge: " + reason + "\n"
	io.WriteString(c.bw, "HTTP/1.1 ")
	c.bw.WriteString(statusLine(code))
	c.bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ")
	c.bw.Write(appendInt(c.bw.AvailableBuffer(), int64(len(msg))))
	c.bw.WriteString("\r\n\r\n")
	c.bw.WriteString(msg)
	c.bw.Flush()
}

func (c *conn) serveRequest(hd *head) {
	c.br.Discard(hd.n)
	req := &c.req
	*req = c.tmpl
	c.url = url.URL{Path: hd.path, RawQuery: hd.query, ForceQuery: hd.forceQuery}
	req.Method = hd.method
	req.URL = &c.url
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	req.Header = c.hdr
	req.Host = hd.host
	req.RemoteAddr = c.remote
	req.RequestURI = hd.target
	req.Close = hd.close
	req.ContentLength = hd.contentLength
	if hd.contentLength > 0 {
		c.body = body{c: c, n: hd.contentLength}
		req.Body = &c.body
	} else {
		req.Body = http.NoBody
	}
	c.resp.reset(req)
	c.runHandler(req)
	if c.broken {
		return
	}
	if err := c.resp.finish(); err != nil {
		c.broken = true
		return
	}
	if hd.contentLength > 0 && c.body.n > 0 {
		// Drain a small unread body so the connection can carry the next
		// request; a large one closes it.
		if c.body.n > 256<<10 || c.body.err != nil {
			c.broken = true
		} else if _, err := io.Copy(io.Discard, &c.body); err != nil {
			c.broken = true
		}
	}
}

func (c *conn) runHandler(req *http.Request) {
	defer func() {
		if r := recover(); r != nil {
			c.broken = true
			if r != http.ErrAbortHandler {
				c.s.log.Error("handler panic", "panic", r, "stack", string(debug.Stack()))
			}
			if !c.resp.headWritten && !c.resp.wroteHeader {
				c.resp.hdr = http.Header{}
				c.resp.closeAfter = true
				c.resp.WriteHeader(http.StatusInternalServerError)
				c.resp.finish()
			} else {
				c.bw.Flush()
			}
		}
	}()
	c.s.handler.ServeHTTP(&c.resp, req)
}

// body is a request body of known length on the connection's reader.
type body struct {
	c   *conn
	n   int64 // bytes left
	err error
}

func (b *body) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	if b.c.br.Buffered() == 0 {
		b.c.extendRead(b.c.s.lim.ReadBodyTimeout)
	}
	n, err := b.c.br.Read(p)
	b.n -= int64(n)
	if b.n == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *body) Close() error { return nil }

// handedConn is a connection handed to net/http with what the lean path
// already read still in r.
type handedConn struct {
	net.Conn
	r *bufio.Reader
}

func (h *handedConn) Read(p []byte) (int, error) {
	if h.r != nil {
		if h.r.Buffered() > 0 {
			return h.r.Read(p)
		}
		h.r = nil
	}
	return h.Conn.Read(p)
}

// connQueue is a net.Listener whose connections are those the lean path
// hands over.
type connQueue struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) close() { q.closed.Do(func() { close(q.done) }) }

func (q *connQueue) Close() error   { q.close(); return nil }
func (q *connQueue) Addr() net.Addr { return &net.TCPAddr{} }

// withWriteTimeout bounds each write on nc, a connection net/http serves,
// by d (d <= 0: nc as it is): net/http's own WriteTimeout bounds a whole
// response instead, which would cut long downloads and streams. The
// deadline is moved lazily, as on the lean path, and the connection keeps
// it after a Hijack (an upgraded connection's writes are bounded too).
func withWriteTimeout(nc net.Conn, d time.Duration) net.Conn {
	if d <= 0 {
		return nc
	}
	return &writeTimeoutConn{Conn: nc, d: d}
}

// writeTimeoutConn is a connection whose writes may each block at most d.
type writeTimeoutConn struct {
	net.Conn
	d time.Duration
	// dl is the write deadline set on Conn, in Unix nanoseconds (0: none
	// yet); atomic, since a hijacked or HTTP/2 connection may be written
	// from more than one goroutine.
	dl atomic.Int64
}

func (c *writeTimeoutConn) Write(p []byte) (int, error) {
	now := time.Now()
	if dl := c.dl.Load(); dl == 0 || time.Duration(dl-now.UnixNano()) < c.d*3/4 {
		next := now.Add(c.d)
		c.dl.Store(next.UnixNano())
		c.Conn.SetWriteDeadline(next)
	}
	return c.Conn.Write(p)
}

// SetDeadline and SetWriteDeadline pass through; the next write then sets
// the deadline d from then again, so an explicit write deadline does not
// outlive the write that follows it.
func (c *writeTimeoutConn) SetDeadline(t time.Time) error {
	c.dl.Store(0)
	return c.Conn.SetDeadline(t)
}

func (c *writeTimeoutConn) SetWriteDeadline(t time.Time) error {
	c.dl.Store(0)
	return c.Conn.SetWriteDeadline(t)
}

// writeTimeoutListener hands out its connections under withWriteTimeout.
type writeTimeoutListener struct {
	net.Listener
	d time.Duration
}

func (l writeTimeoutListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return withWriteTimeout(nc, l.d), nil
}
