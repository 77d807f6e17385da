package h1server

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// guard applies the request-level limits on both paths: body size, header
// count (net/http's path; the lean parser counts itself) and requests in
// flight per client address.
type guard struct {
	lim Limits

	mu       sync.Mutex
	inFlight map[string]int
}

func newGuard(lim Limits) *guard { return &guard{lim: lim, inFlight: map[string]int{}} }

// wrap guards the lean path's requests.
func (g *guard) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.lim.MaxBodyBytes > 0 && r.ContentLength > g.lim.MaxBodyBytes {
			refuseRequest(w, http.StatusRequestEntityTooLarge, "request body larger than the edge's limit")
			return
		}
		if !g.enter(r.RemoteAddr) {
			refuseRequest(w, http.StatusTooManyRequests, "too many requests in flight from this client")
			return
		}
		defer g.leave(r.RemoteAddr)
		h.ServeHTTP(w, r)
	})
}

// wrapStd guards net/http's requests, which can also have bodies of
// unknown length and heads the lean parser did not count.
func (g *guard) wrapStd(h http.Handler, lim Limits) http.Handler {
	inner := g.wrap(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lim.MaxHeaderCount > 0 {
			n := 0
			for _, vv := range r.Header {
				n += len(vv)
			}
			if n > lim.MaxHeaderCount {
				w.Header().Set("Connection", "close")
				refuseRequest(w, http.StatusRequestHeaderFieldsTooLarge, "too many header fields")
				return
			}
		}
		if r.Body != nil && r.Body != http.NoBody {
			if lim.MaxBodyBytes > 0 {
				r.Body = http.MaxBytesReader(w, r.Body, lim.MaxBodyBytes)
			}
			if lim.ReadBodyTimeout > 0 {
				r.Body = &stdDeadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: lim.ReadBodyTimeout}
			}
		}
		inner.ServeHTTP(w, r)
	})
}

func (g *guard) enter(remote string) bool {
	if g.lim.MaxRequestsPerClient <= 0 {
		return true
	}
	ip := clientOf(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.inFlight[ip]
	if n >= g.lim.MaxRequestsPerClient {
		return false
	}
	g.inFlight[ip] = n + 1
	return true
}

func (g *guard) leave(remote string) {
	if g.lim.MaxRequestsPerClient <= 0 {
		return
	}
	ip := clientOf(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.inFlight[ip]; n <= 1 {
		delete(g.inFlight, ip)
	} else {
		g.inFlight[ip] = n - 1
	}
}

// clientOf is the address of remote without its port, without allocating.
func clientOf(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i >= 0 {
		return strings.TrimSuffix(strings.TrimPrefix(remote[:i], "["), "]")
	}
	return remote
}

func refuseRequest(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Connection", "close")
	http.Error(w, "slipway edge: "+msg, code)
}

// stdDeadlineBody moves net/http's read deadline before each body read, so
// a body must keep arriving (ReadBodyTimeout between reads).
type stdDeadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	d    time.Duration
	last time.Time
}

func (b *stdDeadlineBody) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(b.last) > b.d/4 {
		b.last = now
		b.rc.SetReadDeadline(now.Add(b.d))
	}
	return b.ReadCloser.Read(p)
}
