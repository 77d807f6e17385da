package tour

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	platformspec "slipway.dev/platform/spec"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// fakeDeploy is a hand-written DeployServiceClient: each Deploy creates a
// rollout whose WatchRollout stream replays a script of events; the event
// that starts a wait for promote (awaiting_promote set, its message not
// saying so) blocks the script until PromoteRollout, after which the
// promote's command event still awaits promote, as the coordinator records
// it. It records every call and refuses a second promote of one wait. The
// served version switches when a rollout ends SUCCEEDED, as the edge would.
type fakeDeploy struct {
	deployv1.DeployServiceClient // unimplemented methods panic

	final   map[string]deployv1.RolloutState // by image version
	served  *atomic.Value                    // version the "edge" serves
	mu      sync.Mutex
	calls   []string
	n       int
	promote map[string]chan struct{}
	states  map[string]deployv1.RolloutState
	version map[string]string
}

func newFake(served *atomic.Value, final map[string]deployv1.RolloutState) *fakeDeploy {
	return &fakeDeploy{final: final, served: served, promote: map[string]chan struct{}{}, states: map[string]deployv1.RolloutState{}, version: map[string]string{}}
}

func (f *fakeDeploy) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeDeploy) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeDeploy) Deploy(ctx context.Context, in *deployv1.DeployRequest, _ ...grpc.CallOption) (*deployv1.DeployResponse, error) {
	f.mu.Lock()
	f.n++
	id := fmt.Sprintf("r%d", f.n)
	v := strings.TrimPrefix(in.GetSpec().GetImage(), "slipway/demo:")
	f.promote[id] = make(chan struct{})
	f.version[id] = v
	f.mu.Unlock()
	f.record("deploy " + v + " " + in.GetSpec().GetUpdate().GetStrategy().String())
	return &deployv1.DeployResponse{
		Release: &deployv1.Release{Service: Service, Number: uint64(f.n)},
		Rollout: &deployv1.Rollout{Id: id, State: deployv1.RolloutState_ROLLOUT_STATE_RUNNING, Strategy: in.GetSpec().GetUpdate().GetStrategy()},
	}, nil
}

func (f *fakeDeploy) PromoteRollout(ctx context.Context, in *deployv1.PromoteRolloutRequest, _ ...grpc.CallOption) (*deployv1.PromoteRolloutResponse, error) {
	f.record("promote " + in.GetId())
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.promote[in.GetId()]:
		return nil, fmt.Errorf("fake: %s promoted twice in one wait", in.GetId())
	default:
	}
	close(f.promote[in.GetId()])
	return &deployv1.PromoteRolloutResponse{}, nil
}

func (f *fakeDeploy) GetRollout(ctx context.Context, in *deployv1.GetRolloutRequest, _ ...grpc.CallOption) (*deployv1.GetRolloutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &deployv1.GetRolloutResponse{Rollout: &deployv1.Rollout{Id: in.GetId(), State: f.states[in.GetId()], Message: "done"}}, nil
}

func (f *fakeDeploy) WatchRollout(ctx context.Context, in *deployv1.WatchRolloutRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[deployv1.WatchRolloutResponse], error) {
	f.mu.Lock()
	v, promote := f.version[in.GetId()], f.promote[in.GetId()]
	f.mu.Unlock()
	final := f.final[v]
	paused := deployv1.RolloutState_ROLLOUT_STATE_PAUSED
	running := deployv1.RolloutState_ROLLOUT_STATE_RUNNING
	evs := []*deployv1.RolloutEvent{
		{Kind: "placed", State: running, Message: "placed " + v},
	}
	wait := -1
	if v == "v2" || v == "v3" {
		w := map[string]int32{"2": 50, "1": 50}
		wait = len(evs)
		evs = append(evs,
			&deployv1.RolloutEvent{Kind: "paused", State: paused, Step: 1, AwaitingPromote: true, Message: "step 2/3 holds", Weights: w},
			&deployv1.RolloutEvent{Kind: "command", State: paused, Step: 1, AwaitingPromote: true, Message: "promote requested by slipway-guide", Weights: w},
			&deployv1.RolloutEvent{Kind: "promoted", State: running, Step: 2, Message: "promoted by slipway-guide", Weights: w})
	}
	evs = append(evs, &deployv1.RolloutEvent{Kind: "end", State: final, Message: "end"})
	return &fakeStream{ctx: ctx, f: f, id: in.GetId(), version: v, evs: evs, wait: wait, promote: promote}, nil
}

type fakeStream struct {
	grpc.ClientStream
	ctx     context.Context
	f       *fakeDeploy
	id      string
	version string
	evs     []*deployv1.RolloutEvent
	wait    int // position of the event after which the script waits for a promote, -1 for none
	i       int
	promote chan struct{}
}

