package h1client

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strings"

	"slipway.dev/edge/internal/httpsyntax"
)

// readSimpleResponse parses the common response to a GET without
// http.ReadResponse's per-field allocations: a complete head already
// buffered in br, HTTP/1.1, a status with a body (200-599 but 204 and 304),
// exactly one plain Content-Length, no Transfer-Encoding, Trailer or Pragma,
// no Connection but keep-alive, no folded line and only bytes ReadResponse
// accepts.
// The head becomes one string that the status and fields slice. ok is false,
// with br untouched (and ex.Header left empty), for anything else:
// ReadResponse then reads it. With ex the response lives there (see
// Exchange); its Body is simpleBodyMark when it has one.
func readSimpleResponse(br *bufio.Reader, req *http.Request, ex *Exchange) (resp *http.Response, ok bool) {
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
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') || httpsyntax.HasCTL(status) {
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
	var h http.Header
	var strs []string
	direct := false
	if ex != nil {
		ex.direct = false
		if ex.Header != nil && len(ex.Header) == 0 {
			h, direct = ex.Header, true
		}
		if n <= len(ex.strs) {
			strs = ex.strs[:n]
		}
	}
	if h == nil {
		h = make(http.Header, n)
	}
	if strs == nil {
		strs = make([]string, n)
	}
	// decline leaves a borrowed header map as it was given: empty.
	decline := func() (*http.Response, bool) {
		if direct {
			clear(h)
		}
		return nil, false
	}
	length := int64(-1)
	for rest != "" {
		var kv string
		kv, rest, _ = strings.Cut(rest, "\r\n")
		k, v, found := strings.Cut(kv, ":")
		if !found || !httpsyntax.ValidFieldName(k) {
			return decline()
		}
		v = strings.TrimRight(strings.TrimLeft(v, " \t"), " \t")
		for i := 0; i < len(v); i++ {
			if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
				return decline()
			}
		}
		if !httpsyntax.IsCanonicalKey(k) {
			k = textproto.CanonicalMIMEHeaderKey(k)
		}
		switch k {
		case "Transfer-Encoding", "Trailer", "Pragma":
			return decline()
		case "Connection":
			// Only the keep-alive that some servers send on every
			// response; close and anything else go to ReadResponse.
			if !httpsyntax.EqualFoldASCII(v, "keep-alive") {
				return decline()
			}
		case "Content-Length":
			if length >= 0 || v == "" || len(v) > 18 {
				return decline()
			}
			length = 0
			for i := 0; i < len(v); i++ {
				if v[i] < '0' || v[i] > '9' {
					return decline()
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
		return decline()
	}
	br.Discard(end + 4)
	if ex != nil {
		resp, ex.direct = &ex.resp, direct
	} else {
		resp = new(http.Response)
	}
	*resp = http.Response{Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: length, Request: req}
	if length == 0 {
		resp.Body = http.NoBody
	} else {
		resp.Body = simpleBodyMark
	}
	return resp, true
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	http11   = []byte("HTTP/1.1 ")
)
