package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other test process of this project has been handed.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ports, err := freePorts(1)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return ports[0]
}

// FreeAddr returns "127.0.0.1:<free port>".
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
}

// Ports are drawn below the kernel's ephemeral range (32768 and up on
// Linux), so an outgoing connection can never take one between the moment it
// is picked and the moment the component binds it.
const (
	portLow  = 20000
	portHigh = 32000
)

// FreePorts returns n distinct TCP (and UDP) ports on 127.0.0.1 that were
// free a moment ago, for programs such as benchmarks that have no testing.TB.
func FreePorts(n int) ([]int, error) { return freePorts(n) }

func freePorts(n int) ([]int, error) {
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 2000 {
			return nil, fmt.Errorf("testenv: no free port in %d-%d", portLow, portHigh)
		}
		// Consul's serf ports are UDP too, hence the UDP probe.
		if p := portLow + rand.IntN(portHigh-portLow); reservePort(p) && probe(p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// FreePortBlock returns the first of n consecutive TCP ports on 127.0.0.1,
// all free a moment ago and reserved like FreePort's, for programs that
// derive ports from a base (a coordinator's raft port is its gRPC port + 1).
func FreePortBlock(tb testing.TB, n int) int {
	tb.Helper()
	for tries := 0; tries < 2000; tries++ {
		p := portLow + rand.IntN(portHigh-portLow-n)
		ok := true
		for q := p; q < p+n && ok; q++ {
			ok = reservePort(q) && probe(q)
		}
		if ok {
			return p
		}
	}
	tb.Fatalf("testenv: no %d consecutive free ports in %d-%d", n, portLow, portHigh)
	return 0
}

// probe reports whether port p can be bound on 127.0.0.1 (TCP and UDP).
func probe(p int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// Test packages run as parallel processes, and a port that is free when
// one of them probes it may be bound by another before the component it was
// picked for starts. So every port handed out is reserved for the life of
// the process that received it: an exclusive flock on a file named after
// the port, which the kernel drops when the process ends, however it ends.
// A port is never handed out twice, in one process or across processes.
// The files of ended processes are removed by the next process to reserve.
var ports struct {
	sync.Mutex
	swept bool
	held  map[int]*os.File // open for the life of the process: the lock
}

// sweepPorts removes the reservation files nobody holds. A file is removed
// only under its own lock, and a reserver checks that the file it locked is
// still the one at the path, so removal cannot hand a port out twice.
func sweepPorts(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.Remove(path)
		}
		f.Close()
	}
}

// reservePort reports whether this process now holds port p, which no
// other process holds and which this one has not handed out before.
func reservePort(p int) bool {
	ports.Lock()
	defer ports.Unlock()
	if _, ok := ports.held[p]; ok {
		return false
	}
	dir := filepath.Join(os.TempDir(), "slipway-test-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return true // no shared directory: fall back to the bind probe alone
	}
	if !ports.swept {
		ports.swept = true
		sweepPorts(dir)
	}
	path := filepath.Join(dir, strconv.Itoa(p))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return !errors.Is(err, syscall.EWOULDBLOCK)
	}
	// A sweeper may have removed the file between open and lock: then the
	// lock guards nothing, and another process may hold the new file.
	locked, err1 := f.Stat()
	current, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(locked, current) {
		f.Close()
		return false
	}
	if ports.held == nil {
		ports.held = map[int]*os.File{}
	}
	ports.held[p] = f
	return true
}
