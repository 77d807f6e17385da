package testenv

import (
	"errors"
	"testing"
	"time"
)

func TestPollReturnsOnceCondHolds(t *testing.T) {
	calls := 0
	err := Poll(5*time.Second, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Poll = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestPollReportsLastErrorAtDeadline(t *testing.T) {
	n := 0
	err := Poll(50*time.Millisecond, func() error {
		n++
		return errors.New("attempt " + string(rune('0'+n%10)))
	})
	if err == nil || err.Error() != "attempt "+string(rune('0'+n%10)) {
		t.Fatalf("Poll = %v, want the last attempt's error (%d attempts)", err, n)
	}
}
