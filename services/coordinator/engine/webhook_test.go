package engine_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/webhook"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// An analysis webhook (a real HTTP server) that answers 500 fails each
// window it is asked about: at failure_limit the canary is reverted, the
// verdicts naming the gate; the webhook received each window's context.
func TestAnalysisWebhookGatesTheCanary(t *testing.T) {
	var inflight, calls atomic.Int32
	var mu sync.Mutex
	var bodies []webhook.Context
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Add(-1)
		calls.Add(1)
		var c webhook.Context
		if err := json.NewDecoder(r.Body).Decode(&c); err == nil {
			mu.Lock()
			bodies = append(bodies, c)
			mu.Unlock()
		}
		http.Error(w, "not today", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)

	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	u := fast(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true, Canary: &deployv1.CanaryStrategy{
		Analysis: &deployv1.Analysis{Interval: durationpb.New(2 * time.Second), FailureLimit: 2,
			Webhooks: []*deployv1.WebhookGate{{Name: "ci", Url: srv.URL + "/gate", Timeout: durationpb.New(2 * time.Second)}}},
		Steps: []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(2 * time.Second)}, {Weight: 100}}}})
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, u))
	for i := 0; h.rollout(v2).GetState() != deployv1.RolloutState_ROLLOUT_STATE_REVERTED; i++ {
		if i == 300 {
			t.Fatalf("never reverted: %v", h.rollout(v2))
		}
		h.pass()
		// The webhook is asked in the background: let an asked one answer
		// before the clock moves on (the next pass judges its window).
		testenv.Eventually(t, 5*time.Second, "webhook answered", func() error {
			if n := inflight.Load(); n != 0 {
				return fmt.Errorf("%d requests in flight", n)
			}
			return nil
		})
		h.clock.Add(500 * time.Millisecond)
	}
	ro := h.rollout(v2)
	if !strings.Contains(ro.GetMessage(), "analysis failed 2 times (failure_limit 2): webhook.ci: POST "+srv.URL+"/gate answered 500") {
		t.Errorf("reverted with %q, want the webhook named", ro.GetMessage())
	}
	if n := calls.Load(); n < 2 {
		t.Errorf("the webhook was asked %d times, want one per failed window (2)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) == 0 || bodies[0].Rollout != v2 || bodies[0].CanaryRelease != 2 || bodies[0].StableRelease != 1 || bodies[0].Weight != 50 ||
		bodies[0].WindowEnd.Sub(bodies[0].WindowStart) != 2*time.Second {
		t.Errorf("context received: %+v", bodies)
	}
}

// A committed webhook outside the leader's -analysis-gate-allow fails each
// window without being asked (the server sees no request): the canary is
// reverted, the verdict saying why.
func TestAnalysisGateOutsideAllowlistFailsUnasked(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	h := newHarness(t, "n1", "n2")
	allow, err := analysis.ParseAllowlist("https://ci.example.com/gates/")
	if err != nil {
		t.Fatal(err)
	}
	h.gateAllow = allow
	h.newLeader()
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	u := fast(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true, Canary: &deployv1.CanaryStrategy{
		Analysis: &deployv1.Analysis{Interval: durationpb.New(2 * time.Second), FailureLimit: 2,
			Webhooks: []*deployv1.WebhookGate{{Name: "ci", Url: srv.URL + "/gate"}}},
		Steps: []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(2 * time.Second)}, {Weight: 100}}}})
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, u))
	h.run(500*time.Millisecond, "v2 reverted", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_REVERTED))
	if ro := h.rollout(v2); !strings.Contains(ro.GetMessage(), "webhook.ci: not asked: its URL is outside the coordinator's -analysis-gate-allow") {
		t.Errorf("reverted with %q, want the refused gate named", ro.GetMessage())
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the webhook outside the allowlist was asked %d times", n)
	}
}

// A committed rollout hook (and rollback hook) outside the leader's
// -analysis-gate-allow is never asked: each ask of the gate fails unasked,
// at failure_limit the canary is reverted, and the rollback hook is not
// told (the server sees no request at all).
func TestHookOutsideAllowlistFailsUnasked(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	h := newHarness(t, "n1", "n2")
	allow, err := analysis.ParseAllowlist("https://ci.example.com/gates/")
	if err != nil {
		t.Fatal(err)
	}
	h.gateAllow = allow
	h.newLeader()
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	u := fast(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(time.Second)}, {Weight: 100}}},
		Hooks: []*deployv1.Hook{
			{Name: "step", Type: deployv1.HookType_HOOK_TYPE_ROLLOUT, Url: srv.URL + "/step", Interval: durationpb.New(time.Second)},
			{Name: "page", Type: deployv1.HookType_HOOK_TYPE_ROLLBACK, Url: srv.URL + "/page"}}})
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, u))
	h.run(500*time.Millisecond, "v2 reverted", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_REVERTED))
	if ro := h.rollout(v2); !strings.Contains(ro.GetMessage(), "rollout hook failed 2 times (failure_limit 2): step: not asked: its URL is outside the coordinator's -analysis-gate-allow") {
		t.Errorf("reverted with %q, want the refused hook named", ro.GetMessage())
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("hooks outside the allowlist were asked %d times", n)
	}
}
