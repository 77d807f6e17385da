package proxy

import (
	"bufio"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"strings"

	"slipway.dev/edge/internal/httpsyntax"
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

// forward proxies req (leanPath is true) through st's retrier. The outbound
// request shares in's header: writeLeanHead applies ReverseProxy's header
// rules while writing it, so no header map is copied.
func (p *Proxy) forward(w http.ResponseWriter, in *http.Request, st *state) {
	out := st.leanRequest(in)
	st.rt.lean = true
	wh := w.Header()
	// The common response's fields are parsed straight into the client's
	// response header (still empty here), its values in st.ex.
	st.ex.Header = wh
	st.rt.ex = &st.ex

	st.rt.w = w
	res, err := st.rt.RoundTrip(out)
	st.rt.finalSeen = true
	if err != nil {
		p.proxyError(w, out, err)
		return
	}
	removeHopByHop(res.Header, res.Header["Connection"])
	if !st.ex.Direct() {
		for k, vv := range res.Header {
			if len(wh[k]) == 0 {
				wh[k] = vv // res.Header is not used again
			} else {
				wh[k] = append(wh[k], vv...)
			}
		}
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

// relay1xx writes a 1xx response of the upstream to the client, until the
// final response arrived.
func (rt *retrier) relay1xx(code int, hdr http.Header) {
	if rt.finalSeen {
		return
	}
	wh := rt.w.Header()
	for k, vv := range hdr {
		wh[k] = append(wh[k], vv...)
	}
	rt.w.WriteHeader(code)
	clear(wh)
}

// leanRequest makes st.out the outbound request for in: in's context and
// header (writeLeanHead filters it), scheme http, no body.
func (st *state) leanRequest(in *http.Request) *http.Request {
	st.out = *in
	out := &st.out
	st.url = *in.URL
	st.url.Scheme = "http"
	out.URL = &st.url
	out.Body = nil
	out.ContentLength = 0
	out.Close = false
	out.RequestURI = ""
	out.Trailer = nil
	out.Form, out.PostForm, out.MultipartForm = nil, nil, nil
	return out
}

// writeLeanHead writes the head of req, a lean-path outbound request whose
// Header is still the inbound one, as req.Write would write the request
// ReverseProxy makes of it: hop-by-hop headers and those named by Connection
// dropped, Forwarded and X-Forwarded-* replaced by X-Forwarded-For, -Host and
// -Proto, the first User-Agent only (none when absent or empty), values with
// line breaks turned to spaces and trimmed, invalid field names skipped.
// Fields are not sorted. A host that req.Write would rewrite (non-ASCII,
// zone, invalid bytes) or an opaque URL is left to req.Write itself.
func writeLeanHead(bw *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if req.URL.Opaque != "" || !plainHost(host) {
		return leanOutbound(req).Write(bw)
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	query := req.URL.ForceQuery || req.URL.RawQuery != ""
	if httpsyntax.HasCTL(path) || (query && httpsyntax.HasCTL(req.URL.RawQuery)) {
		return errors.New("net/http: can't write control character in Request.URL")
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if query {
		bw.WriteByte('?')
		bw.WriteString(req.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	h := req.Header
	if ua := h["User-Agent"]; len(ua) > 0 {
		if v := cleanValue(ua[0]); v != "" {
			writeField(bw, "User-Agent", v)
		}
	}
	conn := h["Connection"]
	for k, vv := range h {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer",
			"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
			"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Upgrade":
			continue
		}
		if !httpsyntax.ValidFieldName(k) || (len(conn) > 0 && namedBy(conn, k)) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, cleanValue(v))
		}
	}
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		writeField(bw, "X-Forwarded-For", cleanValue(ip))
	}
	writeField(bw, "X-Forwarded-Host", cleanValue(req.Host))
	if req.TLS != nil {
		bw.WriteString("X-Forwarded-Proto: https\r\n\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: http\r\n\r\n")
	}
	return nil
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// leanOutbound returns the request ReverseProxy would send for req (a
// lean-path outbound request still carrying the inbound header), with a
// header of its own; writeLeanHead's fallback.
func leanOutbound(req *http.Request) *http.Request {
	h := make(http.Header, len(req.Header)+3)
	for k, vv := range req.Header {
		switch k {
		case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		h[k] = vv
	}
	removeHopByHop(h, req.Header["Connection"])
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		h["X-Forwarded-For"] = []string{ip}
	}
	h["X-Forwarded-Host"] = []string{req.Host}
	h["X-Forwarded-Proto"] = []string{"http"}
	if req.TLS != nil {
		h["X-Forwarded-Proto"] = []string{"https"}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = emptyValue
	}
	out := *req
	out.Header = h
	return &out
}

// plainHost reports whether host has only bytes that req.Write sends
// unchanged (no punycode, zone or invalid byte to deal with).
func plainHost(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// cleanValue is what Header.Write does to a value: line breaks become
// spaces, surrounding whitespace is trimmed.
func cleanValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		b := []byte(v)
		for i, c := range b {
			if c == '\r' || c == '\n' {
				b[i] = ' '
			}
		}
		v = string(b)
	}
	return textproto.TrimString(v)
}

// namedBy reports whether the canonical header key k is among the
// comma-separated names of conn (Connection values), as Header.Del of each
// name would find it.
func namedBy(conn []string, k string) bool {
	for _, f := range conn {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); httpsyntax.EqualFoldASCII(sf, k) && httpsyntax.ValidFieldName(sf) {
				return true
			}
		}
	}
	return false
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
