package liveness

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// beat sends id a heartbeat every second in [from, to] and ticks after each,
// returning every change seen.
func beat(tr *Tracker, id string, from, to time.Duration) []Change {
	var out []Change
	for d := from; d <= to; d += time.Second {
		tr.Heartbeat(id, at(d))
		out = append(out, tr.Tick(at(d))...)
	}
	return out
}

func TestDownOnlyAfterTTL(t *testing.T) {
	tr := New(Config{TTL: 10 * time.Second, Settle: 3 * time.Second})
	if got := beat(tr, "n1", 0, 5*time.Second); !cmp.Equal(got, []Change{{Node: "n1", Up: true}}) {
		t.Fatalf("joining node: %v, want up after settle", got)
	}
	// Silent: still up at the TTL, down just after.
	if got := tr.Tick(at(15 * time.Second)); len(got) != 0 {
		t.Fatalf("at TTL: %v, want no change", got)
	}
	if got := tr.Tick(at(15*time.Second + time.Millisecond)); !cmp.Equal(got, []Change{{Node: "n1", Up: false}}) {
		t.Fatalf("past TTL: %v, want down", got)
	}
	if up, known := tr.Up("n1"); up || !known {
		t.Errorf("Up = %v, %v", up, known)
	}
	// Back: one heartbeat is not enough, Settle of them is.
	tr.Heartbeat("n1", at(30*time.Second))
	if got := tr.Tick(at(30 * time.Second)); len(got) != 0 {
		t.Fatalf("first heartbeat back: %v, want still down", got)
	}
	if got := beat(tr, "n1", 31*time.Second, 33*time.Second); !cmp.Equal(got, []Change{{Node: "n1", Up: true}}) {
		t.Fatalf("heard again for settle: %v, want up", got)
	}
}

// TestFlappingWithinTTLNoChange: a node whose heartbeats stop for less than
// the TTL, again and again, never goes down.
func TestFlappingWithinTTLNoChange(t *testing.T) {
	tr := New(Config{TTL: 10 * time.Second, Settle: 3 * time.Second})
	beat(tr, "n1", 0, 5*time.Second)
	var changes []Change
	for i := range 20 {
		start := 5*time.Second + time.Duration(i)*12*time.Second
		// 9s silent, ticking every second, then 3s of heartbeats.
		for d := start + time.Second; d < start+10*time.Second; d += time.Second {
			changes = append(changes, tr.Tick(at(d))...)
		}
		changes = append(changes, beat(tr, "n1", start+10*time.Second, start+12*time.Second)...)
	}
	if len(changes) != 0 {
		t.Errorf("flapping within TTL changed state: %v", changes)
	}
}

// TestReturningNodeMustStaySteady: a down node heard from in short bursts
// with gaps longer than the TTL stays down.
func TestReturningNodeMustStaySteady(t *testing.T) {
	tr := New(Config{TTL: 2 * time.Second, Settle: 5 * time.Second})
	beat(tr, "n1", 0, 6*time.Second)
	tr.Tick(at(20 * time.Second)) // down
	var changes []Change
	for i := range 5 {
		start := 30*time.Second + time.Duration(i)*10*time.Second
		changes = append(changes, beat(tr, "n1", start, start+2*time.Second)...)
		changes = append(changes, tr.Tick(at(start+9*time.Second))...)
	}
	for _, c := range changes {
		if c.Up {
			t.Fatalf("a node heard only in bursts came up: %v", changes)
		}
	}
}

// TestManyChangesOnePass: every change found at one time comes back from
// one Tick, sorted, so they can be committed as one entry.
func TestManyChangesOnePass(t *testing.T) {
	tr := New(Config{TTL: 10 * time.Second, Settle: time.Second})
	var want []Change
	for i := range 50 {
		id := fmt.Sprintf("n%02d", i)
		beat(tr, id, 0, 2*time.Second)
		want = append(want, Change{Node: id, Up: false})
	}
	if got := tr.Tick(at(time.Minute)); !cmp.Equal(got, want) {
		t.Errorf("one pass: %v, want all 50 down in order", got)
	}
	if _, known := tr.Up("unknown"); known {
		t.Error("a node never heard from is known")
	}
}
