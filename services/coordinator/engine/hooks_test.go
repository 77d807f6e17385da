package engine_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/webhook"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// A confirm_promotion hook (a real HTTP server) answering 503 holds a
// canary at its last partial step, pass after pass, without failing it;
// once it answers 200 the canary is promoted. The pre_rollout hook was
// asked before anything was placed and the post_rollout hook is told of
// the success, each with the rollout's context.
func TestConfirmHookHoldsPromotionUntil2xx(t *testing.T) {
	var confirm atomic.Bool
	var inflight atomic.Int32
	var mu sync.Mutex
	calls := map[string][]webhook.HookContext{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		defer inflight.Add(-1)
		var c webhook.HookContext
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		calls[c.Type] = append(calls[c.Type], c)
		mu.Unlock()
		if c.Type == "confirm_promotion" && !confirm.Load() {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	count := func(point string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(calls[point])
	}

	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	hook := func(name string, typ deployv1.HookType) *deployv1.Hook {
		return &deployv1.Hook{Name: name, Type: typ, Url: srv.URL + "/" + name, Timeout: durationpb.New(2 * time.Second), Interval: durationpb.New(time.Second)}
	}
	u := fast(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(time.Second)}, {Weight: 100}}},
		Hooks: []*deployv1.Hook{hook("smoke", deployv1.HookType_HOOK_TYPE_PRE_ROLLOUT), hook("confirm", deployv1.HookType_HOOK_TYPE_CONFIRM_PROMOTION),
			hook("tell", deployv1.HookType_HOOK_TYPE_POST_ROLLOUT)}})
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, u))
	step := func() {
		h.pass()
		// Hooks are asked in the background: let an asked one answer
		// before the clock moves on (the next pass reads its answer).
		testenv.Eventually(t, 5*time.Second, "hooks answered", func() error {
			if n := inflight.Load(); n != 0 {
				return fmt.Errorf("%d requests in flight", n)
			}
			return nil
		})
		h.clock.Add(500 * time.Millisecond)
	}
	for i := 0; count("confirm_promotion") < 4; i++ {
		if i == 200 {
			t.Fatalf("the confirm hook was asked %d times: %v", count("confirm_promotion"), h.rollout(v2))
		}
		step()
	}
	ro := h.rollout(v2)
	if ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_RUNNING || ro.GetWeights()["2"] != 50 {
		t.Fatalf("held rollout = %s weights %v (%s), want running at #2=50%%", ro.GetState(), ro.GetWeights(), ro.GetMessage())
	}
	if count("pre_rollout") != 1 || count("post_rollout") != 0 {
		t.Errorf("pre_rollout asked %d times, post_rollout %d; want 1 and 0", count("pre_rollout"), count("post_rollout"))
	}

	confirm.Store(true)
	for i := 0; h.rollout(v2).GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED; i++ {
		if i == 200 {
			t.Fatalf("never promoted after the confirm hook passed: %v", h.rollout(v2))
		}
		step()
	}
	testenv.Eventually(t, 10*time.Second, "post_rollout told", func() error {
		if count("post_rollout") != 1 {
			return fmt.Errorf("post_rollout told %d times", count("post_rollout"))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	c := calls["confirm_promotion"][0]
	if c.Rollout != v2 || c.Service != "web" || c.CanaryRelease != 2 || c.StableRelease != 1 || c.Hook != "confirm" || c.Weight != 50 {
		t.Errorf("confirm context = %+v", c)
	}
	if p := calls["post_rollout"][0]; p.Phase != "succeeded" || p.Hook != "tell" {
		t.Errorf("post_rollout context = %+v", p)
	}
}
