package process

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"slipway.dev/nodeagent/allocation"
)

// uids returns the Uid line of /proc/<pid>/status: real, effective, saved
// and filesystem uid.
func uids(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return nil
}

func TestChildNeverRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: checks that a root agent's children run as nobody")
	}
	nobody, err := user.Lookup(DefaultUser)
	if err != nil {
		t.Skipf("no user %s: %v", DefaultUser, err)
	}
	// t.TempDir's parent is 0700: nobody cannot reach an executable in it.
	dir := t.TempDir()
	exe := filepath.Join(dir, "slipway_sleeper_v1")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := New(dir, filepath.Join(t.TempDir(), "state"), "127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := allocation.Spec{ID: "sleeper-1", NodeID: "n1", Service: "sleeper", Release: 1, Image: "slipway/sleeper:v1", Port: 8080, MemoryMB: 64}
	if _, err := d.Start(context.Background(), s); !errors.Is(err, ErrNotRunnable) || !strings.Contains(err.Error(), "not searchable by user nobody") {
		t.Fatalf("Start with a 0700 process dir = %v, want ErrNotRunnable naming the directory and user", err)
	}
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(exe, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(context.Background(), s); !errors.Is(err, ErrNotRunnable) || !strings.Contains(err.Error(), "not readable and executable") {
		t.Fatalf("Start with a 0700 executable = %v, want ErrNotRunnable", err)
	}
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	// A symbolic link is followed: the directories of its target count too.
	hidden := t.TempDir()
	if err := os.Chmod(hidden, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(exe, filepath.Join(hidden, "sleeper")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(hidden, "sleeper"), exe); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(context.Background(), s); !errors.Is(err, ErrNotRunnable) || !strings.Contains(err.Error(), "directory "+hidden) {
		t.Fatalf("Start through a link into a 0700 directory = %v, want ErrNotRunnable naming %s", err, hidden)
	}
	for p := hidden; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inst, err := d.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(inst.ID)
	t.Cleanup(func() { _ = d.Stop(context.Background(), inst, time.Second) })
	got := uids(t, pid)
	for _, u := range got {
		if u != nobody.Uid {
			t.Fatalf("child Uid = %v, want all %s (nobody)", got, nobody.Uid)
		}
	}
	if uid, _, ok := d.User(); !ok || strconv.Itoa(int(uid)) != nobody.Uid {
		t.Errorf("User() = %d, %v; want %s", uid, ok, nobody.Uid)
	}
	if err := d.Stop(context.Background(), inst, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRootUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, u := range []string{"root", "0"} {
		if _, err := New(t.TempDir(), t.TempDir(), "127.0.0.1", nil, WithUser(u)); err == nil || !strings.Contains(err.Error(), "never run as root") {
			t.Errorf("New(WithUser(%q)) = %v, want refused", u, err)
		}
	}
	if _, err := New(t.TempDir(), t.TempDir(), "127.0.0.1", nil, WithUser("no-such-user-xyz")); err == nil {
		t.Error("an unknown user must be refused")
	}
}
