package engine

import (
	"context"
	"strings"
	"sync"
	"time"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/coordinator/webhook"
)

// gateCall is one ask of the hooks of the gate a rollout waits at.
type gateCall struct {
	key     string
	done    chan struct{}
	results []rollout.HookResult // set before done is closed
}

// observeHooks asks, in the background, the hooks of the gate each rollout
// waits at (rollout.DueHooks) and returns the answers that came, by rollout
// id; a gate is answered on the pass after all its hooks answered.
func (e *Engine) observeHooks(now time.Time) map[string]*rollout.HookAnswer {
	out := map[string]*rollout.HookAnswer{}
	asking := map[string]bool{}
	for _, ro := range e.rolloutsToStep() {
		st, ok, err := e.machine(ro)
		if err != nil || !ok {
			continue
		}
		call, due := rollout.DueHooks(st, now)
		if !due {
			continue
		}
		asking[ro.GetId()] = true
		gc := e.gates[ro.GetId()]
		if gc == nil || gc.key != call.Key {
			e.gates[ro.GetId()] = e.askGate(ro.GetId(), st, call)
			continue
		}
		select {
		case <-gc.done:
			out[ro.GetId()] = &rollout.HookAnswer{Key: gc.key, Results: gc.results}
		default:
		}
	}
	for id := range e.gates {
		if !asking[id] {
			delete(e.gates, id)
		}
	}
	return out
}

func hookBody(id string, st rollout.State, point rollout.HookPoint, name string) webhook.HookContext {
	return webhook.HookContext{Hook: name, Type: string(point), Rollout: id, Service: st.Service, CanaryRelease: st.To, StableRelease: st.From,
		Step: st.Step + 1, Weight: st.Weights[st.To], Phase: strings.ToLower(strings.TrimPrefix(st.Phase.String(), "ROLLOUT_STATE_"))}
}

// askGate POSTs to every hook of call in the background.
func (e *Engine) askGate(id string, st rollout.State, call rollout.HookCall) *gateCall {
	gc := &gateCall{key: call.Key, done: make(chan struct{})}
	go func() {
		defer close(gc.done)
		results := make([]rollout.HookResult, len(call.Hooks))
		var wg sync.WaitGroup
		for i, h := range call.Hooks {
			if !e.cfg.GateAllow.Allows(h.URL) {
				// Committed before the allowlist changed: failed, never asked.
				g := analysis.Refused("hook", h.Name)
				results[i] = rollout.HookResult{Name: h.Name, Passed: false, Detail: g.Detail}
				continue
			}
			wg.Go(func() {
				g := webhook.Post(context.Background(), e.cfg.HTTPClient, h.Webhook(), hookBody(id, st, call.Point, h.Name))
				results[i] = rollout.HookResult{Name: h.Name, Passed: g.Passed, Detail: g.Detail}
			})
		}
		wg.Wait()
		gc.results = results
	}()
	return gc
}

// tellHooks POSTs the end of a rollout to its post_rollout or rollback
// hooks, once its plan is committed; their answers change nothing and are
// only logged. A leader lost before it told them does not tell them again.
func (e *Engine) tellHooks(id string, st rollout.State, calls []rollout.HookCall) {
	for _, call := range calls {
		for _, h := range call.Hooks {
			if !e.cfg.GateAllow.Allows(h.URL) {
				e.log.Warn("hook not told: its URL is outside -analysis-gate-allow", "rollout", id, "point", call.Point, "hook", h.Name)
				continue
			}
			go func() {
				g := webhook.Post(context.Background(), e.cfg.HTTPClient, h.Webhook(), hookBody(id, st, call.Point, h.Name))
				if g.Passed {
					e.log.Info("hook told", "rollout", id, "point", call.Point, "hook", h.Name, "detail", g.Detail)
				} else {
					e.log.Warn("hook failed", "rollout", id, "point", call.Point, "hook", h.Name, "detail", g.Detail)
				}
			}()
		}
	}
}
