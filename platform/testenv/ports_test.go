package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestPortsNotSharedAcrossProcesses: a port this process was handed is
// refused to another process (a child running this test binary), and a
// port reserved by an ended process is free again and its file swept.
func TestPortsNotSharedAcrossProcesses(t *testing.T) {
	if os.Getenv("TESTENV_PORT_CHILD") != "" {
		p, _ := strconv.Atoi(os.Getenv("TESTENV_PORT_CHILD"))
		if reservePort(p) {
			os.Exit(3) // got a port the parent holds
		}
		return
	}
	p := FreePort(t)
	if reservePort(p) {
		t.Fatalf("port %d handed out twice in one process", p)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPortsNotSharedAcrossProcesses$")
	cmd.Env = append(os.Environ(), "TESTENV_PORT_CHILD="+strconv.Itoa(p))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child reserved port %d held by this process: %v\n%s", p, err, out)
	}
	// A reservation file left by an ended process is swept away.
	dir := filepath.Join(os.TempDir(), "slipway-test-ports")
	stale := filepath.Join(dir, "1")
	if err := os.WriteFile(stale, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sweepPorts(dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("unheld reservation file not swept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, strconv.Itoa(p))); err != nil {
		t.Fatalf("held reservation swept: %v", err)
	}
}

// TestFreePortBlock: the ports of a block are consecutive, bindable and
// never handed out again.
func TestFreePortBlock(t *testing.T) {
	p := FreePortBlock(t, 3)
	for q := p; q < p+3; q++ {
		if !probe(q) {
			t.Fatalf("port %d of the block is not free", q)
		}
		if reservePort(q) {
			t.Fatalf("port %d of the block handed out again", q)
		}
	}
}
