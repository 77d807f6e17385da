package rollout

import (
	"fmt"
	"strings"
	"time"

	"slipway.dev/coordinator/analysis"
)

// HookPoint is where in a rollout a hook is called (Flagger's points).
type HookPoint string

// The hook points.
const (
	// HookPreRollout gates the start: nothing of the new release is placed
	// before it passes; a failing answer counts as an analysis failure.
	HookPreRollout HookPoint = "pre_rollout"
	// HookRollout gates each canary step once its weight is in force, and
	// each rolling batch but the last once its traffic is in force (before
	// the next batch is placed); a failing answer counts as an analysis
	// failure.
	HookRollout HookPoint = "rollout"
	// HookConfirmPromotion gates the promotion (a canary's move to all
	// traffic, a blue/green switch); a failing answer holds the rollout.
	HookConfirmPromotion HookPoint = "confirm_promotion"
	// HookPostRollout is told of a success.
	HookPostRollout HookPoint = "post_rollout"
	// HookRollback is told of a revert, an abort or a failure.
	HookRollback HookPoint = "rollback"
)

// DefaultHookInterval is how long a failed gate waits before it is asked
// again, when its hooks set no interval.
const DefaultHookInterval = 10 * time.Second

// Hook is one HTTP hook of a rollout.
type Hook struct {
	// Name identifies it in events.
	Name string `json:"Name"`
	// Point is where it is called.
	Point HookPoint `json:"Point"`
	// URL is POSTed to.
	URL string `json:"URL"`
	// Timeout bounds one attempt.
	Timeout time.Duration `json:"Timeout"`
	// Retries are further attempts after a failed one.
	Retries int `json:"Retries,omitempty"`
	// Interval is the wait after a failing answer before the gate is asked
	// again.
	Interval time.Duration `json:"Interval,omitempty"`
}

// Webhook is h as the webhook adapter asks it.
func (h Hook) Webhook() analysis.Webhook {
	return analysis.Webhook{Name: h.Name, URL: h.URL, Timeout: h.Timeout, Retries: h.Retries}
}

// HookCall asks the hooks of one point: a gate the rollout waits at (see
// DueHooks) or, in Plan.Hooks, hooks told of the outcome.
type HookCall struct {
	// Key identifies the ask; the answer must carry it (HookAnswer.Key).
	Key string
	// Point is the hooks' point, Step the rollout's step when asked.
	Point HookPoint
	// Step is the step index.
	Step int
	// Hooks are the hooks to POST to.
	Hooks []Hook
}

// HookAnswer is what the hooks of a gate answered.
type HookAnswer struct {
	// Key is the HookCall.Key answered.
	Key string
	// Results are the hooks' answers.
	Results []HookResult
}

// HookResult is one hook's answer.
type HookResult struct {
	// Name is the hook's name.
	Name string
	// Passed is true for a 2xx answer.
	Passed bool
	// Detail says what it answered.
	Detail string
}

func (c Config) hooksAt(p HookPoint) []Hook {
	var out []Hook
	for _, h := range c.Hooks {
		if h.Point == p {
			out = append(out, h)
		}
	}
	return out
}

// DueHooks returns the gate the rollout waits at, to be asked now (and
// answered in Observation.Hook with its Key): false when it waits at none,
// or a failed gate's interval has not passed yet.
func DueHooks(s State, now time.Time) (HookCall, bool) {
	if s.HookGate == "" || Terminal(s.Phase) || s.OperatorPaused || now.Before(s.HookRetryAt) {
		return HookCall{}, false
	}
	point, _, _ := strings.Cut(s.HookGate, "@")
	return HookCall{Key: hookKey(s), Point: HookPoint(point), Step: s.Step, Hooks: s.Config.hooksAt(HookPoint(point))}, true
}

func hookKey(s State) string { return fmt.Sprintf("%s#%d", s.HookGate, s.HookAttempt+1) }

func hookNames(hs []Hook) string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	return strings.Join(names, ",")
}

