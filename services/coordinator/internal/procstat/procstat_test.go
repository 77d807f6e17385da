package procstat

import (
	"os"
	"testing"
	"time"
)

// sink keeps the CPU burn below from being optimised away.
var sink uint64

func TestSelf(t *testing.T) {
	// Burn CPU until the kernel has counted at least one tick (10ms) of
	// it, within a bound: CPU must see it.
	var cpu float64
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		for i := range uint64(5_000_000) {
			sink += i * i
		}
		if cpu, err = CPU(os.Getpid()); err != nil || cpu > 0 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Fatalf("CPU of this process = %v after burning CPU, want > 0", cpu)
	}
	rss, hwm, err := Mem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 || hwm < rss {
		t.Fatalf("rss %d, hwm %d: want 0 < rss <= hwm", rss, hwm)
	}
	if _, err := CPU(-1); err == nil {
		t.Fatal("CPU(-1) succeeded")
	}
}
