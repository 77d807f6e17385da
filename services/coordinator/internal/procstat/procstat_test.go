package procstat

import (
	"os"
	"testing"
)

func TestSelf(t *testing.T) {
	// Burn some CPU so the counter is past zero ticks.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i
	}
	_ = x
	cpu, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Fatalf("CPU of this process = %v, want > 0", cpu)
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
