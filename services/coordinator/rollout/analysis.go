package rollout

import (
	"fmt"
	"time"

	"slipway.dev/coordinator/analysis"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// stepAnalysis is the analysis of the step s is in, nil when the step is
// not judged (or its traffic is not in force yet): a canary step's, a
// blue/green preview's (judged on the requests the preview header routed
// to the new colour), or that of a rolling batch's (the new release against
// the old while both serve, before the next batch; with max_surge too,
// from when the batch is healthy and routed).
func stepAnalysis(s State) *analysis.Config {
	if Terminal(s.Phase) || !s.StepApplied || s.From == 0 {
		return nil
	}
	switch s.Config.Strategy {
	case deployv1.Strategy_STRATEGY_CANARY:
		if s.Stage != StageDeploy || s.Step >= len(s.Config.Steps) {
			return nil
		}
		return s.Config.Steps[s.Step].Analysis
	case deployv1.Strategy_STRATEGY_BLUE_GREEN:
		if s.Stage != StagePreview {
			return nil
		}
	default:
		if s.Stage != StageDeploy {
			return nil
		}
		if s.Config.surgeMode() && s.Ordered[s.To] >= s.Count {
			return nil // the last batch is not judged
		}
	}
	return s.Config.Analysis
}

// startAnalysis marks the traffic of a judged preview or rolling batch in
// force: its first window starts now.
func (r *run) startAnalysis() {
	r.s.StepApplied, r.s.StepPassed = true, false
	r.s.AnalysisFrom = r.now
}

// analysed judges the preview or rolling batch in force and reports whether
// it may move on: after a passing verdict, or at once when an operator
// promoted (the promote overrides the analysis, as on a canary step).
// failed is set when a verdict failed the rollout.
func (r *run) analysed() (ok, failed bool) {
	a := r.s.Config.Analysis
	if a == nil || !r.s.StepApplied || r.s.StepPromoted || r.s.Promoted {
		return true, false
	}
	if r.judge(*a) {
		return false, true
	}
	return r.s.StepPassed, false
}

// AnalysisWindow returns the window whose golden signals the caller should
// pass as Observation.Signals on its next Step: the last full Interval
// before now, in whole seconds, provided it lies inside the current step
// after the last window judged. It returns false when no analysis is due.
func AnalysisWindow(s State, now time.Time) (from, to time.Time, ok bool) {
	a := stepAnalysis(s)
	if a == nil || s.OperatorPaused {
		return time.Time{}, time.Time{}, false
	}
	to = now.Truncate(time.Second)
	from = to.Add(-a.Interval)
	if from.Before(s.AnalysisFrom) {
		return time.Time{}, time.Time{}, false
	}
	return from, to, true
}

// AnalysisWebhooks are the webhooks of the step s is in (for the window
// AnalysisWindow returns).
func AnalysisWebhooks(s State) []analysis.Webhook {
	if a := stepAnalysis(s); a != nil {
		return a.Webhooks
	}
	return nil
}

// AnalysisQueries are the Prometheus gates of the step s is in.
func AnalysisQueries(s State) []analysis.PromQuery {
	if a := stepAnalysis(s); a != nil {
		return a.Prometheus
	}
	return nil
}

// nextAnalysis is when AnalysisWindow will next return a window.
func nextAnalysis(s State) (time.Time, bool) {
	a := stepAnalysis(s)
	if a == nil {
		return time.Time{}, false
	}
	t := s.AnalysisFrom.Add(a.Interval)
	if r := t.Truncate(time.Second); r.Before(t) {
		t = r.Add(time.Second)
	}
	return t, true
}

// judge applies the observed window's verdict, if it is the one due, and
// reports whether it failed the rollout.
func (r *run) judge(a analysis.Config) bool {
	sig := r.obs.Signals
	if sig == nil || sig.From.Before(r.s.AnalysisFrom) || sig.To.Sub(sig.From) < a.Interval {
		return false // none, or one judged already (or not ours)
	}
	r.s.AnalysisFrom = sig.To
	v := analysis.Judge(a, sig.Canary, sig.Stable, sig.Gates...)
	var counted analysis.Result
	counted, r.s.AnalysisFailures = a.Tally(r.s.AnalysisFailures, v.Result)
	if counted == analysis.Pass {
		r.s.StepPassed = true
	}
	rec := &AnalysisRecord{From: sig.From, To: sig.To, Verdict: v, Counted: counted, Failures: r.s.AnalysisFailures, FailureLimit: a.FailureLimit}
	window := fmt.Sprintf("window %s-%s", sig.From.UTC().Format("15:04:05"), sig.To.UTC().Format("15:04:05"))
	var msg string
	switch {
	case counted == analysis.Fail:
		msg = fmt.Sprintf("analysis of #%d failed (%d/%d), %s: %s", r.s.To, r.s.AnalysisFailures, a.FailureLimit, window, v)
	case v.Result == analysis.Inconclusive && counted == analysis.Inconclusive:
		msg = fmt.Sprintf("analysis of #%d inconclusive, holding (no_data hold), %s: %s", r.s.To, window, v)
	case v.Result == analysis.Inconclusive:
		msg = fmt.Sprintf("analysis of #%d inconclusive, counted as pass (no_data pass), %s: %s", r.s.To, window, v)
	default:
		msg = fmt.Sprintf("analysis of #%d passed, %s: %s", r.s.To, window, v)
	}
	r.plan.Events = append(r.plan.Events, Event{Kind: "analysis", Message: msg, Analysis: rec})
	if counted == analysis.Fail && r.s.AnalysisFailures >= a.FailureLimit {
		r.fail(fmt.Sprintf("analysis failed %d times (failure_limit %d): %s", r.s.AnalysisFailures, a.FailureLimit, v.Reason))
		return true
	}
	return false
}
