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
}

func (r *recorder) Apply(_ context.Context, t routetable.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "apply")
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

func TestCoalescesBurst(t *testing.T) {
	src, rec := newSource(), &recorder{}
	startWith(t, src, rec, 200*time.Millisecond, 2*time.Second, nil) // a window far above the changes' 5ms spacing, even on a loaded machine
	rec.waitFor(t, "initial ack", func() bool { return rec.lastAck() != nil })
	const burst = 20
	for i := 1; i <= burst; i++ {
		src.set(func(in *routetable.Input) {
			in.Instances["web"] = append(in.Instances["web"], routetable.Instance{ID: string(rune('a' + i)), Address: "x:1", Release: 1})
			in.Intents["web"] = []byte(`{"generation":1,"host":"web","weights":{"1":100}}`)
		})
		time.Sleep(5 * time.Millisecond) // the burst is the input: changes 5ms apart, inside the quiet period (not a wait)
	}
	rec.waitFor(t, "ack with every instance", func() bool { return len(rec.lastAck().GetInstances()["web"].GetIds()) == burst })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// The initial table, burstTables at once, then the rest coalesced
	// (a token may come back during the burst).
	if len(rec.applied) > 1+burstTables+3 {
		t.Fatalf("%d applies for a burst of %d changes: not coalesced", len(rec.applied), burst)
	}
}

// TestAppliesFirstChangeAtOnce: a change after a quiet spell (by the
// controller's clock, which the test moves) is applied without waiting for
// the coalescing window, here a minute, far longer than the test waits.
func TestAppliesFirstChangeAtOnce(t *testing.T) {
	src, rec := newSource(), &recorder{}
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	startWith(t, src, rec, time.Minute, 2*time.Minute, now)
	rec.waitFor(t, "initial ack", func() bool { return rec.lastAck() != nil })
	mu.Lock()
	clock = clock.Add(2 * time.Minute)
	mu.Unlock()
	src.set(func(in *routetable.Input) {
		in.Instances["web"] = []routetable.Instance{{ID: "w1", Address: "a:1", Release: 1}}
		in.Intents["web"] = []byte(`{"generation":3,"host":"web","weights":{"1":100}}`)
	})
	rec.waitFor(t, "the first change applied without the minute's window", func() bool { return rec.lastAck().GetGenerations()["web"] == 3 })
}

func TestBurstGate(t *testing.T) {
	g := newBurstGate(20 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	for i := 0; i < burstTables; i++ {
		if !g.immediate(t0) {
			t.Fatalf("change %d of a quiet start coalesced, want at once", i+1)
		}
	}
	if g.immediate(t0.Add(time.Millisecond)) {
		t.Fatalf("change %d in the same millisecond at once, want coalesced (a burst)", burstTables+1)
	}
	if !g.immediate(t0.Add(21 * time.Millisecond)) {
		t.Fatal("change one quiet period later coalesced, want at once")
	}
	if !g.immediate(t0.Add(time.Second)) || !g.immediate(t0.Add(time.Second)) {
		t.Fatal("changes after a quiet second coalesced, want at once")
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
