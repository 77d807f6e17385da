package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	t.Setenv("GOGC", "")
	prev := tuneGC()
	if got := debug.SetGCPercent(prev); got != defaultGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	tuneGC()
	if got := debug.SetGCPercent(prev); got != 150 {
		t.Fatalf("GOGC=150 in the environment: GC percent %d, want 150 kept", got)
	}
}
