package h1server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"slipway.dev/edge/internal/httpsyntax"
)

// bufferBeforeChunking is how much of a body of unknown length is held
// before the head is written: a body that ends within it is sent with a
// Content-Length, a longer one chunked (net/http holds 2 KiB).
const bufferBeforeChunking = 4096

// response is the lean path's http.ResponseWriter, one per connection,
// reset for each request. It supports Flush (and FlushError); not Hijack:
// upgrades never take the lean path.
type response struct {
	c    *conn
	hdr  http.Header
	req  *http.Request
	code int
	// wroteHeader: the final status is chosen; headWritten: the head is in
	// the connection's writer.
	wroteHeader, headWritten bool
	chunked                  bool
	bodyless                 bool  // HEAD, 204, 304
	length                   int64 // declared Content-Length, -1 unknown
	written                  int64
	held                     []byte // body held before the head (unknown length)
	closeAfter               bool
	err                      error
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
)

func (r *response) reset(req *http.Request) {
	clear(r.hdr)
	r.req = req
	r.code = 0
	r.wroteHeader, r.headWritten, r.chunked, r.bodyless = false, false, false, false
	r.length, r.written = -1, 0
	r.held = r.held[:0]
	r.closeAfter = false
	r.err = nil
}

func (r *response) Header() http.Header { return r.hdr }

func (r *response) WriteHeader(code int) {
	if r.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h1server: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		r.writeInformational(code)
		return
	}
	r.wroteHeader = true
	r.code = code
	r.bodyless = r.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	if cl := r.hdr["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			r.length = n
		} else {
			delete(r.hdr, "Content-Length")
		}
	} else if len(cl) > 1 {
		delete(r.hdr, "Content-Length")
	}
	if v := r.hdr["Connection"]; len(v) > 0 && httpsyntax.EqualFoldASCII(v[0], "close") {
		r.closeAfter = true
	}
	if _, ok := r.hdr["Trailer"]; ok && !r.bodyless && r.length < 0 {
		r.chunked = true // trailers need chunking: write the head now
		r.writeHead()
	}
}

// writeInformational sends a 1xx response with the header as it is now.
func (r *response) writeInformational(code int) {
	bw := r.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(code))
	bw.WriteString("\r\n")
	r.writeFields(false)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		r.err = err
	}
}

// writeHead puts the status line and fields into the writer.
func (r *response) writeHead() {
	r.headWritten = true
	bw := r.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(r.code))
	bw.WriteString("\r\n")
	r.writeFields(true)
	if _, ok := r.hdr["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	switch {
	case r.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case r.length < 0 && r.code != http.StatusNoContent && r.code != http.StatusNotModified && r.code >= 200 &&
		(r.req.Method != http.MethodHead || len(r.held) > 0):
		bw.WriteString("Content-Length: ")
		bw.Write(appendInt(bw.AvailableBuffer(), int64(len(r.held))))
		bw.WriteString("\r\n")
		r.length = int64(len(r.held))
	}
	if r.closeAfter || r.req.Close || r.c.s.shutdown.Load() {
		if _, ok := r.hdr["Connection"]; !ok {
			bw.WriteString("Connection: close\r\n")
		}
		r.closeAfter = true
	}
	bw.WriteString("\r\n")
}

// writeFields writes the header fields (final: skipping framing fields the
// writer decides itself), as Header.Write does: invalid names skipped, line
// breaks in values turned to spaces.
func (r *response) writeFields(final bool) {
	bw := r.c.bw
	for k, vv := range r.hdr {
		if !httpsyntax.ValidFieldName(k) || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if final && (k == "Transfer-Encoding" || (k == "Content-Length" && (r.chunked || r.length < 0))) {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(strings.TrimSpace(v))
			bw.WriteString("\r\n")
		}
	}
}

