package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/edge/routetable"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// fakeSource is a hand-written Source whose input the test sets.
type fakeSource struct {
	mu      sync.Mutex
	in      routetable.Input
	changes chan struct{}
	ready   chan struct{}
}

func newSource() *fakeSource {
	s := &fakeSource{changes: make(chan struct{}, 1), ready: make(chan struct{}),
		in: routetable.Input{Instances: map[string][]routetable.Instance{}, Intents: map[string][]byte{}}}
	close(s.ready)
	return s
}

func (s *fakeSource) Changes() <-chan struct{} { return s.changes }
func (s *fakeSource) Ready() <-chan struct{}   { return s.ready }
func (s *fakeSource) Snapshot() routetable.Input {
	s.mu.Lock()
	defer s.mu.Unlock()
	return routetable.Input{Instances: cloneMap(s.in.Instances), Intents: cloneMap(s.in.Intents)}
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := map[string]V{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *fakeSource) set(f func(in *routetable.Input)) {
	s.mu.Lock()
	f(&s.in)
	s.mu.Unlock()
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// recorder is a hand-written Applier and Publisher that records calls in
// order.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	applied  []routetable.Table
	acks     []*edgev1.EdgeAck
	applyErr error
	onApply  func() // optional: what an apply costs (moves a fake clock)
}

func (r *recorder) Apply(_ context.Context, t routetable.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "apply")
	if r.onApply != nil {
		r.onApply()
	}
	if r.applyErr != nil {
		return r.applyErr
	}
	r.applied = append(r.applied, t)
	return nil
}

func (r *recorder) Publish(_ context.Context, a *edgev1.EdgeAck) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "ack")
	r.acks = append(r.acks, a)
	return nil
}

func (r *recorder) lastAck() *edgev1.EdgeAck {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.acks) == 0 {
		return nil
	}
	return r.acks[len(r.acks)-1]
}

// waitFor waits until cond holds, reporting the calls and the last ack
// recorded if it does not.
func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, what, func() error {
		if cond() {
			return nil
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		var last *edgev1.EdgeAck
		if len(r.acks) > 0 {
			last = r.acks[len(r.acks)-1]
		}
		return fmt.Errorf("calls %v, last ack %v", r.calls, last)
	})
}

func start(t *testing.T, src Source, rec *recorder) {
	t.Helper()
	startWith(t, src, rec, 30*time.Millisecond, time.Second, nil)
}

