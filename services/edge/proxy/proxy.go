// Package proxy is the edge's built-in HTTP reverse proxy: host and path
// routing, smooth weighted round robin across releases and instances, pins,
// retries, passive ejection and an atomically swapped route table.
//
// Hot path: bodyless GET/HEAD/OPTIONS/TRACE requests without upgrade are
// forwarded by forward (ReverseProxy's header rules without its per-request
// cost) over h1client, a pooled HTTP/1.1 client working on the handler's
// goroutine, with the request head written straight from the inbound header
// (writeLeanHead); every other request goes through httputil.ReverseProxy and
// http.Transport. Metric children are resolved when a table is compiled.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/edge/internal/h1client"
	"slipway.dev/edge/internal/h1server"
	"slipway.dev/edge/routetable"
)

// Config configures a Proxy.
type Config struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// AccessLog logs every request at info level.
	AccessLog bool
	// EjectFor is how long an instance that failed a connection is skipped
	// (default 5s).
	EjectFor time.Duration
	// MaxIdleConnsPerHost is the keep-alive pool size per upstream (default 256).
	MaxIdleConnsPerHost int
	// Signals, when set, is told every proxied response's release, status
	// and latency (the golden signals for canary analysis).
	Signals Observer
	// ConnectTimeout bounds dialling an upstream (default 2s).
	ConnectTimeout time.Duration
}

// Observer counts responses per release (see package signals).
type Observer interface {
	Observe(service string, release uint64, code int, took time.Duration)
}

// Proxy routes requests by the table last given to Apply. It is an
// http.Handler.
type Proxy struct {
	log       *slog.Logger
	accessLog bool
	ejectFor  time.Duration
	transport *http.Transport
	// h1 carries bodyless idempotent requests (see h1client.CanCarry).
	h1 *h1client.Transport
	// dial opens upstream connections for both transports.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// rp is the template of the per-request ReverseProxy whose Transport
	// is the request's retrier (see state).
	rp    httputil.ReverseProxy
	table atomic.Pointer[table]
	m     *metrics
	sig   Observer

	ejectMu sync.Mutex
	ejected map[string]time.Time // address -> until
	// nEjected mirrors len(ejected) so the hot path skips the lock when no
	// instance is ejected.
	nEjected atomic.Int64
	now      func() time.Time
}

// Interface guards.
var _ http.Handler = (*Proxy)(nil)

// New returns a proxy with an empty table.
func New(cfg Config) *Proxy {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EjectFor == 0 {
		cfg.EjectFor = 5 * time.Second
	}
	if cfg.MaxIdleConnsPerHost == 0 {
		cfg.MaxIdleConnsPerHost = 256
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 2 * time.Second
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	p := &Proxy{
		log:       cfg.Logger,
		accessLog: cfg.AccessLog,
		ejectFor:  cfg.EjectFor,
		ejected:   map[string]time.Time{},
		now:       time.Now,
		m:         newMetrics(cfg.Registerer),
		sig:       cfg.Signals,
		dial:      dialer.DialContext,
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) { return p.dial(ctx, network, addr) }
	p.transport = &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Pass Accept-Encoding through untouched: never ask upstreams
		// for gzip only to decompress it here.
		DisableCompression: true,
	}
	p.h1 = h1client.New(h1client.Config{Dial: dial, MaxIdlePerHost: cfg.MaxIdleConnsPerHost, HeaderTimeout: 60 * time.Second})
	p.table.Store(p.compile(routetable.Table{}))
	p.rp = httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		BufferPool:   bufferPool{},
		ErrorHandler: p.proxyError,
		ErrorLog:     slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return p
}

// Apply swaps in a new route table. Requests already in flight finish on the
// table they started with. It is in effect when Apply returns.
func (p *Proxy) Apply(_ context.Context, t routetable.Table) error {
	p.table.Store(p.compile(t))
	live := map[string]bool{}
	for _, r := range t.Routes {
		for _, b := range r.Backends {
			for _, u := range b.Upstreams {
				live[u.Address] = true
			}
		}
	}
	p.h1.KeepOnly(live)
	return nil
}

// Close releases idle upstream connections.
func (p *Proxy) Close() {
	p.transport.CloseIdleConnections()
	p.h1.CloseIdleConnections()
}

