package h1server

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"testing"

	"golang.org/x/net/http/httpguts"

	"slipway.dev/edge/internal/abuse"
)

// FuzzParseHead is the differential target: for any bytes, parseHead's
// verdict is either decline or incomplete (net/http then reads the bytes
// itself), a refusal (always safe: nothing is forwarded), or accept - and
// then net/http's ReadRequest and its server's checks accept the same bytes
// as the same request: method, target, URL, Host, header, Close, framing
// (Content-Length and where the body starts).
func FuzzParseHead(f *testing.F) {
	for _, c := range abuse.Cases {
		f.Add([]byte(c.Raw))
	}
	for _, s := range []string{
		"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: w:8080\r\nUser-Agent: wrk\r\naccept: */*\r\nX-A: 1\r\nx-a:  2 \r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
		"GET /? HTTP/1.1\r\nHost: w\r\nConnection: Keep-Alive\r\nCookie: a=b\r\n\r\n",
		"DELETE //x;y HTTP/1.1\r\nHost: [::1]:80\r\nX-Obs: caf\xc3\xa9\r\nX-Empty:\r\n\r\n",
		"GET /%41 HTTP/1.1\r\nHost: w\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: w\r\nX: a\rb\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := http.Header{}
		var slab []string
		hd, v := parseHead(raw, true, h, &slab, 100)
		switch v {
		case incomplete:
			t.Fatalf("incomplete with full=true on %q", raw)
		case refuse:
			if hd.code < 400 {
				t.Fatalf("refused with %d on %q", hd.code, raw)
			}
			return
		case decline:
			return
		}
		r := bytes.NewReader(raw)
		br := bufio.NewReader(r)
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("accepted what net/http refuses (%v): %q", err, raw)
		}
		if msg := serverRefuses(req); msg != "" {
			t.Fatalf("accepted what net/http's server refuses (%s): %q", msg, raw)
		}
		if consumed := len(raw) - br.Buffered() - r.Len(); consumed != hd.n {
			t.Fatalf("head of %d bytes, net/http read %d: %q", hd.n, consumed, raw)
		}
		delete(req.Header, "Host")
		if req.Method != hd.method || req.RequestURI != hd.target || req.URL.Path != hd.path || req.URL.RawQuery != hd.query ||
			req.URL.ForceQuery != hd.forceQuery || req.URL.RawPath != "" || req.URL.Host != "" || req.URL.Scheme != "" ||
			req.Host != hd.host || req.Close != hd.close || req.ContentLength != hd.contentLength || req.ProtoMinor != 1 ||
			len(req.TransferEncoding) != 0 || !reflect.DeepEqual(req.Header, h) {
			t.Fatalf("differs from net/http on %q:\n got %s %q path %q query %q force %v host %q close %v len %d %v\nwant %s %q path %q query %q force %v host %q close %v len %d %v",
				raw, hd.method, hd.target, hd.path, hd.query, hd.forceQuery, hd.host, hd.close, hd.contentLength, h,
				req.Method, req.RequestURI, req.URL.Path, req.URL.RawQuery, req.URL.ForceQuery, req.Host, req.Close, req.ContentLength, req.Header)
		}
	})
}

// serverRefuses mirrors the checks net/http's server adds to ReadRequest
// (server.go, readRequest) for HTTP/1.1 requests. An empty Host field is
// taken as missing: parseHead declines it.
func serverRefuses(req *http.Request) string {
	// http.ReadRequest already moved the Host field to req.Host (and
	// refused two of them).
	if req.ProtoAtLeast(1, 1) && req.Host == "" {
		return "missing Host"
	}
	if !httpguts.ValidHostHeader(req.Host) {
		return "malformed Host"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "invalid header value"
			}
		}
	}
	return ""
}
