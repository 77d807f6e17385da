package process

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestExecutable(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "slipway_demo_v2")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain_file_v1"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Executable(dir, "slipway/demo:v2")
	if err != nil || got != exe {
		t.Errorf("Executable(slipway/demo:v2) = %q, %v; want %q", got, err, exe)
	}
	for _, bad := range []string{"", "slipway/demo:v9", "../slipway_demo_v2", "plain/file:v1"} {
		if _, err := Executable(dir, bad); !errors.Is(err, ErrNoExecutable) {
			t.Errorf("Executable(%q) = %v, want ErrNoExecutable", bad, err)
		}
	}
}
