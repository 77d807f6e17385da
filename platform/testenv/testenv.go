// Package testenv starts the real components Slipway's tests run against
// (a Consul dev agent, the project's own binaries) on free loopback ports, and
// stops them when the test ends, also when it fails.
package testenv

import (
	"errors"
	"fmt"
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
