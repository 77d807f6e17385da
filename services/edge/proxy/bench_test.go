package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"slipway.dev/edge/internal/h1server"
	"slipway.dev/edge/routetable"
)

// BenchmarkProxy measures one keep-alive request through the proxy to a
// loopback backend (go test -bench Proxy ./proxy).
func BenchmarkProxy(b *testing.B) {
	be := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	bl, _ := net.Listen("tcp", "127.0.0.1:0")
	go be.Serve(bl)
	defer be.Close()
	p := New(Config{})
	p.Apply(context.Background(), routetable.Table{Routes: map[string]routetable.Route{"web": {Service: "web", Host: "w", Path: "/",
		Backends: []routetable.Backend{{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{{ID: "a", Address: bl.Addr().String()}}}}}}})
	srv := NewServer(p, true, h1server.Limits{}, nil)
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(pl)
	defer srv.Close()
	url := "http://" + pl.Addr().String() + "/"
	b.RunParallel(func(pb *testing.PB) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Host = "w"
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkProxyServer measures the proxy's own cost per request: the real
// server and handler between a raw keep-alive client and a raw backend that
// answer with fixed bytes, so allocs/op and a CPU profile
// (-cpuprofile) are the proxy's. The request and response are shaped like
// wrk's and the demo backend's. cpu-ns/op is the process's CPU time
// (getrusage, user+system) per request: the proxy's, the client's and the
// backend's together, the figure to compare between variants on a machine
// whose other load moves wall time.
func BenchmarkProxyServer(b *testing.B) {
	for _, c := range []struct {
		name      string
		lean      bool
		accessLog bool
	}{{"lean", true, false}, {"nethttp", false, false}, {"lean-accesslog", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			benchProxyServer(b, Config{AccessLog: c.accessLog}, c.lean)
		})
	}
}

const rawBody = "Hello from v1 (blue) on host, request 1\n"

var rawResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\n" +
	"X-Slipway-Colour: blue\r\nX-Slipway-Version: v1\r\nContent-Length: " + strconv.Itoa(len(rawBody)) + "\r\n\r\n" + rawBody

// rawBackend serves rawResponse to every request head on every connection
// accepted from l until l is closed.
func rawBackend(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				if err := skipHead(br); err != nil {
					return
				}
				if _, err := io.WriteString(c, rawResponse); err != nil {
					return
				}
			}
		}()
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// skipHead reads up to and including the blank line ending a message head
// and returns the Content-Length it named (0 when none).
func skipHead(br *bufio.Reader) error {
	_, err := readHead(br)
	return err
}

func readHead(br *bufio.Reader) (int, error) {
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			return n, nil
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
}

func benchProxyServer(b *testing.B, cfg Config, lean bool) {
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer bl.Close()
	go rawBackend(bl)
	p := New(cfg)
	defer p.Close()
	p.Apply(context.Background(), routetable.Table{Routes: map[string]routetable.Route{"web": {Service: "web", Host: "web.test", Path: "/",
		Backends: []routetable.Backend{{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{{ID: "a", Address: bl.Addr().String()}}}}}}})
	srv := NewServer(p, lean, h1server.Limits{}, nil)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(pl)
	defer srv.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
	var mu sync.Mutex
	var failure error
	b.SetParallelism(16) // 32 clients on 2 cores, as wrk -c64 keeps the proxy busy
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", pl.Addr().String())
		if err != nil {
			mu.Lock()
			failure = err
			mu.Unlock()
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				mu.Lock()
				failure = err
				mu.Unlock()
				return
			}
			n, err := readHead(br)
			if err == nil && n != len(rawBody) {
				err = fmt.Errorf("response body of %d bytes, want %d", n, len(rawBody))
			}
			if err == nil {
				_, err = br.Discard(n)
			}
			if err != nil {
				mu.Lock()
				failure = err
				mu.Unlock()
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if failure != nil {
		b.Fatal(failure)
	}
}
