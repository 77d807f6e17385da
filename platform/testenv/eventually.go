package testenv

import (
	"testing"
	"time"
)

// Eventually calls cond until it returns nil, and fails the test if it has
// not by the end of timeout, naming what was awaited and cond's last error.
// It polls every 10ms at first, backing off to every 200ms, so a cheap
// condition is seen at once and an expensive one (a Consul query, an RPC)
// is not hammered. It is the one place tests wait for a condition.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := Poll(timeout, cond); err != nil {
		tb.Fatalf("%s: not reached after %s: %v", what, timeout, err)
	}
}

// Poll is Eventually for code with no testing.TB (a test's goroutine, a
// benchmark program): it returns nil once cond does, or cond's last error
// once timeout has passed.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(min(wait, time.Until(deadline)+time.Millisecond))
		wait = min(2*wait, 200*time.Millisecond)
	}
}
