package render

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func canarySpec(image string, steps ...*deployv1.CanaryStep) *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{Name: "web", Image: image, Count: 4, Port: 8080, Env: map[string]string{"A": "1"},
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, MinHealthyTime: durationpb.New(3 * time.Second),
			HealthyDeadline: durationpb.New(time.Minute), Canary: &deployv1.CanaryStrategy{Steps: steps}}}
}

func TestSpecDiff(t *testing.T) {
	old := canarySpec("slipway/demo:v2", &deployv1.CanaryStep{Weight: 10, Pause: durationpb.New(30 * time.Second)}, &deployv1.CanaryStep{Weight: 100})
	new := canarySpec("slipway/demo:v3", &deployv1.CanaryStep{Weight: 20, Pause: durationpb.New(30 * time.Second)}, &deployv1.CanaryStep{Weight: 50, Manual: true}, &deployv1.CanaryStep{Weight: 100})
	new.Env = map[string]string{"B": "2"}
	want := []Change{
		{Field: `env["A"]`, From: "1"},
		{Field: `env["B"]`, To: "2"},
		{Field: "image", From: "slipway/demo:v2", To: "slipway/demo:v3"},
		{Field: "update.canary.steps[0].weight", From: "10", To: "20"},
		{Field: "update.canary.steps[1].manual", To: "true"},
		{Field: "update.canary.steps[1].weight", From: "100", To: "50"},
		{Field: "update.canary.steps[2].weight", To: "100"},
	}
	if diff := cmp.Diff(want, SpecDiff(old, new)); diff != "" {
		t.Errorf("SpecDiff mismatch (-want +got):\n%s", diff)
	}
	if d := SpecDiff(old, old); len(d) != 0 {
		t.Errorf("SpecDiff of equal specs = %v", d)
	}
}

func TestWritePlanCanary(t *testing.T) {
	next := canarySpec("slipway/demo:v3", &deployv1.CanaryStep{Weight: 10, Pause: durationpb.New(30 * time.Second)},
		&deployv1.CanaryStep{Weight: 50, Manual: true}, &deployv1.CanaryStep{Weight: 100})
	p := &Plan{Service: "web", Rollout: "web-4", Release: 4, From: 3, Compared: 3, Image: "slipway/demo:v3", FromImage: "slipway/demo:v2",
		Strategy: "canary", Changes: []Change{{Field: "image", From: "slipway/demo:v2", To: "slipway/demo:v3"}},
		Steps: RolloutSteps(next, "web-4", 3, 4), Notes: []string{"rollout web-3 is active"}}
	var b bytes.Buffer
	if err := WritePlan(&b, p); err != nil {
		t.Fatal(err)
	}
	want := `plan: service web, release #4 (slipway/demo:v3) replacing #3 (slipway/demo:v2), canary as rollout web-4

changes from #3:
  ~ image: slipway/demo:v2 -> slipway/demo:v3

rollout steps:
  1/4  10%   1 inst  #4 at 10% (#3 at 90%)                          holds 30s
  2/4  50%   2 inst  #4 at 50% (#3 at 50%)                          waits for promote: slipctl rollout promote web-4
  3/4  100%  4 inst  #4 at 100% (#3 at 0%)                          moves on
  4/4  100%  4 inst  #4 at 100% with all 4 instance(s); #3 stopped  each healthy for 3s within 1m

note: rollout web-3 is active

nothing was deployed
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("WritePlan mismatch (-want +got):\n%s", diff)
	}
}

func TestRolloutStepsPerStrategy(t *testing.T) {
	rolling := &deployv1.ServiceSpec{Count: 5, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING, MaxParallel: 2}}
	var got []string
	for _, s := range RolloutSteps(rolling, "web-2", 1, 2) {
		got = append(got, s.What)
	}
	want := []string{
		"batch 1/3: 2/5 instance(s) of #2, as many of #1 stopped",
		"batch 2/3: 4/5 instance(s) of #2, as many of #1 stopped",
		"batch 3/3: 5/5 instance(s) of #2, as many of #1 stopped",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rolling mismatch (-want +got):\n%s", diff)
	}
	bg := &deployv1.ServiceSpec{Count: 3, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN,
		ScaleDownDelay: durationpb.New(30 * time.Second), BlueGreen: &deployv1.BlueGreenStrategy{PreviewHeader: "X-Slipway-Preview"}}}
	steps := RolloutSteps(bg, "web-2", 1, 2)
	if len(steps) != 3 || steps[1].Wait != "waits for promote: slipctl rollout promote web-2" || steps[2].Wait != "holds 30s" || steps[0].Weight != 0 {
		t.Errorf("blue/green steps = %+v", steps)
	}
	if first := RolloutSteps(bg, "web-1", 0, 1); len(first) != 1 || first[0].Weight != 100 || first[0].Instances != 3 {
		t.Errorf("first deploy steps = %+v", first)
	}
}
