package rollout

import (
	"testing"
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestPauseEnds(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	base := State{Phase: deployv1.RolloutState_ROLLOUT_STATE_RUNNING, Step: 0, StepApplied: true, StepStartedAt: t0,
		Config: Config{Steps: []CanaryStep{{Weight: 20, Pause: 30 * time.Second}, {Weight: 50, Manual: true}, {Weight: 100}}}}
	for _, tc := range []struct {
		name   string
		change func(*State)
		want   time.Time
		ok     bool
	}{
		{"timed pause", func(*State) {}, t0.Add(30 * time.Second), true},
		{"weight not yet applied", func(s *State) { s.StepApplied = false }, time.Time{}, false},
		{"promoted step", func(s *State) { s.StepPromoted = true }, time.Time{}, false},
		{"operator pause", func(s *State) { s.OperatorPaused = true }, time.Time{}, false},
		{"manual step", func(s *State) { s.Step = 1 }, time.Time{}, false},
		{"last step, no pause", func(s *State) { s.Step = 2 }, time.Time{}, false},
		{"aborted", func(s *State) { s.Phase = deployv1.RolloutState_ROLLOUT_STATE_ABORTED }, time.Time{}, false},
		{"not a canary", func(s *State) { s.Config.Steps = nil }, time.Time{}, false},
	} {
		s := base
		s.Config.Steps = append([]CanaryStep(nil), base.Config.Steps...)
		tc.change(&s)
		if got, ok := s.PauseEnds(); ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("%s: PauseEnds = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
