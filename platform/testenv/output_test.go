package testenv

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestLockedBufferConcurrentWrites(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprintf(&b, "%d", i)
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := len(b.Bytes()); n != 800 {
		t.Fatalf("%d bytes, want 800", n)
	}
}

func TestTail(t *testing.T) {
	if got := string(Tail([]byte("abcdef"), 3)); got != "def" {
		t.Errorf("Tail = %q", got)
	}
	if got := string(Tail([]byte("ab"), 3)); got != "ab" {
		t.Errorf("Tail of a short log = %q", got)
	}
}

func TestUntilReportsTheLastReason(t *testing.T) {
	n := 0
	Until(t, time.Second, "third call", func() string {
		if n++; n < 3 {
			return fmt.Sprintf("call %d", n)
		}
		return ""
	})
	if n != 3 {
		t.Fatalf("cond called %d times", n)
	}
	r := &recorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		Until(r, 30*time.Millisecond, "never", func() string { return "still missing x" })
	}()
	if r.msg != "never: not reached after 30ms: still missing x" {
		t.Errorf("failure says %q", r.msg)
	}
}

// recorder is a testing.TB whose Fatalf records and stops the call.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}
