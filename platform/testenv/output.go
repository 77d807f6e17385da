package testenv

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

// LockedBuffer is a bytes.Buffer that a process or a logger writes while
// the test reads it: the one buffer tests share output through.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Bytes returns a copy of what was written so far.
func (l *LockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail returns the last n bytes of b (all of it when shorter): the end of
// a log, shown when a test fails.
func Tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Until is Eventually for a condition that explains itself: cond returns ""
// once it holds, or what is still missing, which the failure reports.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() string) {
	tb.Helper()
	Eventually(tb, timeout, what, func() error {
		if msg := cond(); msg != "" {
			return errors.New(msg)
		}
		return nil
	})
}
