package heartbeat_test

import (
	"sync"
	"testing"
	"time"

	"slipway.dev/coordinator/heartbeat"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newView() (*heartbeat.View, *clock) {
	c := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	return heartbeat.New(heartbeat.Config{TTL: 4 * time.Second, Now: c.Now}), c
}

func sts(ids ...string) []*agentv1.AllocationStatus {
	var out []*agentv1.AllocationStatus
	for _, id := range ids {
		out = append(out, &agentv1.AllocationStatus{AllocationId: id})
	}
	return out
}

// TestViewStatesFollowTheTracker: unknown until heard from steadily for the
// settle time, then up; down once silent past the TTL; up again only after
// the settle time.
func TestViewStatesFollowTheTracker(t *testing.T) {
	v, c := newView()
	if v.Config().Settle != 4*time.Second || v.Config().Interval() != time.Second {
		t.Fatalf("config = %+v, want settle = TTL and interval TTL/4", v.Config())
	}
	sid := v.Open("n1")
	beat := func(d time.Duration) {
		for end := c.Now().Add(d); c.Now().Before(end); {
			c.Add(time.Second)
			v.Beat("n1", sid, 1, false, nil)
			v.Tick()
		}
	}
	v.Beat("n1", sid, 1, true, sts("a"))
	v.Tick()
	if s := v.State("n1"); s != heartbeat.Unknown {
		t.Fatalf("first heard: %s, want unknown (Consul decides)", s)
	}
	beat(4 * time.Second)
	if s := v.State("n1"); s != heartbeat.Up {
		t.Fatalf("after the settle time: %s, want up", s)
	}
	c.Add(3 * time.Second) // silent, within the TTL
	v.Tick()
	if s := v.State("n1"); s != heartbeat.Up {
		t.Fatalf("silent within the TTL: %s, want up", s)
	}
	c.Add(2 * time.Second)
	if ch := v.Tick(); len(ch) != 1 || ch[0].Up || v.State("n1") != heartbeat.Down {
		t.Fatalf("silent past the TTL: changes %v, state %s, want one down", ch, v.State("n1"))
	}
	beat(2 * time.Second)
	if s := v.State("n1"); s != heartbeat.Down {
		t.Fatalf("heard again for less than the settle time: %s, want down", s)
	}
	beat(3 * time.Second)
	if s := v.State("n1"); s != heartbeat.Up {
		t.Fatalf("heard again for the settle time: %s, want up", s)
	}
	if s := v.State("never"); s != heartbeat.Unknown {
		t.Errorf("a node never heard of: %s, want unknown", s)
	}
}

// TestViewStatusesOfTheCurrentStream: statuses count only from the open
// stream; a replaced stream's heartbeats and close are ignored; a status
// change wakes Changed.
func TestViewStatusesOfTheCurrentStream(t *testing.T) {
	v, _ := newView()
	old := v.Open("n1")
	if _, ok := v.Statuses("n1"); ok {
		t.Fatal("statuses before any heartbeat")
	}
	changed := v.Changed()
	v.Beat("n1", old, 1, true, sts("a"))
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by new statuses")
	}
	cur := v.Open("n1") // the agent reconnected
	v.Beat("n1", old, 2, true, sts("stale"))
	if _, ok := v.Statuses("n1"); ok {
		t.Fatal("statuses of a replaced stream are used")
	}
	v.Beat("n1", cur, 3, true, sts("b"))
	v.Close("n1", old)
	got, ok := v.Statuses("n1")
	if !ok || len(got) != 1 || got[0].GetAllocationId() != "b" {
		t.Fatalf("statuses = %v, %v; want b from the current stream", got, ok)
	}
	changed = v.Changed()
	v.Beat("n1", cur, 3, false, nil) // unchanged
	select {
	case <-changed:
		t.Fatal("Changed closed by a heartbeat without a change")
	default:
	}
	if s := v.Streaming(); len(s) != 1 || s[0] != "n1" {
		t.Errorf("streaming = %v", s)
	}
	v.Close("n1", cur)
	if _, ok := v.Statuses("n1"); ok || len(v.Streaming()) != 0 {
		t.Error("statuses or stream kept after the stream closed")
	}
}
