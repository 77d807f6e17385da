package rollout

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestConfigFromSpecDefaults(t *testing.T) {
	c, err := ConfigFromSpec(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY})
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxParallel != 1 || c.MinHealthyTime != 3*time.Second || c.HealthyDeadline != time.Minute ||
		c.ProgressDeadline != 5*time.Minute || c.ScaleDownDelay != 30*time.Second ||
		c.PreviewHeader != "X-Slipway-Preview" || c.FlapTolerance != DefaultFlapTolerance {
		t.Errorf("defaults not applied: %+v", c)
	}
	if len(c.Steps) != 3 || c.Steps[0].Weight != 10 || c.Steps[2].Weight != 100 {
		t.Errorf("default canary steps: %+v", c.Steps)
	}
	r, err := ConfigFromSpec(nil)
	if err != nil || r.Strategy != deployv1.Strategy_STRATEGY_ROLLING || len(r.Steps) != 0 {
		t.Errorf("nil update: %+v, %v", r, err)
	}
}

func TestConfigFromSpecCopiesFields(t *testing.T) {
	c, err := ConfigFromSpec(&deployv1.UpdateStrategy{
		Strategy:         deployv1.Strategy_STRATEGY_CANARY,
		MaxParallel:      3,
		MinHealthyTime:   durationpb.New(2 * time.Second),
		HealthyDeadline:  durationpb.New(20 * time.Second),
		ProgressDeadline: durationpb.New(time.Minute),
		AutoRevert:       true,
		AutoPromote:      true,
		ScaleDownDelay:   durationpb.New(time.Second),
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
			{Weight: 20, Pause: durationpb.New(10 * time.Second)}, {Weight: 60, Manual: true}, {Weight: 100},
		}},
		BlueGreen: &deployv1.BlueGreenStrategy{PreviewHeader: "X-Try"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Strategy: deployv1.Strategy_STRATEGY_CANARY, MaxParallel: 3, MinHealthyTime: 2 * time.Second,
		HealthyDeadline: 20 * time.Second, ProgressDeadline: time.Minute, FlapTolerance: DefaultFlapTolerance,
		AutoRevert: true, AutoPromote: true, ScaleDownDelay: time.Second, PreviewHeader: "X-Try",
		Steps: []CanaryStep{{Weight: 20, Pause: 10 * time.Second}, {Weight: 60, Manual: true}, {Weight: 100}},
	}
	if a, b := mustJSON(c), mustJSON(want); string(a) != string(b) {
		t.Errorf("got %s\nwant %s", a, b)
	}
}

func TestConfigFromSpecRejects(t *testing.T) {
	for _, tc := range []struct {
		field string
		u     *deployv1.UpdateStrategy
	}{
		{"update.strategy", &deployv1.UpdateStrategy{Strategy: 42}},
		{"update.max_parallel", &deployv1.UpdateStrategy{MaxParallel: -1}},
		{"update.min_healthy_time", &deployv1.UpdateStrategy{MinHealthyTime: durationpb.New(2 * time.Minute)}},
		{"update.healthy_deadline", &deployv1.UpdateStrategy{HealthyDeadline: durationpb.New(10 * time.Minute)}},
		{"update.scale_down_delay", &deployv1.UpdateStrategy{ScaleDownDelay: durationpb.New(-time.Second)}},
		{"update.canary.steps[1].weight", &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50}, {Weight: 40}}}}},
		{"update.canary.steps[0].weight", &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 101}}}}},
		{"update.canary.steps[0].pause", &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 10, Manual: true, Pause: durationpb.New(time.Second)}}}}},
	} {
		_, err := ConfigFromSpec(tc.u)
		if !errors.Is(err, ErrInvalidSpec) || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: got %v, want an ErrInvalidSpec naming the field", tc.field, err)
		}
	}
}

func TestNewRejects(t *testing.T) {
	ok := Spec{Service: "web", From: 1, FromCount: 2, To: 2, Count: 2}
	for _, tc := range []struct {
		field string
		edit  func(*Spec)
	}{
		{"service", func(s *Spec) { s.Service = "" }},
		{"to", func(s *Spec) { s.To = 0 }},
		{"to", func(s *Spec) { s.To = 1 }},
		{"count", func(s *Spec) { s.Count = -1 }},
		{"from_count", func(s *Spec) { s.FromCount = -2 }},
		{"update.max_parallel", func(s *Spec) { s.Config.MaxParallel = -3 }},
	} {
		s := ok
		tc.edit(&s)
		_, err := New(s)
		if !errors.Is(err, ErrInvalidSpec) || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
	if _, err := New(ok); err != nil {
		t.Fatal(err)
	}
}

// TestStateJSONRoundTrip: the committed form of a State in the middle of a
// rollout decodes to a State that encodes to the same bytes and decides the
// same as the original.
func TestStateJSONRoundTrip(t *testing.T) {
	w := newWorld(t)
	if err := w.runScript("inline", "stable v1 x4\ndeploy rolling v2 count=4 max_parallel=2\nreport v2 passing\ntick 3s"); err != nil {
		t.Fatal(err)
	}
	s := w.current()
	if len(s.PendingStops) == 0 || s.Weights[2] != 50 {
		t.Fatalf("script did not reach the middle of the rollout: %+v", s)
	}
	b1, _ := json.Marshal(s)
	var back State
	if err := json.Unmarshal(b1, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if string(b1) != string(b2) {
		t.Fatalf("round trip changed the state:\n%s\n%s", b1, b2)
	}
	obs := w.observe()
	obs.AckedGeneration = s.Generation
	n1, p1 := Step(s, obs)
	n2, p2 := Step(back, obs)
	if string(mustJSON(n1, p1)) != string(mustJSON(n2, p2)) || len(p1.Stop) != 2 {
		t.Fatalf("decoded state decides differently: %+v vs %+v", p1, p2)
	}
}

func TestServingBound(t *testing.T) {
	for _, c := range []struct {
		u     *deployv1.UpdateStrategy
		count int
		want  int
	}{
		{&deployv1.UpdateStrategy{}, 4, 5}, // max_parallel defaults to 1
		{&deployv1.UpdateStrategy{MaxParallel: 2}, 4, 6},
		{&deployv1.UpdateStrategy{MaxSurge: "100%", MaxUnavailable: "0"}, 4, 8},
		{&deployv1.UpdateStrategy{MaxSurge: "0", MaxUnavailable: "1"}, 4, 4},
		{&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 100}}}}, 3, 6},
		{&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN}, 3, 6},
	} {
		cfg, err := ConfigFromSpec(c.u)
		if err != nil {
			t.Fatalf("%v: %v", c.u, err)
		}
		if got := cfg.ServingBound(c.count); got != c.want {
			t.Errorf("%v, count %d: bound %d, want %d", c.u, c.count, got, c.want)
		}
	}
}
