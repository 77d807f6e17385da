// Package testenv starts the real components Slipway's tests run against
// (a Consul dev agent, the project's own binaries) on free loopback ports, and
// stops them when the test ends, also when it fails.
package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
)

// RepoRoot returns the repository's top directory (the one holding go.work).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if ok {
		dir := filepath.Dir(file)
		for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
				return d
			}
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	for d := wd; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
	}
	tb.Fatalf("testenv: no go.work above %s", wd)
	return ""
}

// BinDir is where `make build` and `make tools` put binaries: $SLIPWAY_BIN
// or <repo>/bin.
func BinDir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("SLIPWAY_BIN"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(tb), "bin")
}

// Binary returns the path of a tool installed by `make tools` (consul, buf,
// grpcurl), failing the test with the remedy when it is missing.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(BinDir(tb), name)
	if _, err := os.Stat(p); err != nil {
		if lp, lerr := exec.LookPath(name); lerr == nil {
			return lp
		}
		tb.Fatalf("testenv: %s not found in %s: run 'make tools'", name, BinDir(tb))
	}
	return p
}

// BuildBinary builds the Go main package pkg (an import path or a path
// relative to the repo root, e.g. "./services/edge/cmd/slipway-edge") into a
// temporary directory and returns the executable's path. Built once per test
// binary and package. The directory belongs to this test process; the next
// test process to build removes those of processes that have ended.
func BuildBinary(tb testing.TB, pkg string, ldflags ...string) string {
	tb.Helper()
	key := pkg + fmt.Sprint(ldflags)
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[key]; ok {
		return p
	}
	parent := filepath.Join(os.TempDir(), "slipway-test-bin")
	pruneEnded(parent)
	dir := filepath.Join(parent, strconv.Itoa(os.Getpid()), strconv.Itoa(len(built)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	args := []string{"build", "-o", out}
	if len(ldflags) > 0 {
		args = append(args, "-ldflags", joinSpace(ldflags))
	}
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot(tb)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("testenv: go build %s: %v\n%s", pkg, err, b)
	}
	built[key] = out
	return out
}

// pruneEnded removes the build directories of test processes that ended.
func pruneEnded(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

func joinSpace(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
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
// is picked and the moment the component binds it; tests running in
// parallel draw at random and are told apart by the bind check.
const (
	portLow  = 20000
	portHigh = 32000
)

// FreePorts returns n distinct TCP (and UDP) ports on 127.0.0.1 that were
// free a moment ago, for programs such as benchmarks that have no testing.TB.
func FreePorts(n int) ([]int, error) { return freePorts(n) }

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	seen := map[int]bool{}
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("testenv: no free port in 20000-32000")
		}
		p := portLow + rand.IntN(portHigh-portLow)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		// Consul's serf ports are UDP too.
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			l.Close()
			continue
		}
		u.Close()
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports, nil
}
