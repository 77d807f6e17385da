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
	h := make(http.Header, n)
	strs := make([]string, n)
	length := int64(-1)
	for rest != "" {
		var kv string
		kv, rest, _ = strings.Cut(rest, "\r\n")
		k, v, found := strings.Cut(kv, ":")
		if !found || !httpsyntax.ValidFieldName(k) {
			return nil, false
		}
		v = strings.TrimRight(strings.TrimLeft(v, " \t"), " \t")
		for i := 0; i < len(v); i++ {
			if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
				return nil, false
			}
		}
		if !httpsyntax.IsCanonicalKey(k) {
			k = textproto.CanonicalMIMEHeaderKey(k)
		}
		switch k {
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil, false
		case "Connection":
			// Only the keep-alive that some servers send on every
			// response; close and anything else go to ReadResponse.
			if !httpsyntax.EqualFoldASCII(v, "keep-alive") {
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
