package proxy

import (
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// The lean path forwards the common request (bodyless GET, HEAD, OPTIONS or
// TRACE, no upgrade, no Expect, no TE, a plain query) without
// httputil.ReverseProxy, whose per-request request clone, trace context,
// Rewrite hook and Content-Type parsing dominate the proxy's own CPU. It
// follows ReverseProxy's rules: hop-by-hop headers (and those named by
// Connection) are dropped both ways, client-supplied Forwarded and
// X-Forwarded-* are replaced by X-Forwarded-For/Host/Proto, no default
// User-Agent is added, 1xx responses are relayed, trailers are passed on,
// streamed bodies (unknown length, text/event-stream) are flushed as they
// arrive, and a failed body copy aborts the response. Everything else goes
// through ReverseProxy.

// hopHeaders are the hop-by-hop headers ReverseProxy removes.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// leanPath reports whether forward can carry req.
func leanPath(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	if req.ContentLength != 0 || (req.Body != nil && req.Body != http.NoBody) {
		return false
	}
	h := req.Header
	if len(h["Upgrade"]) > 0 || len(h["Expect"]) > 0 || len(h["Te"]) > 0 {
		return false
	}
	// ReverseProxy drops query parameters that do not parse; only queries
	// without ';' or '%' are certain to parse.
	return !strings.ContainsAny(req.URL.RawQuery, ";%")
}

var emptyValue = []string{""}

// forward proxies req (leanPath is true) through st's retrier.
func (p *Proxy) forward(w http.ResponseWriter, in *http.Request, st *state) {
	h := make(http.Header, len(in.Header)+3)
	for k, vv := range in.Header {
		switch k {
		case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		h[k] = vv
	}
	removeHopByHop(h, in.Header["Connection"])
	xf := make([]string, 3)
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		xf[0] = ip
		h["X-Forwarded-For"] = xf[0:1:1]
	}
	xf[1] = in.Host
	h["X-Forwarded-Host"] = xf[1:2:2]
	xf[2] = "http"
	if in.TLS != nil {
		xf[2] = "https"
	}
	h["X-Forwarded-Proto"] = xf[2:3:3]
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = emptyValue
	}

	st.out = *in // keeps in's context
	out := &st.out
	st.url = *in.URL
	st.url.Scheme = "http"
	out.URL = &st.url
	out.Header = h
	out.Body = nil
	out.ContentLength = 0
	out.Close = false
	out.RequestURI = ""
	out.Trailer = nil
	out.Form, out.PostForm, out.MultipartForm = nil, nil, nil

	done := false
	st.rt.got1xx = func(code int, hdr http.Header) {
		if done {
			return
		}
		wh := w.Header()
		for k, vv := range hdr {
			wh[k] = append(wh[k], vv...)
		}
		w.WriteHeader(code)
		clear(wh)
	}
	res, err := st.rt.RoundTrip(out)
	done = true
	if err != nil {
		p.proxyError(w, out, err)
		return
	}
	removeHopByHop(res.Header, res.Header["Connection"])
	wh := w.Header()
	for k, vv := range res.Header {
		wh[k] = append(wh[k], vv...)
	}
	if len(res.Trailer) > 0 {
		keys := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		wh.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	if err := copyBody(w, res); err != nil {
		res.Body.Close()
		panic(http.ErrAbortHandler)
	}
	res.Body.Close() // populates res.Trailer
	if len(res.Trailer) > 0 {
		http.NewResponseController(w).Flush()
		for k, vv := range res.Trailer {
			wh[http.TrailerPrefix+k] = vv
		}
	}
}

// removeHopByHop deletes the hop-by-hop headers and those listed in conn
// (the Connection header's values, read before deletion) from h.
func removeHopByHop(h http.Header, conn []string) {
	for _, f := range conn {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// copyBody copies res's body to w, flushing after each write when the body
// is a stream (unknown length or server-sent events).
func copyBody(w http.ResponseWriter, res *http.Response) error {
	if res.Body == http.NoBody {
		return nil
	}
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	flush := res.ContentLength < 0
	if !flush {
		if ct := res.Header.Get("Content-Type"); strings.Contains(ct, "event-stream") {
			base, _, _ := mime.ParseMediaType(ct)
			flush = base == "text/event-stream"
		}
	}
	rc := http.NewResponseController(w)
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