type table struct {
	routes []*route // longest path first within a host
	byHost map[string][]*route
}

type route struct {
	rt       routetable.Route
	backends []*backend
	weights  []int
	// only is the single backend with a positive weight, if there is
	// exactly one: smooth weighted round robin then always picks it, so the
	// lock is skipped.
	only *backend

	latency  prometheus.Observer
	retries  prometheus.Counter
	notFound prometheus.Counter // 503 with no backend

	mu      sync.Mutex
	current []int
}

type backend struct {
	release   uint64
	relLabel  string
	upstreams []routetable.Upstream
	next      atomic.Uint64

	// codes caches requests_total children of this route and release by
	// status code (copy on write), so the hot path does no label lookup.
	codes   atomic.Pointer[map[int]prometheus.Counter]
	codesMu sync.Mutex
	service string
	m       *metrics
}

// requests returns the requests_total counter for code.
func (b *backend) requests(code int) prometheus.Counter {
	if m := b.codes.Load(); m != nil {
		if c, ok := (*m)[code]; ok {
			return c
		}
	}
	b.codesMu.Lock()
	defer b.codesMu.Unlock()
	old := b.codes.Load()
	if old != nil {
		if c, ok := (*old)[code]; ok {
			return c
		}
	}
	m := make(map[int]prometheus.Counter, 1)
	if old != nil {
		maps.Copy(m, *old)
	}
	c := b.m.requests.WithLabelValues(b.service, b.relLabel, strconv.Itoa(code))
	m[code] = c
	b.codes.Store(&m)
	return c
}

func (p *Proxy) compile(t routetable.Table) *table {
	ct := &table{byHost: map[string][]*route{}}
	for _, svc := range t.Services() {
		r := t.Routes[svc]
		cr := &route{rt: r,
			latency:  p.m.latency.WithLabelValues(r.Service),
			retries:  p.m.retries.WithLabelValues(r.Service),
			notFound: p.m.requests.WithLabelValues(r.Service, "", "503"),
		}
		positive := 0
		for _, b := range r.Backends {
			cb := &backend{release: b.Release, relLabel: strconv.FormatUint(b.Release, 10), upstreams: b.Upstreams, service: r.Service, m: p.m}
			cr.backends = append(cr.backends, cb)
			cr.weights = append(cr.weights, b.Weight)
			if b.Weight > 0 {
				positive++
				cr.only = cb
			}
		}
		if positive != 1 {
			cr.only = nil
		}
		cr.current = make([]int, len(cr.weights))
		ct.byHost[r.Host] = append(ct.byHost[r.Host], cr)
	}
	for h, rs := range ct.byHost {
		slices.SortFunc(rs, func(a, b *route) int { return len(b.rt.Path) - len(a.rt.Path) })
		ct.byHost[h] = rs
	}
	return ct
}

