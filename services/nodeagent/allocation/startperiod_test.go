package allocation

import (
	"testing"
	"time"
)

// TestStartPeriod: the agent probes a fresh instance for the longer of its
// ready bound and the start period; an instance is in its start period
// from its start until the period has passed, never without one.
func TestStartPeriod(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	grace := Spec{Check: Check{HTTP: "/healthz", StartPeriod: 10 * time.Second}}
	none := Spec{Check: Check{HTTP: "/healthz"}}
	if got := grace.ProbeWithin(5 * time.Second); got != 10*time.Second {
		t.Errorf("ProbeWithin(5s) with start period 10s = %s, want 10s", got)
	}
	if got := none.ProbeWithin(5 * time.Second); got != 5*time.Second {
		t.Errorf("ProbeWithin(5s) without start period = %s, want 5s", got)
	}
	if got := (Spec{Check: Check{StartPeriod: time.Second}}).ProbeWithin(5 * time.Second); got != 5*time.Second {
		t.Errorf("ProbeWithin(5s) with start period 1s = %s, want 5s", got)
	}
	for _, c := range []struct {
		spec    Spec
		started time.Time
		at      time.Duration
		want    bool
	}{
		{grace, t0, 0, true},
		{grace, t0, 9 * time.Second, true},
		{grace, t0, 10 * time.Second, false},
		{grace, t0, time.Minute, false},
		{grace, time.Time{}, 0, false}, // start unknown
		{none, t0, 0, false},
	} {
		if got := c.spec.InStartPeriod(c.started, t0.Add(c.at)); got != c.want {
			t.Errorf("InStartPeriod(start period %s, %s after start) = %v, want %v", c.spec.Check.StartPeriod, c.at, got, c.want)
		}
	}
	bad := Spec{Check: Check{StartPeriod: -time.Second}}
	found := false
	for _, v := range bad.Validate("") {
		found = found || v.Field == "check.start_period"
	}
	if !found {
		t.Errorf("Validate accepted a negative check.start_period: %v", bad.Validate(""))
	}
}
