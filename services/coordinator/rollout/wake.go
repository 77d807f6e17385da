package rollout

import (
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Wake returns the earliest time after obs.Now at which Step would decide
// something even if nothing else is observed to change (a pause ending, an
// instance reaching min_healthy_time, a deadline passing), and false when
// only a new observation (health, acknowledgement, command) can move the
// rollout. The caller may sleep until then; it may also step earlier.
func Wake(s State, obs Observation) (time.Time, bool) {
	if Terminal(s.Phase) {
		return time.Time{}, false
	}
	w := waker{now: obs.Now}
	r := &run{s: s, obs: obs, now: obs.Now}
	c := s.Config
	if s.Phase == phasePending || s.Phase == deployv1.RolloutState_ROLLOUT_STATE_UNSPECIFIED {
		w.at(obs.Now.Add(time.Nanosecond))
	}
	if s.Stage == StageRestore {
		for _, in := range r.live(s.From) {
			if in.Health == HealthPassing {
				w.at(in.Since.Add(c.MinHealthyTime))
			}
		}
		w.after(s.RestoreStartedAt.Add(c.HealthyDeadline))
		return w.result()
	}
	for _, in := range r.live(s.To) {
		ever := contains(s.Healthy, in.ID)
		if in.Health == HealthPassing {
			w.at(in.Since.Add(c.MinHealthyTime))
		} else if ever {
			w.after(in.Since.Add(c.FlapTolerance))
		}
		if !ever {
			w.after(in.CreatedAt.Add(c.HealthyDeadline))
		}
	}
	if t, ok := nextAnalysis(s); ok && !s.OperatorPaused {
		w.at(t) // a manual step is judged too
	}
	if s.OperatorPaused || s.Phase == phasePaused { // paused, or waiting for a promote
		return w.result()
	}
	switch s.Stage {
	case StageDeploy, StageFinal:
		rolling := c.Strategy == deployv1.Strategy_STRATEGY_ROLLING
		if s.Stage == StageDeploy && rolling && c.Stagger > 0 && s.Step > 0 {
			w.at(s.StepStartedAt.Add(c.Stagger)) // the next rolling batch
		}
		if s.Stage == StageDeploy && !rolling && s.StepApplied && s.Step < len(c.Steps) {
			w.at(s.StepStartedAt.Add(c.Steps[s.Step].Pause))
		} else {
			w.after(s.ProgressAt.Add(c.ProgressDeadline))
		}
	case StageWarm:
		w.at(s.SwitchedAt.Add(c.ScaleDownDelay))
	}
	return w.result()
}

type waker struct {
	now  time.Time
	best time.Time
	ok   bool
}

// at records an event that happens at t (checks use "not before").
func (w *waker) at(t time.Time) {
	if !t.After(w.now) {
		return
	}
	if !w.ok || t.Before(w.best) {
		w.best, w.ok = t, true
	}
}

// after records a deadline that fires once t is passed (checks use ">").
func (w *waker) after(t time.Time) { w.at(t.Add(time.Nanosecond)) }

func (w *waker) result() (time.Time, bool) { return w.best, w.ok }