func (s *fakeStream) Recv() (*deployv1.WatchRolloutResponse, error) {
	if s.i > 0 && s.i-1 == s.wait {
		select {
		case <-s.promote:
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		case <-time.After(10 * time.Second):
			return nil, errors.New("fake: no promote within 10s")
		}
	}
	if s.i == len(s.evs) {
		return nil, io.EOF
	}
	ev := s.evs[s.i]
	s.i++
	ev.Index = uint64(s.i)
	if s.i == len(s.evs) {
		s.f.mu.Lock()
		s.f.states[s.id] = ev.GetState()
		s.f.mu.Unlock()
		if ev.GetState() == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
			s.f.served.Store(s.version)
		}
	}
	return &deployv1.WatchRolloutResponse{Event: ev}, nil
}

func edge(t *testing.T, served *atomic.Value) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := served.Load().(string)
		if r.Host != Host || v == "" {
			http.Error(w, "no route", http.StatusBadGateway)
			return
		}
		if r.Header.Get(PreviewHeader) != "" {
			v = "v3" // the only act with a preview pin
		}
		w.Header().Set("X-Slipway-Version", v)
		fmt.Fprintln(w, "hello from", v)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunPlaysEveryActAndPromotesManualSteps(t *testing.T) {
	served := &atomic.Value{}
	served.Store("")
	f := newFake(served, map[string]deployv1.RolloutState{
		"v1": deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, "v2": deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
		"v3": deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, "v4": deployv1.RolloutState_ROLLOUT_STATE_REVERTED,
		"v5": deployv1.RolloutState_ROLLOUT_STATE_REVERTED,
	})
	srv := edge(t, served)
	var out strings.Builder
	res, err := Run(context.Background(), Config{
		Client: f, EdgeURL: srv.URL + "/", Rate: 200, Workers: 4, ActTimeout: 20 * time.Second, Out: &out, Start: time.Now(),
	}, Acts())
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	want := []string{
		"deploy v1 STRATEGY_ROLLING",
		"deploy v2 STRATEGY_CANARY", "promote r2",
		"deploy v3 STRATEGY_BLUE_GREEN", "promote r3",
		"deploy v4 STRATEGY_ROLLING",
		"deploy v5 STRATEGY_CANARY",
	}
	if d := cmp.Diff(want, f.Calls()); d != "" {
		t.Fatalf("calls (-want +got):\n%s", d)
	}
	var names []string
	for _, p := range res.Phases {
		names = append(names, p.Name+":"+p.Outcome)
	}
	wantPhases := []string{"deploy v1:succeeded", "canary v2:succeeded", "blue/green v3:succeeded", "bad v4:reverted", "bad v5:reverted", "after:"}
	if d := cmp.Diff(wantPhases, names); d != "" {
		t.Fatalf("phases (-want +got):\n%s", d)
	}
	if len(res.Samples) == 0 {
		t.Fatal("no traffic recorded")
	}
	seen := map[string]bool{}
	for _, s := range res.Samples {
		if !s.OK() {
			t.Fatalf("failed request %+v", s)
		}
		seen[s.Version] = true
	}
	// Traffic starts once v1 answers; v4 and v5 never serve (here).
	if !seen["v3"] || seen["v4"] || seen["v5"] || seen["preview"] {
		t.Fatalf("versions served = %v", seen)
	}
	if d := cmp.Diff(map[string]string{"deploy v1": "r1", "canary v2": "r2", "blue/green v3": "r3", "bad v4": "r4", "bad v5": "r5"}, res.Rollouts); d != "" {
		t.Fatalf("rollouts (-want +got):\n%s", d)
	}
	for _, want := range []string{"bin/slipctl rollout promote r2", "-> served by v3", "weights v1=50% v2=50%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunStopsOnUnexpectedOutcome(t *testing.T) {
	served := &atomic.Value{}
	served.Store("")
	f := newFake(served, map[string]deployv1.RolloutState{
		"v1": deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, "v2": deployv1.RolloutState_ROLLOUT_STATE_FAILED,
	})
	srv := edge(t, served)
	res, err := Run(context.Background(), Config{
		Client: f, EdgeURL: srv.URL + "/", Rate: 50, Workers: 2, ActTimeout: 20 * time.Second, Out: io.Discard, Start: time.Now(),
	}, Acts())
	if !errors.Is(err, ErrOutcome) {
		t.Fatalf("err = %v, want ErrOutcome", err)
	}
	if calls := f.Calls(); len(calls) != 3 || calls[2] != "promote r2" {
		t.Fatalf("calls = %v: the tour must stop after the failed canary", calls)
	}
	if last := res.Phases[len(res.Phases)-1]; last.Name != "canary v2" || last.Outcome != "failed" {
		t.Fatalf("last phase = %+v", last)
	}
}

func TestRunInterruptedWhileHoldingAManualStep(t *testing.T) {
	served := &atomic.Value{}
	served.Store("")
	f := newFake(served, map[string]deployv1.RolloutState{
		"v1": deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, "v2": deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
	})
	srv := edge(t, served)
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupt once the tour holds the manual step (or stop looking once
	// Run has returned without it).
	held := make(chan error, 1)
	go func() {
		held <- testenv.Poll(2*time.Minute, func() error {
			if ctx.Err() != nil || strings.Contains(out.String(), "holding this step") {
				return nil
			}
			return errors.New(`the tour has not printed "holding this step"`)
		})
		cancel()
	}()
	res, err := Run(ctx, Config{
		Client: f, EdgeURL: srv.URL + "/", Rate: 50, Workers: 2, ActTimeout: time.Minute, PromoteAfter: time.Minute, Out: &out, Start: time.Now(),
	}, Acts())
	cancel()
	if werr := <-held; werr != nil {
		t.Fatalf("waiting for the manual step to be held: %v; output:\n%s", werr, out.String())
	}
	if err == nil || !strings.Contains(err.Error(), "canary v2 interrupted") {
		t.Fatalf("err = %v, want canary v2 interrupted", err)
	}
	if last := res.Phases[len(res.Phases)-1]; last.Name != "canary v2" || last.Outcome != "interrupted" {
		t.Fatalf("last phase = %+v", last)
	}
	for _, c := range f.Calls() {
		if strings.HasPrefix(c, "promote") {
			t.Fatalf("promoted after the interrupt: %v", f.Calls())
		}
	}
}

// syncBuffer is a strings.Builder safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRunFailsWhenTheEdgeNeverServes(t *testing.T) {
	served := &atomic.Value{}
	served.Store("")
	f := newFake(served, map[string]deployv1.RolloutState{"v1": deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED})
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := Run(ctx, Config{Client: f, EdgeURL: srv.URL + "/", Rate: 10, Workers: 1, ActTimeout: time.Minute, Out: io.Discard, Start: time.Now()}, Acts()[:1])
	if err == nil || !strings.Contains(err.Error(), "did not serve v1") {
		t.Fatalf("err = %v, want the edge-not-serving error", err)
	}
}

func TestNeedsPromote(t *testing.T) {
	paused, running := deployv1.RolloutState_ROLLOUT_STATE_PAUSED, deployv1.RolloutState_ROLLOUT_STATE_RUNNING
	for _, tc := range []struct {
		ev   *deployv1.RolloutEvent
		want bool
	}{
		{&deployv1.RolloutEvent{Kind: "paused", State: paused, AwaitingPromote: true, Message: "step 2/3 (v2 at 50%) waits for promote"}, true},
		{&deployv1.RolloutEvent{Kind: "traffic", State: paused, AwaitingPromote: true, Message: "generation 3"}, true},
		// The text alone does not count: only the field does.
		{&deployv1.RolloutEvent{Kind: "paused", State: paused, Message: "v3 in preview; waits for promote"}, false},
		{&deployv1.RolloutEvent{Kind: "paused", State: paused, Message: "paused by alice"}, false},
		{&deployv1.RolloutEvent{State: running, Message: "promoted"}, false},
	} {
		if got := NeedsPromote(tc.ev); got != tc.want {
			t.Errorf("NeedsPromote(%v) = %v, want %v", tc.ev, got, tc.want)
		}
	}
}

func TestFormatWeights(t *testing.T) {
	versions := map[string]string{"1": "v1", "2": "v2"}
	for _, tc := range []struct {
		w    map[string]int32
		want string
	}{
		{nil, ""},
		{map[string]int32{"2": 20, "1": 80}, "v1=80% v2=20%"},
		{map[string]int32{"3": 100}, "release 3=100%"},
	} {
		if got := FormatWeights(tc.w, versions); got != tc.want {
			t.Errorf("FormatWeights(%v) = %q, want %q", tc.w, got, tc.want)
		}
	}
}

func TestActsAreConsistent(t *testing.T) {
	acts := Acts()
	if len(acts) != 5 {
		t.Fatalf("%d acts", len(acts))
	}
	for _, a := range acts {
		if a.Spec.GetImage() != "slipway/demo:"+a.Version || a.Spec.GetRoute().GetHost() != Host || a.Spec.GetName() != Service {
			t.Errorf("act %s: spec %v", a.Name, a.Spec)
		}
	}
	if acts[3].Spec.GetEnv()["FAIL_HEALTH"] != "1" || acts[3].Want != deployv1.RolloutState_ROLLOUT_STATE_REVERTED || !acts[3].Spec.GetUpdate().GetAutoRevert() {
		t.Errorf("the bad act must fail its health check and be reverted: %v", acts[3].Spec)
	}
	v5 := acts[4]
	u := v5.Spec.GetUpdate()
	if !v5.ServesErrors || len(v5.Spec.GetEnv()) != 0 || v5.Want != deployv1.RolloutState_ROLLOUT_STATE_REVERTED || !u.GetAutoRevert() ||
		u.GetStrategy() != deployv1.Strategy_STRATEGY_CANARY || u.GetCanary().GetAnalysis() == nil || u.GetCanary().GetSteps()[0].GetWeight() != 20 {
		t.Errorf("the fifth act must be a 20%% canary with analysis, its image (not its spec) serving errors, reverted: %+v", v5)
	}
	if vs := platformspec.Validate(v5.Spec); len(vs) != 0 {
		t.Errorf("the fifth act's spec: %v", vs)
	}
}
