package render

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/tree")

const (
	running = deployv1.RolloutState_ROLLOUT_STATE_RUNNING
	paused  = deployv1.RolloutState_ROLLOUT_STATE_PAUSED
)

func rel(n uint64, image string, s *deployv1.ServiceSpec) *deployv1.Release {
	c := proto.CloneOf(s)
	c.Image = image
	return &deployv1.Release{Service: "web", Number: n, Spec: c}
}

func ev(at time.Duration, kind string, state deployv1.RolloutState, step int32, msg string, healthy map[string]int32) *deployv1.RolloutEvent {
	return &deployv1.RolloutEvent{At: ts(at), Kind: kind, State: state, Step: step, Message: msg, Healthy: healthy}
}

// treeStates are scripted rollout states, one golden file each.
func treeStates() map[string]TreeInput {
	canary := &deployv1.ServiceSpec{Name: "web", Count: 4, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 10, Pause: durationpb.New(30 * time.Second)}, {Weight: 50, Manual: true}, {Weight: 100}}}}}
	rolling := &deployv1.ServiceSpec{Name: "web", Count: 5, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING, MaxParallel: 2}}
	bg := &deployv1.ServiceSpec{Name: "web", Count: 3, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN,
		ScaleDownDelay: durationpb.New(30 * time.Second), BlueGreen: &deployv1.BlueGreenStrategy{PreviewHeader: "X-Slipway-Preview"}}}
	canaryRels := map[uint64]*deployv1.Release{2: rel(2, "slipway/demo:v2", canary), 3: rel(3, "slipway/demo:v3", canary)}
	canaryRollout := func(state deployv1.RolloutState, step int32, w3 int32, awaiting bool, msg string) *deployv1.Rollout {
		return &deployv1.Rollout{Id: "web-3", Service: "web", FromRelease: 2, ToRelease: 3, Strategy: deployv1.Strategy_STRATEGY_CANARY,
			State: state, Step: step, AwaitingPromote: awaiting, Message: msg, CreatedAt: ts(0),
			Weights: map[string]int32{"2": 100 - w3, "3": w3}}
	}
	h := func(a, b int32) map[string]int32 { return map[string]int32{"2": a, "3": b} }
	return map[string]TreeInput{
		"canary_pause_countdown": {
			Rollout:  canaryRollout(running, 0, 10, false, ""),
			Releases: canaryRels,
			Events: []*deployv1.RolloutEvent{
				ev(0, "created", deployv1.RolloutState_ROLLOUT_STATE_PENDING, 0, "created release 3", nil),
				ev(2*time.Second, "placed", running, 0, "#3 x1 on track canary", h(4, 0)),
				ev(6*time.Second, "step", running, 0, "step 1/3: #3 at 10% with 1 instances", h(4, 1)),
			},
			Now: t0.Add(18 * time.Second),
		},
		"canary_waiting_for_promote": {
			Rollout:  canaryRollout(paused, 1, 50, true, "step 2/3 (#3 at 50%) waits for promote"),
			Releases: canaryRels,
			Events: []*deployv1.RolloutEvent{
				ev(0, "created", deployv1.RolloutState_ROLLOUT_STATE_PENDING, 0, "created release 3", nil),
				ev(6*time.Second, "step", running, 0, "step 1/3: #3 at 10% with 1 instances", h(4, 1)),
				ev(40*time.Second, "placed", running, 1, "#3 x1 on track canary", h(4, 1)),
				ev(44*time.Second, "step", running, 1, "step 2/3: #3 at 50% with 2 instances", h(4, 2)),
				ev(44*time.Second, "paused", paused, 1, "step 2/3 (#3 at 50%) waits for promote", h(4, 2)),
				ev(45*time.Second, "traffic", paused, 1, "generation 4: #2=50 #3=50", h(4, 2)),
			},
			Now: t0.Add(65 * time.Second),
		},
		"canary_operator_paused": {
			Rollout:  canaryRollout(paused, 0, 10, false, "paused by ann: investigating"),
			Releases: canaryRels,
			Events:   []*deployv1.RolloutEvent{ev(6*time.Second, "step", running, 0, "step 1/3: #3 at 10% with 1 instances", h(4, 1)), ev(9*time.Second, "paused", paused, 0, "paused by ann: investigating", h(4, 1))},
			Now:      t0.Add(20 * time.Second),
		},
		"canary_analysis": {
			Rollout:  canaryRollout(running, 0, 10, false, ""),
			Releases: canaryRels,
			Events: []*deployv1.RolloutEvent{
				ev(6*time.Second, "step", running, 0, "step 1/3: #3 at 10% with 1 instances", h(4, 1)),
				{At: ts(16 * time.Second), Kind: "analysis", State: running, Healthy: h(4, 1), Message: "analysis of #3 passed",
					Analysis: &deployv1.AnalysisVerdict{Result: deployv1.AnalysisResult_ANALYSIS_RESULT_PASS, Counted: deployv1.AnalysisResult_ANALYSIS_RESULT_PASS,
						Reason: "every check passed", Checks: []*deployv1.AnalysisCheck{
							{Name: "success_rate", Result: deployv1.AnalysisResult_ANALYSIS_RESULT_PASS, Detail: "99.8% >= 99.0%"},
							{Name: "error_rate_vs_stable", Result: deployv1.AnalysisResult_ANALYSIS_RESULT_PASS, Detail: "fisher p=0.62"}}}},
			},
			Now: t0.Add(20 * time.Second),
		},
		"rolling_batch": {
			Rollout: &deployv1.Rollout{Id: "web-8", Service: "web", FromRelease: 7, ToRelease: 8, Strategy: deployv1.Strategy_STRATEGY_ROLLING,
				State: running, Step: 1, CreatedAt: ts(0), Weights: map[string]int32{"7": 60, "8": 40}},
			Releases: map[uint64]*deployv1.Release{7: rel(7, "registry.local/team/web-frontend:2026.11.30-1", rolling), 8: rel(8, "registry.local/team/web-frontend:2026.12.01-3", rolling)},
			Events:   []*deployv1.RolloutEvent{ev(9*time.Second, "step", running, 0, "batch 1/3: 2/5 of #8 healthy, weights #7=60 #8=40", map[string]int32{"7": 3, "8": 2})},
			Now:      t0.Add(12 * time.Second),
		},
		"blue_green_preview": {
			Rollout: &deployv1.Rollout{Id: "web-5", Service: "web", FromRelease: 4, ToRelease: 5, Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN,
				State: paused, Step: 1, AwaitingPromote: true, CreatedAt: ts(0), Weights: map[string]int32{"4": 100}},
			Releases: map[uint64]*deployv1.Release{4: rel(4, "slipway/demo:v2", bg), 5: rel(5, "slipway/demo:v3", bg)},
			Events:   []*deployv1.RolloutEvent{ev(8*time.Second, "step", running, 1, "#5 healthy with 3 instances; preview with header X-Slipway-Preview", map[string]int32{"4": 3, "5": 3})},
			Now:      t0.Add(10 * time.Second),
		},
		"reverted": {
			Rollout: &deployv1.Rollout{Id: "web-4", Service: "web", FromRelease: 3, ToRelease: 4, Strategy: deployv1.Strategy_STRATEGY_ROLLING,
				State: deployv1.RolloutState_ROLLOUT_STATE_REVERTED, Step: 0, CreatedAt: ts(0), Weights: map[string]int32{"3": 100},
				Message: "1/2 instances of #4 healthy within healthy_deadline 10s; traffic back on #3"},
			Releases: map[uint64]*deployv1.Release{3: rel(3, "slipway/demo:v3", rolling), 4: rel(4, "slipway/demo:v4", rolling)},
			Events:   []*deployv1.RolloutEvent{ev(12*time.Second, "reverted", deployv1.RolloutState_ROLLOUT_STATE_REVERTED, 0, "1/2 instances of #4 healthy within healthy_deadline 10s; traffic back on #3", map[string]int32{"3": 5, "4": 1})},
			Now:      t0.Add(15 * time.Second),
		},
		"first_deploy_no_spec": {
			Rollout: &deployv1.Rollout{Id: "api-1", Service: "api", ToRelease: 1, Strategy: deployv1.Strategy_STRATEGY_CANARY,
				State: deployv1.RolloutState_ROLLOUT_STATE_PENDING, CreatedAt: ts(0)},
			Now: t0.Add(time.Second),
		},
	}
}