func (t *table) match(host, path string) *route {
	// Only a host with a colon can carry a port (SplitHostPort's error for
	// one without allocates).
	if strings.IndexByte(host, ':') >= 0 {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	for _, r := range t.byHost[strings.ToLower(host)] {
		if pathMatch(r.rt.Path, path) {
			return r
		}
	}
	return nil
}

func pathMatch(prefix, path string) bool {
	if prefix == "/" || path == prefix {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

// noBucket is a pick without a sticky bucket.
const noBucket = -1

// pickBackend chooses the release for a request: a matching pin, else on
// a sticky route the release of its bucket (bucket, or the request's
// cookie, or a new random one: fresh), else smooth weighted round robin by
// intent weight. It returns the bucket used (noBucket when none).
func (r *route) pickBackend(req *http.Request, bucket int) (b *backend, used int, fresh bool) {
	if b := r.pinned(req); b != nil {
		return b, noBucket, false
	}
	if st := r.rt.Sticky; st != nil {
		if bucket == noBucket {
			if c, err := req.Cookie(st.Cookie); err == nil {
				if n, err := strconv.Atoi(c.Value); err == nil && n >= 0 && n < routetable.Buckets {
					bucket = n
				}
			}
		}
		if bucket == noBucket {
			bucket, fresh = rand.IntN(routetable.Buckets), true
		}
		if i := r.rt.Bucket(bucket); i >= 0 {
			return r.backends[i], bucket, fresh
		}
		return nil, noBucket, false
	}
	return r.weighted(), noBucket, false
}

// stickyCookie is the Set-Cookie value giving a client its bucket.
func (r *route) stickyCookie(bucket int) string {
	c := &http.Cookie{Name: r.rt.Sticky.Cookie, Value: strconv.Itoa(bucket), Path: r.rt.Path, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if r.rt.Sticky.MaxAge > 0 {
		c.MaxAge = int(r.rt.Sticky.MaxAge)
	}
	return c.String()
}

// pinned is the backend of the first pin the request matches, or nil.
func (r *route) pinned(req *http.Request) *backend {
	for _, pin := range r.rt.Pins {
		var v string
		var ok bool
		switch pin.Kind {
		case routetable.PinHeader:
			vs := req.Header.Values(pin.Name)
			if len(vs) > 0 {
				v, ok = vs[0], true
			}
		case routetable.PinCookie:
			if c, err := req.Cookie(pin.Name); err == nil {
				v, ok = c.Value, true
			}
		}
		if ok && (pin.Value == "" || pin.Value == v) {
			for _, b := range r.backends {
				if b.release == pin.Release {
					return b
				}
			}
		}
	}
	return nil
}

// weighted picks by smooth weighted round robin.
func (r *route) weighted() *backend {
	if r.only != nil {
		return r.only
	}
	r.mu.Lock()
	i := smoothWeighted(r.weights, r.current, nil)
	r.mu.Unlock()
	if i < 0 {
		return nil
	}
	return r.backends[i]
}

// state is one request's bookkeeping, allocated once: the pick, the status
// recorder and a ReverseProxy whose Transport carries the pick to the
// retrier (cheaper than a context value on a copied request).
type state struct {
	pick pick
	sw   statusWriter
	rt   retrier
	rp   httputil.ReverseProxy
	// out and url are the outbound request of the lean path (see forward),
	// ex holds its response.
	out http.Request
	url url.URL
	ex  h1client.Exchange
}

type pick struct {
	// table is the route table the pick was made from.
	table   *table
	route   *route
	backend *backend
	// bucket is the request's sticky bucket, noBucket without one.
	bucket int
	// host and path are the inbound request's, to pick again from a newer
	// table.
	host, path string
	// upstream is the instance of the last attempt.
	upstream string
	// attempts counts the instances tried.
	attempts int
}

// attemptBody carries a request body through one attempt. A transport
// closes the body even when it failed before reading any of it (a refused
// connection); then the client's body is left open for the next attempt.
type attemptBody struct {
	rc     io.ReadCloser
	read   atomic.Bool
	closed atomic.Bool
	// failed holds a read error of the client's body (malformed chunks, a
	// timeout, the size limit): the client's fault, not the upstream's.
	failed atomic.Pointer[error]
}

func (b *attemptBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	b.read.Store(true)
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.failed.Store(&err)
	}
	return n, err
}

// errClientBody marks a request that failed because the client's body
// could not be read.
var errClientBody = errors.New("reading the client's request body")

func (b *attemptBody) Close() error {
	b.closed.Store(true)
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	t := p.table.Load()
	r := t.match(req.Host, req.URL.Path)
	if r == nil {
		p.m.requests.WithLabelValues("", "", "404").Inc()
		http.Error(w, "slipway edge: no route for "+req.Host+req.URL.Path, http.StatusNotFound)
		return
	}
	b, bucket, fresh := r.pickBackend(req, noBucket)
	if b == nil || len(b.upstreams) == 0 {
		r.notFound.Inc()
		http.Error(w, "slipway edge: no backend for "+r.rt.Service, http.StatusServiceUnavailable)
		return
	}
	st := &state{pick: pick{table: t, route: r, backend: b, bucket: bucket, host: req.Host, path: req.URL.Path}, sw: statusWriter{ResponseWriter: w, code: http.StatusOK}}
	if fresh {
		// Added with the final response head, not now: relaying a 1xx
		// (100 Continue, 103) clears the response header afterwards, and
		// would take the cookie with it.
		st.sw.cookie = r.stickyCookie(bucket)
	}
	pk, sw := &st.pick, &st.sw
	st.rt = retrier{p: p, pk: pk}
	if leanPath(req) {
		p.forward(sw, req, st)
	} else {
		st.rp = p.rp
		st.rp.Transport = &st.rt
		st.rp.ServeHTTP(sw, req)
	}
	took := time.Since(start)
	b = pk.backend // the retrier may have picked again from a newer table
	b.requests(sw.code).Inc()
	if p.sig != nil {
		p.sig.Observe(r.rt.Service, b.release, sw.code, took)
	}
	r.latency.Observe(took.Seconds())
	if p.accessLog && p.log.Enabled(req.Context(), slog.LevelInfo) {
		p.log.LogAttrs(req.Context(), slog.LevelInfo, "access", slog.String("service", r.rt.Service), slog.Uint64("release", b.release),
			slog.String("upstream", pk.upstream), slog.String("method", req.Method), slog.String("host", req.Host),
			slog.String("path", req.URL.Path), slog.Int("status", sw.code), slog.Duration("took", took), slog.String("remote", req.RemoteAddr))
	}
}

func (p *Proxy) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	code := http.StatusBadGateway
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, context.Canceled):
		code = 499
	case errors.As(err, &tooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, errClientBody):
		code = http.StatusBadRequest
		w.Header().Set("Connection", "close")
	}
	p.log.Warn("upstream request failed", "host", req.Host, "path", req.URL.Path, "err", err)
	w.WriteHeader(code)
}