// gate reports whether the hooks of point let the rollout go on at its
// current step (true when it has none, or they passed), and whether a
// failing answer failed the rollout. A failing pre_rollout or rollout
// answer counts as an analysis failure (the step's failure_limit, else
// analysis.DefaultFailureLimit); a failing confirm_promotion answer only
// holds. Either is asked again after the hooks' interval. The failure
// limit counts the gate's failed answers in a row.
func (r *run) gate(point HookPoint) (pass, failed bool) {
	hooks := r.s.Config.hooksAt(point)
	if len(hooks) == 0 {
		return true, false
	}
	gate := fmt.Sprintf("%s@%d", point, r.s.Step)
	if point == HookPreRollout {
		gate = string(point) + "@0"
	}
	if r.s.HookPassed == gate {
		return true, false
	}
	r.waitingHook = true
	if r.s.HookGate != gate {
		r.s.HookGate, r.s.HookAttempt, r.s.HookRetryAt = gate, 0, time.Time{}
		r.event("hook", "%s: asking %s", point, hookNames(hooks))
		return false, false
	}
	ans := r.obs.Hook
	if ans == nil || ans.Key != hookKey(r.s) {
		return false, false
	}
	r.s.HookAttempt++
	var bad []string
	for _, res := range ans.Results {
		if !res.Passed {
			bad = append(bad, res.Name+": "+res.Detail)
		}
	}
	if len(ans.Results) < len(hooks) {
		bad = append(bad, fmt.Sprintf("%d of %d hooks answered", len(ans.Results), len(hooks)))
	}
	if len(bad) == 0 {
		r.s.HookPassed = gate
		r.s.HookGate, r.s.HookAttempt, r.s.HookRetryAt = "", 0, time.Time{}
		r.waitingHook = false
		r.event("hook", "%s: %s passed", point, hookNames(hooks))
		return true, false
	}
	interval := DefaultHookInterval
	for _, h := range hooks {
		if h.Interval > 0 {
			interval = min(interval, h.Interval)
		}
	}
	r.s.HookRetryAt = r.now.Add(interval)
	why := strings.Join(bad, "; ")
	if point == HookConfirmPromotion {
		r.s.Message = fmt.Sprintf("promotion of #%d held by confirm_promotion hook: %s", r.s.To, why)
		r.event("hook", "%s failed (attempt %d), holding; asked again in %s: %s", point, r.s.HookAttempt, interval, why)
		return false, false
	}
	limit := analysis.DefaultFailureLimit
	if st := r.s.Step; st < len(r.s.Config.Steps) && r.s.Config.Steps[st].Analysis != nil && r.s.Config.Steps[st].Analysis.FailureLimit > 0 {
		limit = r.s.Config.Steps[st].Analysis.FailureLimit
	} else if a := r.s.Config.Analysis; len(r.s.Config.Steps) == 0 && a != nil && a.FailureLimit > 0 {
		limit = a.FailureLimit // a rolling batch's or blue/green preview's
	}
	// The gate's failed answers in a row: a passing answer clears the gate
	// (and HookAttempt with it), like a passing verdict resets the
	// analysis's count. The two are counted apart, so that passing windows
	// judged while a rollout hook keeps failing do not reset it.
	fails := r.s.HookAttempt
	r.event("hook", "%s failed (%d/%d), asked again in %s: %s", point, fails, limit, interval, why)
	if fails >= limit {
		r.waitingHook = false
		r.fail(fmt.Sprintf("%s hook failed %d times (failure_limit %d): %s", point, fails, limit, why))
		return false, true
	}
	return false, false
}

// tellHooks asks the post_rollout or rollback hooks once the rollout has
// just ended (their answers change nothing).
func (r *run) tellHooks(wasTerminal bool) {
	if wasTerminal || !Terminal(r.s.Phase) {
		return
	}
	var point HookPoint
	switch r.s.Phase {
	case phaseSucceeded:
		point = HookPostRollout
	case phaseSuperseded:
		return
	default: // reverted, aborted, failed
		point = HookRollback
	}
	if hooks := r.s.Config.hooksAt(point); len(hooks) > 0 {
		r.plan.Hooks = append(r.plan.Hooks, HookCall{Key: fmt.Sprintf("%s@%d", point, r.s.Step), Point: point, Step: r.s.Step, Hooks: hooks})
		r.event("hook", "%s: telling %s", point, hookNames(hooks))
	}
}
