package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/testenv"
)

// recorder is the call log shared by the fakes, in order.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// fakeDriver runs instances in memory.
type fakeDriver struct {
	rec  *recorder
	mu   sync.Mutex
	n    int
	inst map[string]allocation.Instance
}

func (d *fakeDriver) Name() string { return "fake" }

func (d *fakeDriver) Start(_ context.Context, s allocation.Spec) (allocation.Instance, error) {
	d.rec.add("start " + s.ID)
	if s.Image == "missing" {
		return allocation.Instance{}, errors.New("no such image")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n++
	in := allocation.Instance{AllocID: s.ID, Service: s.Service, ID: "i" + strconv.Itoa(d.n), Fingerprint: s.Fingerprint(), HostPort: 1000 + d.n, Running: true}
	d.inst[s.ID] = in
	return in, nil
}

func (d *fakeDriver) Stop(_ context.Context, in allocation.Instance, _ time.Duration) error {
	d.rec.add("stop " + in.AllocID)
	d.mu.Lock()
	delete(d.inst, in.AllocID)
	d.mu.Unlock()
	return nil
}

func (d *fakeDriver) List(context.Context) ([]allocation.Instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []allocation.Instance
	for _, in := range d.inst {
		out = append(out, in)
	}
	return out, nil
}

func (d *fakeDriver) Watch(ctx context.Context, _ func(allocation.Event)) { <-ctx.Done() }

// fakeRegistry is Consul in memory.
type fakeRegistry struct {
	rec    *recorder
	mu     sync.Mutex
	reg    map[string]bool
	agents int      // RegisterAgent calls
	boots  []string // the BootID of each
}

func (r *fakeRegistry) Register(_ context.Context, s allocation.Spec, _ allocation.Instance, _ string, _ bool) error {
	r.rec.add("register " + s.ID)
	r.mu.Lock()
	r.reg[s.ID] = true
	r.mu.Unlock()
	return nil
}

func (r *fakeRegistry) Deregister(_ context.Context, id string) error {
	r.rec.add("deregister " + id)
	r.mu.Lock()
	delete(r.reg, id)
	r.mu.Unlock()
	return nil
}

func (r *fakeRegistry) Owned(context.Context) (map[string]bool, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for id := range r.reg {
		out[id] = true
	}
	return out, true, nil
}

func (r *fakeRegistry) Checks(context.Context) (map[string]Health, error) { return nil, nil }

func (r *fakeRegistry) WaitRoutes(_ context.Context, _, id string, _, _ time.Duration) error {
	r.rec.add("barrier " + id)
	return nil
}

func (r *fakeRegistry) RegisterAgent(_ context.Context, s Self) error {
	r.mu.Lock()
	r.agents++
	r.boots = append(r.boots, s.BootID)
	r.mu.Unlock()
	return nil
}

// TestRestartedAgentRegistersItself: after a restart Consul still holds
// the agent's own entry (the fake reports it); the new process registers
// itself anyway, once, so that the instances it registers from then on are
// tied to its check (a restarted agent that did not left them passing after
// it died).
func TestRestartedAgentRegistersItself(t *testing.T) {
	reg := &fakeRegistry{rec: &recorder{}, reg: map[string]bool{}}
	drv := &fakeDriver{rec: reg.rec, inst: map[string]allocation.Instance{}}
	a, err := New(Config{NodeID: "n1", Address: "127.0.0.1", GRPCAddr: "127.0.0.1:7410", DataDir: t.TempDir(), ReadyWithin: time.Millisecond,
		AntiEntropy: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, drv, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	calls := func() int {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return reg.agents
	}
	testenv.Eventually(t, 10*time.Second, "the agent registered itself", func() error {
		if calls() == 0 {
			return errors.New("RegisterAgent not called")
		}
		return nil
	})
	// Later resyncs (every AntiEntropy) find it registered: not again.
	seen := 0
	testenv.Eventually(t, 10*time.Second, "a few resyncs", func() error {
		if _, _, err := reg.Owned(ctx); err != nil {
			return err
		}
		if seen++; seen < 5 {
			return errors.New("waiting")
		}
		return nil
	})
	if n := calls(); n != 1 {
		t.Errorf("RegisterAgent called %d times, want once", n)
	}
	// With its boot id, which the next process does not share: that is
	// how a leader sees the restart and resends the secret values.
	again, err := New(Config{NodeID: "n1", Address: "127.0.0.1", GRPCAddr: "127.0.0.1:7410", DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, drv, reg)
	if err != nil {
		t.Fatal(err)
	}
	reg.mu.Lock()
	boot := reg.boots[0]
	reg.mu.Unlock()
	if boot == "" || boot != a.boot || again.boot == "" || again.boot == boot {
		t.Errorf("boot ids: registered %q, this process %q, the next %q; want one per process", boot, a.boot, again.boot)
	}
}

func (r *fakeRegistry) Heartbeat(context.Context) error { return nil }

func (r *fakeRegistry) HeartbeatTTL() time.Duration { return 3 * time.Second }

func (r *fakeRegistry) ImageCheckTTL() time.Duration { return time.Minute }

func (r *fakeRegistry) SetImageHealth(context.Context, string, string) error { return nil }

func spec(id, image string) allocation.Spec {
	return allocation.Spec{ID: id, NodeID: "n1", Service: "web", Release: 1, Image: image, Port: 8080, MemoryMB: 64, Check: allocation.Check{TCP: true}}
}

func TestSyncWithFakes(t *testing.T) {
	rec := &recorder{}
	drv := &fakeDriver{rec: rec, inst: map[string]allocation.Instance{}}
	reg := &fakeRegistry{rec: rec, reg: map[string]bool{}}
	dir := t.TempDir()
	a, err := New(Config{NodeID: "n1", Address: "127.0.0.1", DataDir: dir, ReadyWithin: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, drv, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	sync := func(idx uint64, specs ...allocation.Spec) (map[string]Status, error) {
		res, err := a.Sync(ctx, "n1", Token{Term: 1, Index: idx}, specs)
		out := map[string]Status{}
		for _, s := range res.Allocations {
			out[s.AllocID] = s
		}
		return out, err
	}

	// b's start fails: it is retried after 1s (the minimum start retry),
	// and once its start deadline has passed the allocation is failed.
	b := spec("b", "missing")
	b.StartDeadline = time.Millisecond
	st, err := sync(2, spec("a", "img"), b)
	if err != nil {
		t.Fatal(err)
	}
	if st["a"].State != Running || st["b"].State != Starting ||
		st["b"].Error != "no such image; start retry 1 in 1s (retried until 1ms after the first failure)" {
		t.Errorf("statuses: %+v", st)
	}
	testenv.Eventually(t, 10*time.Second, "b failed after its start deadline", func() error {
		sts := a.Statuses()
		if len(sts) != 2 || sts[1].State != Failed {
			return fmt.Errorf("statuses %+v", sts)
		}
		return nil
	})
	if want := "no such image (start failed 2 times in "; !strings.HasPrefix(a.Statuses()[1].Error, want) {
		t.Errorf("b's error %q, want it to start with %q", a.Statuses()[1].Error, want)
	}
	got := rec.take()
	// Starts run in parallel: compare as a set per allocation.
	if !cmp.Equal(order(got, "a"), []string{"start a", "register a"}) || !cmp.Equal(order(got, "b"), []string{"start b", "start b"}) {
		t.Errorf("calls = %v", got)
	}

	// Same set again: nothing happens; the failed one is not retried.
	if _, err := sync(2, spec("a", "img"), b); err != nil {
		t.Fatal(err)
	}
	if c := rec.take(); len(c) != 0 {
		t.Errorf("repeat sync made calls %v", c)
	}

	// Stale token: refused, nothing happens, state unchanged.
	if _, err := sync(1); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("stale sync: %v", err)
	}
	if _, err := a.Sync(ctx, "n2", Token{Term: 9}, nil); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("wrong node: %v", err)
	}
	if c := rec.take(); len(c) != 0 {
		t.Errorf("refused syncs made calls %v", c)
	}

	// Shrink: deregister, barrier, then stop, in that order.
	if _, err := sync(3); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, rec, []string{"deregister a", "barrier a", "stop a"})

	// The token and desired set survive a restart.
	p, err := loadState(dir)
	if err != nil || p.Token != (Token{Term: 1, Index: 3}) || len(p.Desired) != 0 {
		t.Errorf("persisted %+v, %v", p, err)
	}
}

func order(calls []string, id string) []string {
	var out []string
	for _, c := range calls {
		if c[len(c)-len(id)-1:] == " "+id {
			out = append(out, c)
		}
	}
	return out
}

func waitCalls(t *testing.T, rec *recorder, want []string) {
	t.Helper()
	var got []string
	// A shortfall after 5s is reported by the diff below, with every call.
	_ = testenv.Poll(5*time.Second, func() error {
		got = append(got, rec.take()...)
		if len(got) < len(want) {
			return errors.New("too few calls")
		}
		return nil
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestTokenLess(t *testing.T) {
	for _, tc := range []struct {
		a, b Token
		want bool
	}{
		{Token{1, 5}, Token{2, 0}, true},
		{Token{2, 0}, Token{1, 5}, false},
		{Token{2, 3}, Token{2, 4}, true},
		{Token{2, 4}, Token{2, 4}, false},
	} {
		if got := tc.a.Less(tc.b); got != tc.want {
			t.Errorf("%v.Less(%v) = %v", tc.a, tc.b, got)
		}
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	want := persisted{Token: Token{3, 7}, Desired: []allocation.Spec{spec("a", "img")}}
	if err := saveState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir); err == nil {
		t.Error("corrupt state: want an error")
	}
	if p, err := loadState(t.TempDir()); err != nil || p.Token != (Token{}) {
		t.Errorf("no state: %+v, %v", p, err)
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	a, err := New(Config{NodeID: "n1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeDriver{rec: &recorder{}, inst: map[string]allocation.Instance{}},
		&fakeRegistry{rec: &recorder{}, reg: map[string]bool{}})
	if err != nil {
		t.Fatal(err)
	}
	_, ch, cancel := a.Subscribe()
	defer cancel()
	for i := 0; i < 300; i++ {
		a.update("x", "tick", func(s *Status) { s.Restarts = i })
	}
	n := 0
	for range ch { // ends: the channel was closed
		n++
	}
	if n != 256 {
		t.Errorf("received %d events before the drop, want the 256 buffered", n)
	}
}