// retrier sends a request to an instance of the chosen release and, when the
// connection fails, marks the instance ejected and retries idempotent
// requests (and any request that never reached the instance) on another.
type retrier struct {
	p  *Proxy
	pk *pick
	// w receives a lean-path request's 1xx responses until the final
	// response (see relay1xx).
	w         http.ResponseWriter
	finalSeen bool
	// lean marks a lean-path request (see forward): its Header is the
	// inbound one, written by writeLeanHead over h1Transport, and its
	// response lives in ex.
	lean bool
	ex   *h1client.Exchange
}

func (rt *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	pk := rt.pk
	if pk == nil {
		return nil, errors.New("proxy: request without a route")
	}
	var lastErr error
	// A request picked from an older table whose connection fails is picked
	// again from the newest one (at most twice): the edge may have applied
	// and acknowledged routes without the chosen instance while this request
	// was on its way, and the node agent stops such an instance as soon as
	// every edge has acknowledged. The request never reached it, so any
	// method may go elsewhere.
	for repick := 0; ; repick++ {
		resp, retry, err := rt.tryBackend(req, pk)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if !retry || repick == 2 || !rt.repick(req, pk) {
			break
		}
		pk.route.retries.Inc()
	}
	return nil, fmt.Errorf("proxy: %s release %d: %w", pk.route.rt.Service, pk.backend.release, lastErr)
}

// repick moves pk to the newest table when it is not the one pk was made
// from; false when there is nothing newer or nothing to pick there.
func (rt *retrier) repick(req *http.Request, pk *pick) bool {
	t := rt.p.table.Load()
	if t == pk.table {
		return false
	}
	r := t.match(pk.host, pk.path)
	if r == nil {
		return false
	}
	b, _, _ := r.pickBackend(req, pk.bucket) // the client keeps its bucket
	if b == nil || len(b.upstreams) == 0 {
		return false
	}
	pk.table, pk.route, pk.backend = t, r, b
	return true
}

