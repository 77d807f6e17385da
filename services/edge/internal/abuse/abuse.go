// Package abuse is the edge's corpus of request-smuggling and abuse cases:
// raw bytes a client sends on one connection and the answer each data plane
// (the built-in proxy, nginx mode) must give, plus the harness that checks
// an edge against it with a backend recording what reaches it. Used by the
// proxy's and the nginx mode's table tests and as fuzz seeds.
package abuse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Want is the answer to a case: the statuses of the responses the client
// reads, in order; whether the edge must then close the connection; and the
// requests that reach the backend ("METHOD target body"), in order.
type Want struct {
	Statuses []int
	Closed   bool
	Backend  []string
}

// Case is one abusive or ambiguous request.
type Case struct {
	Name string
	Raw  string
	// Proxy and Nginx are the answers of each mode; Nginx nil means the
	// same as Proxy.
	Proxy Want
	Nginx *Want
}

// Host is the route the cases address.
const Host = "w"

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: w\r\n\r\n"

var bigValue = strings.Repeat("a", 40<<10)

func manyFields(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "X-F%d: v\r\n", i)
	}
	return b.String()
}

// Cases is the corpus.
var Cases = []Case{
	{Name: "plain keep-alive GET", Raw: "GET /a HTTP/1.1\r\nHost: w\r\n\r\n",
		Proxy: Want{Statuses: []int{200}, Backend: []string{"GET /a "}}},
	{Name: "CL+TE", Raw: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: w\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "TE+CL", Raw: "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\nHost: w\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "duplicate Content-Length, different", Raw: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: w\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "duplicate Content-Length, same", Raw: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "Content-Length with sign", Raw: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: +3\r\n\r\nabc",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "obs-fold", Raw: "GET / HTTP/1.1\r\nHost: w\r\nX-A: a\r\n b\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "obs-fold hiding Transfer-Encoding", Raw: "POST / HTTP/1.1\r\nHost: w\r\nContent-Length: 3\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\nabc",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "bare LF", Raw: "GET /lf HTTP/1.1\nHost: w\n\n",
		Proxy: Want{Statuses: []int{200}, Backend: []string{"GET /lf "}}},
	{Name: "invalid chunk size", Raw: "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "chunk size overflow", Raw: "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "valid chunked body", Raw: "POST /c HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		Proxy: Want{Statuses: []int{200}, Backend: []string{"POST /c hello"}}},
	{Name: "oversized header", Raw: "GET / HTTP/1.1\r\nHost: w\r\nX-Big: " + bigValue + "\r\n\r\n",
		Proxy: Want{Statuses: []int{431}, Closed: true}, Nginx: &Want{Statuses: []int{400}, Closed: true}},
	{Name: "too many header fields", Raw: "GET / HTTP/1.1\r\nHost: w\r\n" + manyFields(150) + "\r\n",
		Proxy: Want{Statuses: []int{431}, Closed: true}, Nginx: &Want{Statuses: []int{200}, Backend: []string{"GET / "}}},
	{Name: "NUL in a value", Raw: "GET / HTTP/1.1\r\nHost: w\r\nX-A: a\x00b\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "space before colon", Raw: "GET / HTTP/1.1\r\nHost: w\r\nContent-Length : 5\r\n\r\nhello",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "no Host", Raw: "GET / HTTP/1.1\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "two Hosts", Raw: "GET / HTTP/1.1\r\nHost: w\r\nHost: other\r\n\r\n",
		Proxy: Want{Statuses: []int{400}, Closed: true}},
	{Name: "absolute-form", Raw: "GET http://w/abs HTTP/1.1\r\nHost: other\r\n\r\n",
		Proxy: Want{Statuses: []int{200}, Backend: []string{"GET /abs "}}},
	{Name: "HTTP/1.0 keep-alive", Raw: "GET /1 HTTP/1.0\r\nHost: w\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nHost: w\r\n\r\n",
		Proxy: Want{Statuses: []int{200, 200}, Closed: true, Backend: []string{"GET /1 ", "GET /2 "}}},
	{Name: "HTTP/1.0 closes", Raw: "GET /1 HTTP/1.0\r\nHost: w\r\n\r\nGET /2 HTTP/1.0\r\nHost: w\r\n\r\n",
		Proxy: Want{Statuses: []int{200}, Closed: true, Backend: []string{"GET /1 "}}},
	{Name: "pipelining", Raw: "GET /a HTTP/1.1\r\nHost: w\r\n\r\nPOST /b HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
		Proxy: Want{Statuses: []int{200, 200, 200}, Closed: true, Backend: []string{"GET /a ", "POST /b hello", "GET /c "}}},
	{Name: "request in a body stays body", Raw: "POST /p HTTP/1.1\r\nHost: w\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled,
		Proxy: Want{Statuses: []int{200}, Backend: []string{"POST /p " + smuggled}}},
	{Name: "unknown Transfer-Encoding", Raw: "POST / HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		Proxy: Want{Statuses: []int{501}, Closed: true}},
}

// Backend is a raw HTTP/1.1 backend recording each request it reads.
type Backend struct {
	Addr string
	mu   sync.Mutex
	got  []string
	open map[net.Conn]bool
}

// StartBackend starts a Backend; it stops when the test ends.
func StartBackend(t testing.TB) *Backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Addr: lis.Addr().String(), open: map[net.Conn]bool{}}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		lis.Close()
		b.mu.Lock()
		for c := range b.open {
			c.Close()
		}
		b.mu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			b.mu.Lock()
			b.open[c] = true
			b.mu.Unlock()
			go func() {
				defer conns.Done()
				defer func() {
					b.mu.Lock()
					delete(b.open, c)
					b.mu.Unlock()
					c.Close()
				}()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, err := io.ReadAll(req.Body)
					if err != nil {
						return
					}
					b.mu.Lock()
					b.got = append(b.got, req.Method+" "+req.RequestURI+" "+string(body))
					b.mu.Unlock()
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return b
}

// Take returns and forgets the requests recorded so far.
func (b *Backend) Take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	got := b.got
	b.got = nil
	return got
}

// Check sends c's bytes to the edge at addr and returns how its answer
// differs from want (nil: as wanted). The backend's record is taken.
func Check(addr string, b *Backend, c Case, want Want) error {
	b.Take()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, c.Raw); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	var got []int
	for range want.Statuses {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("statuses %v, then %v; want %v", got, err, want.Statuses)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	if fmt.Sprint(got) != fmt.Sprint(want.Statuses) {
		return fmt.Errorf("statuses %v, want %v", got, want.Statuses)
	}
	if want.Closed {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		rest, err := io.ReadAll(br)
		if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			return fmt.Errorf("connection not closed after the answer: %v", err)
		}
		if len(bytes.TrimSpace(rest)) > 0 {
			return fmt.Errorf("more after the answer: %q", rest)
		}
	}
	if g := b.Take(); fmt.Sprintf("%q", g) != fmt.Sprintf("%q", want.Backend) {
		return fmt.Errorf("backend received %q, want %q", g, want.Backend)
	}
	return nil
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}
