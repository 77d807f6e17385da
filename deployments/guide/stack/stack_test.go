package stack

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"slipway.dev/platform/testenv"
)

func TestPreflightNamesEveryProblem(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	free := freeTestPorts(t, 5)
	bin := t.TempDir()
	for _, b := range []string{"consul", "slipway-coordinator", "slipway-nodeagent", "slipway-edge"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	procDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(procDir, "slipway_demo_v1"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	policies := t.TempDir()
	for _, comp := range []string{"coordinator", "nodeagent"} {
		if err := os.WriteFile(filepath.Join(policies, comp+".hcl"), []byte("# policy\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		BinDir: bin, ProcessDir: procDir, Driver: DriverProcess, PolicyDir: policies,
		Images:     []string{"slipway/demo:v1", "slipway/demo:v9"},
		ConsulHTTP: free[0], Coordinator: free[1], Agent: free[2], EdgeGRPC: free[3], EdgeHTTP: busyPort,
	}
	err = Preflight(context.Background(), cfg)
	if !errors.Is(err, ErrPreflight) {
		t.Fatalf("err = %v, want ErrPreflight", err)
	}
	msg := err.Error()
	for _, want := range []string{
		filepath.Join(bin, "slipctl") + " is missing",
		"slipway_demo_v9 is missing",
		"edge.hcl is missing",
		"port " + strconv.Itoa(busyPort) + " (edge HTTP) is busy",
		"ss -ltnp 'sport = :" + strconv.Itoa(busyPort) + "'",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "slipway_demo_v1 is missing") || strings.Contains(msg, "slipway-edge is missing") {
		t.Errorf("error names something present:\n%s", msg)
	}
	if strings.Count(msg, "\n  - ") != 4 {
		t.Errorf("want exactly 4 problems:\n%s", msg)
	}

	// Everything fixed: no error.
	if err := os.WriteFile(filepath.Join(bin, "slipctl"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "edge.hcl"), []byte("# policy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Images = cfg.Images[:1]
	cfg.EdgeHTTP = free[4]
	if err := Preflight(context.Background(), cfg); err != nil {
		t.Fatalf("Preflight with everything in place: %v", err)
	}
}

// freeTestPorts returns n distinct free loopback ports, each followed by a
// free one (the coordinator's raft port is the next one), reserved so that
// no other test process takes them meanwhile.
func freeTestPorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = testenv.FreePortBlock(t, 2)
	}
	return ports
}