// tryBackend sends req to instances of pk's backend, moving to another
// instance after a connection failure (any request) or another transport
// error (idempotent requests). retry reports that every attempt failed to
// connect, so the request may go to another backend.
func (rt *retrier) tryBackend(req *http.Request, pk *pick) (resp *http.Response, retry bool, err error) {
	b := pk.backend
	n := len(b.upstreams)
	var tried0 [8]bool
	tried := tried0[:0]
	if n <= len(tried0) {
		tried = tried0[:n]
	} else {
		tried = make([]bool, n)
	}
	attempts := min(n, 3)
	for a := 0; a < attempts; a++ {
		start := int(b.next.Add(1)-1) % n
		i := -1
		if n == 1 && a == 0 {
			i = 0 // the only instance is tried even when ejected
		} else {
			i = roundRobin(n, start, func(i int) bool { return tried[i] || rt.p.isEjected(b.upstreams[i].Address) })
			if i < 0 {
				i = roundRobin(n, start, func(i int) bool { return tried[i] })
			}
		}
		if i < 0 {
			break
		}
		tried[i] = true
		u := b.upstreams[i]
		out := req
		var body *attemptBody
		if req.Body != nil && req.Body != http.NoBody {
			// req keeps the client's body; each attempt gets its own wrapper.
			body = &attemptBody{rc: req.Body}
			out = req.Clone(req.Context())
			out.Body = body
		} else if a > 0 || pk.attempts > 0 {
			out = req.Clone(req.Context())
		}
		pk.attempts++
		out.URL.Host = u.Address
		pk.upstream = u.ID
		if rt.lean {
			resp, err = rt.p.h1.Do(out, rt.ex, rt.relay1xx, writeLeanHead)
		} else if h1client.CanCarry(out) {
			resp, err = rt.p.h1.RoundTrip(out)
		} else {
			resp, err = rt.p.transport.RoundTrip(out)
		}
		if err == nil {
			return resp, false, nil
		}
		if req.Context().Err() != nil {
			return nil, false, err
		}
		dialErr := isDialError(err)
		if dialErr {
			rt.p.eject(u, pk.route.rt.Service)
		}
		if body != nil {
			if ferr := body.failed.Load(); ferr != nil {
				return nil, false, fmt.Errorf("%w: %w", errClientBody, *ferr)
			}
		}
		if body != nil && body.read.Load() {
			return nil, false, err // part of the body is gone: nothing to send again
		}
		if !dialErr && !idempotent(req) {
			return nil, false, err
		}
		retry = dialErr
		if a+1 < attempts {
			pk.route.retries.Inc()
		}
	}
	return nil, retry, err
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (p *Proxy) isEjected(addr string) bool {
	if p.nEjected.Load() == 0 {
		return false
	}
	p.ejectMu.Lock()
	defer p.ejectMu.Unlock()
	until, ok := p.ejected[addr]
	if ok && p.now().After(until) {
		delete(p.ejected, addr)
		p.nEjected.Store(int64(len(p.ejected)))
		return false
	}
	return ok
}

func (p *Proxy) eject(u routetable.Upstream, service string) {
	p.ejectMu.Lock()
	p.ejected[u.Address] = p.now().Add(p.ejectFor)
	p.nEjected.Store(int64(len(p.ejected)))
	p.ejectMu.Unlock()
	p.m.ejections.WithLabelValues(service).Inc()
	p.log.Warn("instance ejected after connection failure", "service", service, "instance", u.ID, "address", u.Address, "for", p.ejectFor)
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// statusWriter records the final status code and adds the edge's own
// response field (a sticky cookie) to the final response head: a 1xx
// relayed before it (ReverseProxy's and relay1xx both clear the header
// after writing one) cannot drop it.
type statusWriter struct {
	http.ResponseWriter
	code int
	done bool
	// cookie, when not empty, is a Set-Cookie value for the final response.
	cookie string
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.done && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.code, s.done = code, true
		s.addCookie()
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.done {
		s.done = true
		s.addCookie() // an implicit 200
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) addCookie() {
	if s.cookie != "" {
		s.ResponseWriter.Header().Add("Set-Cookie", s.cookie)
		s.cookie = ""
	}
}

// Unwrap lets http.ResponseController reach Hijack and Flush.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	ejections *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "edge", Name: "requests_total",
			Help: "Requests proxied, by service, release and status code."}, []string{"service", "release", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "slipway", Subsystem: "edge", Name: "request_seconds",
			Help: "Request latency through the edge, by service.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"service"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "edge", Name: "retries_total",
			Help: "Requests retried on another instance after a connection failure."}, []string{"service"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "edge", Name: "ejections_total",
			Help: "Instances passively ejected after a connection failure."}, []string{"service"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.retries, m.ejections)
	}
	return m
}

// NewServer returns the server for h: HTTP/1.1 on the lean path (unless
// lean is false), net/http for everything else (HTTP/1.0, h2c, upgrades),
// both under lim.
func NewServer(h http.Handler, lean bool, lim h1server.Limits, log *slog.Logger) *h1server.Server {
	return h1server.New(h1server.Config{Handler: h, Lean: lean, Limits: lim, Logger: log})
}