// TestTreeGolden renders scripted rollout states at a fixed width of 100
// columns, without colour, against testdata/tree/<state>.golden (go test
// -run TestTreeGolden -update rewrites them).
func TestTreeGolden(t *testing.T) {
	for name, in := range treeStates() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteTree(&b, in, 100); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "tree", name+".golden")
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("tree mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(b.String(), "\033") {
				t.Errorf("the tree must carry no escape sequences")
			}
		})
	}
}

func TestTreeFacts(t *testing.T) {
	states := treeStates()
	for _, tt := range []struct {
		state string
		wants []string
	}{
		{"canary_pause_countdown", []string{"step 1/3", "▶ 1/3   10%  1 instance(s) of #3  pause 30s, 18s left", "stable  #2", "slipway/demo:v2", "canary  #3", "10%  healthy 1/4"}},
		{"canary_waiting_for_promote", []string{"PAUSED  step 2/3", "✓ 1/3", "▶ 2/3   50%", "waiting for promote: slipctl rollout promote web-3", "· 3/3  100%"}},
		{"canary_analysis", []string{"├── analysis pass: every check passed", "│   ├── success_rate", "analysis  analysis pass: every check passed"}},
		{"canary_operator_paused", []string{"paused by an operator: slipctl rollout resume web-3"}},
		{"rolling_batch", []string{"▶ 2/3  batch: 4/5 instance(s) of #8", "healthy 2/5"}},
		{"blue_green_preview", []string{"preview #5", "waiting for promote: slipctl rollout promote web-5"}},
		{"reverted", []string{"REVERTED  started 15s ago", "✗ 1/3", "traffic back on #3"}},
	} {
		out := strings.Join(Tree(states[tt.state]), "\n")
		for _, w := range tt.wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s: tree lacks %q:\n%s", tt.state, w, out)
			}
		}
	}
	// Lines are cut to the width.
	var b bytes.Buffer
	_ = WriteTree(&b, states["rolling_batch"], 40)
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if n := len([]rune(l)); n > 40 {
			t.Errorf("line of %d runes at width 40: %q", n, l)
		}
	}
}