func startWith(t *testing.T, src Source, rec *recorder, quiet, maxDelay time.Duration, now func() time.Time) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := New(Config{EdgeID: "e1", Source: src, Applier: rec, Publisher: rec, Quiet: quiet, MaxDelay: maxDelay, Now: now})
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestAppliesThenAcksWithInstances(t *testing.T) {
	src, rec := newSource(), &recorder{}
	start(t, src, rec)
	rec.waitFor(t, "initial ack", func() bool { return rec.lastAck() != nil })
	src.set(func(in *routetable.Input) {
		in.Instances["web"] = []routetable.Instance{{ID: "w2", Address: "a:2", Release: 1}, {ID: "w1", Address: "a:1", Release: 1}}
		in.Intents["web"] = []byte(`{"generation":5,"host":"web","weights":{"1":100}}`)
	})
	rec.waitFor(t, "ack of generation 5", func() bool { return rec.lastAck().GetGenerations()["web"] == 5 })
	if got := rec.lastAck().GetInstances()["web"].GetIds(); !slices.Equal(got, []string{"w1", "w2"}) {
		t.Fatalf("ack ids %v", got)
	}
	rec.mu.Lock()
	calls := slices.Clone(rec.calls)
	rec.mu.Unlock()
	if d := cmp.Diff([]string{"apply", "ack", "apply", "ack"}, calls); d != "" {
		t.Fatalf("calls (-want +got):\n%s", d)
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// burst makes n changes 5ms apart, each adding an instance of web.
func burst(src *fakeSource, n int) {
	for i := 1; i <= n; i++ {
		src.set(func(in *routetable.Input) {
			in.Instances["web"] = append(in.Instances["web"], routetable.Instance{ID: string(rune('a' + i)), Address: "x:1", Release: 1})
			in.Intents["web"] = []byte(`{"generation":1,"host":"web","weights":{"1":100}}`)
		})
		time.Sleep(5 * time.Millisecond) // the burst is the input: changes 5ms apart, inside the quiet period (not a wait)
	}
}

// TestCoalescesCostlyBurst: tables that cost 500ms each (by the controller's
// clock, which each apply moves) exhaust a 20% budget within a few changes,
// and the rest of a burst of 20 is coalesced.
func TestCoalescesCostlyBurst(t *testing.T) {
	src := newSource()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	rec := &recorder{onApply: func() { clock.add(500 * time.Millisecond) }}
	startWith(t, src, rec, 200*time.Millisecond, 2*time.Second, clock.now) // a window far above the changes' 5ms spacing, even on a loaded machine
	rec.waitFor(t, "initial ack", func() bool { return rec.lastAck() != nil })
	const n = 20
	burst(src, n)
	rec.waitFor(t, "ack with every instance", func() bool { return len(rec.lastAck().GetInstances()["web"].GetIds()) == n })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// The reserve (MaxDelay, 2s of work) lets about 4 tables through at
	// once, then each 500ms table earns back 100ms: the rest is coalesced.
	if len(rec.applied) > 10 {
		t.Fatalf("%d applies for a burst of %d costly changes: not coalesced", len(rec.applied), n)
	}
}

// TestCheapChangesNotCoalesced: tables that cost nothing are applied at once
// however close together their changes come: the whole burst is routed long
// before one coalescing window (a minute) could pass.
func TestCheapChangesNotCoalesced(t *testing.T) {
	src, rec := newSource(), &recorder{}
	clock := &fakeClock{t: time.Unix(1000, 0)}
	startWith(t, src, rec, time.Minute, 2*time.Minute, clock.now)
	rec.waitFor(t, "initial ack", func() bool { return rec.lastAck() != nil })
	const n = 20
	burst(src, n)
	rec.waitFor(t, "every change applied without the minute's window", func() bool {
		return len(rec.lastAck().GetInstances()["web"].GetIds()) == n
	})
}

// TestAppliesFirstChangeAtOnce: a change after a costly spell is applied
// without waiting for the coalescing window (a minute, far longer than the
// test waits) once the budget has been earned back by the controller's
// clock, which the test moves.
func TestAppliesFirstChangeAtOnce(t *testing.T) {
	src := newSource()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	rec := &recorder{onApply: func() { clock.add(time.Minute) }} // the initial table empties the reserve
	startWith(t, src, rec, time.Minute, 2*time.Minute, clock.now)
	rec.waitFor(t, "initial ack", func() bool { return rec.lastAck() != nil })
	clock.add(10 * time.Minute)
	src.set(func(in *routetable.Input) {
		in.Instances["web"] = []routetable.Instance{{ID: "w1", Address: "a:1", Release: 1}}
		in.Intents["web"] = []byte(`{"generation":3,"host":"web","weights":{"1":100}}`)
	})
	rec.waitFor(t, "the first change applied without the minute's window", func() bool { return rec.lastAck().GetGenerations()["web"] == 3 })
}

func TestCostGate(t *testing.T) {
	g := newCostGate(0.2, 20*time.Millisecond) // reserve: 20ms of work
	t0 := time.Unix(1000, 0)
	for i := 0; i < 1000; i++ {
		if !g.immediate(t0) {
			t.Fatalf("change %d of cheap tables (10us each) coalesced, want at once", i+1)
		}
		g.spent(t0, 10*time.Microsecond)
	}
	if !g.immediate(t0) {
		t.Fatal("coalesced with half the reserve left")
	}
	g.spent(t0, 15*time.Millisecond)
	if g.immediate(t0) {
		t.Fatal("at once after the reserve was spent, want coalesced (a costly burst)")
	}
	// 5ms over budget at 0.2 is earned back in 25ms.
	if g.immediate(t0.Add(24 * time.Millisecond)) {
		t.Fatal("at once before the overspend was earned back")
	}
	if !g.immediate(t0.Add(26 * time.Millisecond)) {
		t.Fatal("coalesced after the overspend was earned back, want at once")
	}
	g.spent(t0.Add(26*time.Millisecond), time.Hour) // a table costlier than the reserve empties it, no more
	if !g.immediate(t0.Add(26*time.Millisecond + 101*time.Millisecond)) {
		t.Fatal("an hour-long table held changes back beyond one reserve's refill")
	}
}

func TestFailedApplyIsNotAcked(t *testing.T) {
	src, rec := newSource(), &recorder{}
	start(t, src, rec)
	rec.waitFor(t, "initial ack", func() bool { return rec.lastAck() != nil })
	rec.mu.Lock()
	rec.applyErr = errors.New("nginx down")
	rec.mu.Unlock()
	src.set(func(in *routetable.Input) {
		in.Instances["web"] = []routetable.Instance{{ID: "w1", Address: "a:1", Release: 1}}
		in.Intents["web"] = []byte(`{"generation":2,"host":"web","weights":{"1":100}}`)
	})
	rec.waitFor(t, "a failed apply", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.calls) >= 3
	})
	if _, ok := rec.lastAck().GetGenerations()["web"]; ok {
		t.Fatal("acked a table that was never applied")
	}
	rec.mu.Lock()
	rec.applyErr = nil
	rec.mu.Unlock()
	rec.waitFor(t, "ack after the retry", func() bool { return rec.lastAck().GetGenerations()["web"] == 2 })
}
