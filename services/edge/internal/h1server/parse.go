package h1server

import (
	"bytes"
	"net/http"
	"net/textproto"

	"golang.org/x/net/http/httpguts"

	"slipway.dev/edge/internal/httpsyntax"
)

// verdict is the lean parser's answer for the bytes buffered so far.
type verdict int

const (
	// incomplete: no end of head yet; read more.
	incomplete verdict = iota
	// accept: a common request the lean path serves; head holds it.
	accept
	// decline: anything else; net/http reads the same bytes and decides.
	decline
	// refuse: a request refused outright (smuggling risk or a limit), with
	// head.code; the connection is closed after the answer.
	refuse
)

// head is a parsed request head. Its strings slice one copy of the head.
type head struct {
	method, target string
	path, query    string
	forceQuery     bool
	host           string
	contentLength  int64
	close          bool
	n              int // bytes of the head, blank line included
	code           int // refuse's status
	reason         string
}

// parseHead parses a request head at the start of buf into h (cleared
// first), taking value slices from *slab. It accepts only a strict subset of
// what net/http accepts, read the way net/http reads it:
//
//   - request line METHOD SP origin-form SP HTTP/1.1, every line ending in
//     CRLF, method one of GET HEAD POST PUT PATCH DELETE OPTIONS, a target
//     of plain bytes (no '%' in the path, no '#');
//   - fields name ":" OWS value OWS with net/http's name and value rules,
//     exactly one valid Host, at most one Content-Length of digits,
//     Connection only keep-alive or close (an empty Host is declined);
//   - no Transfer-Encoding, Upgrade, Expect, Trailer, Pragma or
//     HTTP2-Settings.
//
// Anything else is declined (net/http then reads the same bytes), except
// what is refused as a smuggling risk or over a limit: Content-Length with
// Transfer-Encoding, Content-Length twice, obs-fold (400), more than
// maxFields fields (431). full tells that buf cannot grow: a head not ended
// in it is declined (net/http applies its own size limit).
func parseHead(buf []byte, full bool, h http.Header, slab *[]string, maxFields int) (hd head, v verdict) {
	// Find the end of the head; every LF must follow a CR.
	end := -1
	lines := 0
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			if full {
				return hd, decline
			}
			return hd, incomplete
		}
		j += i
		if j == 0 || buf[j-1] != '\r' {
			return hd, decline // bare LF: net/http's reading of it
		}
		if j == i+1 && i > 0 {
			end = j + 1
			break
		}
		if i == 0 && j == 1 {
			return hd, decline // leading empty line (net/http skips it)
		}
		lines++
		i = j + 1
	}
	if lines-1 > maxFields {
		return head{code: http.StatusRequestHeaderFieldsTooLarge, reason: "too many header fields"}, refuse
	}
	s := string(buf[:end])
	hd.n = end
	// Request line.
	nl := bytes.IndexByte(buf, '\n')
	line := s[:nl-1]
	sp := indexByte(line, ' ')
	if sp < 0 {
		return hd, decline
	}
	hd.method = line[:sp]
	switch hd.method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
	default:
		return hd, decline
	}
	rest := line[sp+1:]
	sp = indexByte(rest, ' ')
	if sp < 0 || rest[sp+1:] != "HTTP/1.1" {
		return hd, decline
	}
	hd.target = rest[:sp]
	if !plainTarget(hd.target) {
		return hd, decline
	}
	hd.path, hd.query = hd.target, ""
	if q := indexByte(hd.target, '?'); q >= 0 {
		hd.path, hd.query = hd.target[:q], hd.target[q+1:]
		hd.forceQuery = hd.query == ""
	}
	// Fields.
	clear(h)
	n := lines - 1
	if cap(*slab) < n {
		*slab = make([]string, n)
	}
	vals := (*slab)[:n]
	hosts, cls := 0, 0
	te := false
	hd.contentLength = 0
	rest = s[nl+1 : end-2]
	for rest != "" {
		e := indexByte(rest, '\r')
		if rest[e+1] != '\n' {
			return hd, decline // a CR alone inside a line
		}
		kv := rest[:e]
		rest = rest[e+2:]
		if kv[0] == ' ' || kv[0] == '\t' {
			return head{code: http.StatusBadRequest, reason: "obsolete line folding"}, refuse
		}
		c := indexByte(kv, ':')
		if c <= 0 {
			return hd, decline
		}
		k, v := kv[:c], trimOWS(kv[c+1:])
		if !httpsyntax.ValidFieldName(k) || !httpsyntax.ValidFieldValue(v) {
			return hd, decline
		}
		if !httpsyntax.IsCanonicalKey(k) {
			k = textproto.CanonicalMIMEHeaderKey(k)
		}
		switch k {
		case "Host":
			hosts++
			hd.host = v
		case "Content-Length":
			cls++
			if v == "" || len(v) > 18 {
				return hd, decline
			}
			var l int64
			for i := 0; i < len(v); i++ {
				if v[i] < '0' || v[i] > '9' {
					return hd, decline
				}
				l = l*10 + int64(v[i]-'0')
			}
			hd.contentLength = l
		case "Transfer-Encoding":
			te = true
		case "Connection":
			switch {
			case httpsyntax.EqualFoldASCII(v, "close"):
				hd.close = true
			case httpsyntax.EqualFoldASCII(v, "keep-alive"):
			default:
				return hd, decline
			}
		case "Upgrade", "Expect", "Trailer", "Pragma", "Http2-Settings":
			return hd, decline
		}
		if vv := h[k]; vv == nil {
			vals[0] = v
			h[k], vals = vals[:1:1], vals[1:]
		} else {
			h[k] = append(vv, v)
		}
	}
	if cls > 1 {
		return head{code: http.StatusBadRequest, reason: "more than one Content-Length"}, refuse
	}
	if te {
		if cls > 0 {
			return head{code: http.StatusBadRequest, reason: "both Content-Length and Transfer-Encoding"}, refuse
		}
		return hd, decline
	}
	if hosts != 1 || hd.host == "" || !httpguts.ValidHostHeader(hd.host) {
		return hd, decline
	}
	delete(h, "Host") // net/http keeps it in Request.Host only
	return hd, accept
}

// plainTarget reports whether t is an origin-form target whose path
// url.ParseRequestURI leaves as it is (no escapes) and whose query has only
// printable bytes.
func plainTarget(t string) bool {
	if t == "" || t[0] != '/' {
		return false
	}
	inQuery := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '?':
			inQuery = true
		case c == '%':
			if !inQuery {
				return false
			}
		default:
			switch c {
			case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/':
			default:
				return false
			}
		}
	}
	return true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