func TestLiveTreeRedrawsInPlace(t *testing.T) {
	in := treeStates()["canary_waiting_for_promote"]
	now := t0.Add(65 * time.Second)
	var b bytes.Buffer
	lt := NewLiveTree(&b, 100, func() time.Time { return now })
	var rels []*deployv1.Release
	for _, r := range in.Releases {
		rels = append(rels, r)
	}
	lt.SetReleases(rels)
	if b.Len() != 0 {
		t.Fatalf("drew before any rollout state: %q", b.String())
	}
	lt.Event(&deployv1.WatchRolloutResponse{Event: in.Events[0], Rollout: in.Rollout})
	first := len(Tree(TreeInput{Rollout: in.Rollout, Releases: in.Releases, Events: in.Events[:1], Now: now}))
	lt.Tick()
	if want := "\033[" + strconv.Itoa(first) + "A\r\033[J"; !strings.Contains(b.String(), want) {
		t.Errorf("Tick should move up %d lines and clear, got %q", first, b.String())
	}
	done := proto.CloneOf(in.Rollout)
	done.State = deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED
	lt.Done(done)
	n := b.Len()
	lt.Tick()
	if b.Len() != n || !strings.Contains(b.String(), "SUCCEEDED") {
		t.Errorf("after Done the tree stays as drawn, final state shown")
	}
}
