package faults

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// This kernel has no sch_netem (tc qdisc ... netem fails with "Specified
// qdisc kind is unknown"), so latency is added in user space: a delaying TCP
// proxy per destination, in the test process on the bridge's address, and
// in each source host a DNAT rule sending its connections to that
// destination's ports through the proxy. Every chunk read is written out on
// the other side once it has waited delay, in order, both ways, like a
// link that delays every packet (without netem's jitter or reordering).

// delayProxy forwards every connection it accepts to target, each chunk
// held for delay, in both directions.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// startDelayProxy listens on listen (host:0 for a free port) and forwards to
// target with delay each way.
func startDelayProxy(listen, target string, delay time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, target: target, delay: delay, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	return p, nil
}

// addr is the proxy's listening address.
func (p *delayProxy) addr() string { return p.ln.Addr().String() }

func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *delayProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			return
		}
		p.wg.Go(func() {
			out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil || !p.track(out) {
				in.Close()
				return
			}
			var pair sync.WaitGroup
			pair.Go(func() { p.pipe(out, in) })
			pair.Go(func() { p.pipe(in, out) })
			pair.Wait()
			in.Close()
			out.Close()
		})
	}
}

// chunk is data read at a time, due on the other side at due.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, each chunk delayed; when either side ends, both
// are closed.
func (p *delayProxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 4096)
	var w sync.WaitGroup
	w.Go(func() {
		t := time.NewTimer(0)
		defer t.Stop()
		for c := range q {
			if d := time.Until(c.due); d > 0 {
				t.Reset(d)
				<-t.C
			}
			if _, err := dst.Write(c.data); err != nil {
				src.Close()
				for range q { // drain what the reader still sends
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	})
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.delay)}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			break
		}
	}
	close(q)
	w.Wait()
}

// close stops accepting and closes every proxied connection.
func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// delayed routes h's new TCP connections to dst's ports through proxies (one
// per port, made by proxy) and resets h's established connections to them,
// so that every connection from h to dst on those ports is delayed.
func (h *host) delayed(dst *host, ports []string, proxy func(port string) (*delayProxy, error)) error {
	for _, port := range ports {
		p, err := proxy(port)
		if err != nil {
			return err
		}
		if err := sh(h.inNS("iptables", "-t", "nat", "-A", "OUTPUT", "-d", dst.ip, "-p", "tcp", "--dport", port,
			"-j", "DNAT", "--to-destination", p.addr(), "-m", "comment", "--comment", "swf-delay")...); err != nil {
			return err
		}
		// Connections made before bypass the DNAT (conntrack): reset
		// them, so that raft and gRPC reconnect through the proxy. The
		// proxied ones go to the bridge's address and do not match.
		if err := sh(h.inNS("iptables", "-A", "OUTPUT", "-d", dst.ip, "-p", "tcp", "--dport", port,
			"-j", "REJECT", "--reject-with", "tcp-reset", "-m", "comment", "--comment", "swf-delay")...); err != nil {
			return err
		}
	}
	return nil
}

// undelay removes h's delay rules (heal removes the filter rules too).
func (h *host) undelay() error {
	return errors.Join(sh(h.inNS("iptables", "-t", "nat", "-F", "OUTPUT")...), h.heal())
}

// TestDelayProxy: what goes through the proxy arrives intact, in order,
// and no sooner than the delay each way; closing it ends its connections.
func TestDelayProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }() // echo
		}
	}()
	const delay = 50 * time.Millisecond
	p, err := startDelayProxy("127.0.0.1:0", ln.Addr().String(), delay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	c, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("0123456789"), 10000) // several chunks
	start := time.Now()
	go func() { _, _ = c.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 2*delay {
		t.Errorf("round trip took %s, want at least %s", rtt, 2*delay)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo through the proxy differs from what was sent")
	}
	p.close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the proxy closed")
	}
}