func (r *response) Write(p []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.bodyless {
		if r.code == http.StatusNoContent || r.code == http.StatusNotModified {
			return 0, http.ErrBodyNotAllowed
		}
		return len(p), nil // HEAD
	}
	if r.length >= 0 {
		if r.written+int64(len(p)) > r.length {
			return 0, http.ErrContentLength
		}
		if !r.headWritten {
			r.writeHead()
		}
		r.written += int64(len(p))
		n, err := r.c.bw.Write(p)
		r.err = err
		return n, err
	}
	if !r.headWritten {
		if len(r.held)+len(p) <= bufferBeforeChunking {
			r.held = append(r.held, p...)
			return len(p), nil
		}
		r.chunked = true
		r.writeHead()
		if err := r.writeChunk(r.held); err != nil {
			return 0, err
		}
		r.held = r.held[:0]
	}
	if err := r.writeChunk(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (r *response) writeChunk(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	bw := r.c.bw
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
	bw.WriteString("\r\n")
	bw.Write(p)
	_, err := bw.WriteString("\r\n")
	r.written += int64(len(p))
	r.err = err
	return err
}

// Flush sends what is written so far.
func (r *response) Flush() { r.FlushError() }

// FlushError sends what is written so far (http.ResponseController uses it).
func (r *response) FlushError() error {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if !r.headWritten {
		if r.length < 0 && !r.bodyless {
			r.chunked = true
		}
		r.writeHead()
		if r.chunked {
			r.writeChunk(r.held)
			r.held = r.held[:0]
		}
	}
	if r.err != nil {
		return r.err
	}
	r.err = r.c.bw.Flush()
	return r.err
}

// finish ends the response: head and held body, the last chunk and
// trailers, then a flush when no further request is already buffered
// (pipelined responses share one write).
func (r *response) finish() error {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if !r.headWritten {
		r.writeHead()
		if len(r.held) > 0 && !r.bodyless {
			r.c.bw.Write(r.held)
			r.written = int64(len(r.held))
		}
	}
	if r.chunked {
		bw := r.c.bw
		bw.WriteString("0\r\n")
		// Declared trailers (net/http's convention: their values are
		// set under their own names once the body is written) ...
		for _, k := range r.hdr["Trailer"] {
			for name := range strings.SplitSeq(k, ",") {
				name = http.CanonicalHeaderKey(strings.TrimSpace(name))
				for _, v := range r.hdr[name] {
					writeTrailer(bw, name, v)
				}
			}
		}
		// ... and undeclared ones under TrailerPrefix.
		for k, vv := range r.hdr {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vv {
					writeTrailer(bw, name, v)
				}
			}
		}
		bw.WriteString("\r\n")
	}
	if r.err != nil {
		return r.err
	}
	if !r.bodyless && r.length >= 0 && r.written != r.length {
		r.c.bw.Flush()
		return errShortBody
	}
	if r.c.br.Buffered() > 0 && !r.closeAfter {
		return nil // the next pipelined response flushes both
	}
	r.err = r.c.bw.Flush()
	return r.err
}

var errShortBody = errors.New("h1server: handler wrote less than its Content-Length")

func writeTrailer(bw interface{ WriteString(string) (int, error) }, k, v string) {
	if !httpsyntax.ValidFieldName(k) {
		return
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(strings.TrimSpace(strings.NewReplacer("\r", " ", "\n", " ").Replace(v)))
	bw.WriteString("\r\n")
}

// statusLine returns "code text" for code.
func statusLine(code int) string {
	if code >= 100 && code < 600 {
		if s := statusLines[code].Load(); s != nil {
			return *s
		}
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	s := strconv.Itoa(code) + " " + text
	if code >= 100 && code < 600 {
		statusLines[code].Store(&s)
	}
	return s
}

var statusLines [600]atomic.Pointer[string]

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// httpDate returns the current time in IMF-fixdate, formatted once a
// second.
func httpDate() string {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.unix == now {
		return d.s
	}
	d := &dateCache{unix: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.s
}

type dateCache struct {
	unix int64
	s    string
}

var cachedDate atomic.Pointer[dateCache]
