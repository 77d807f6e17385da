package rollout

import "time"

// PauseEnds returns when the current canary step's timed pause ends: the
// step's weight is in force, its pause is a duration, and neither a promote
// nor an operator's pause overrides it. False otherwise (no timed pause, a
// manual step, a blue/green or rolling rollout, a final one).
func (s State) PauseEnds() (time.Time, bool) {
	if Terminal(s.Phase) || !s.StepApplied || s.StepPromoted || s.Promoted || s.OperatorPaused ||
		s.Step < 0 || s.Step >= len(s.Config.Steps) {
		return time.Time{}, false
	}
	st := s.Config.Steps[s.Step]
	if st.Manual || st.Pause <= 0 {
		return time.Time{}, false
	}
	return s.StepStartedAt.Add(st.Pause), true
}
