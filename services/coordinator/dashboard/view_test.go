package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestImageTag(t *testing.T) {
	for image, want := range map[string]string{
		"slipway/demo:v2":                     "v2",
		"registry:5000/team/web:1.4.2":        "1.4.2",
		"nginx":                               "nginx:latest",
		"ghcr.io/a/b@sha256:0123456789abcdef": "@0123456789ab",
		"demo":                                "demo:latest",
	} {
		if got := imageTag(image); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", image, got, want)
		}
	}
}

func TestReleaseNamesAndColours(t *testing.T) {
	var got []string
	for n := uint64(0); n <= 5; n++ {
		r := Release{Number: n}
		got = append(got, r.Label()+"="+r.Colour())
	}
	want := []string{"none=c-none", "#1=c0", "#2=c1", "#3=c2", "#4=c3", "#5=c0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("labels and colours (-want +got):\n%s", diff)
	}
}

func canarySpec() *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{Image: "slipway/demo:v2", Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
			{Weight: 20, Pause: durationpb.New(30 * time.Second)}, {Weight: 50, Manual: true}, {Weight: 100}}}}}
}

func TestRolloutViewButtonsAndPlan(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ix := indexReleases([]*deployv1.Release{{Number: 1, Spec: &deployv1.ServiceSpec{Image: "slipway/demo:v1"}}, {Number: 2, Spec: canarySpec()}})
	base := &deployv1.Rollout{Id: "web-2", Service: "web", FromRelease: 1, ToRelease: 2, Strategy: deployv1.Strategy_STRATEGY_CANARY,
		CreatedAt: timestamppb.New(now.Add(-time.Minute))}
	type buttons struct{ Promote, Pause, Resume, Abort bool }
	for _, tc := range []struct {
		name     string
		state    deployv1.RolloutState
		step     int32
		awaiting bool
		want     buttons
		label    string
		plan     []string
	}{
		{"running first step", deployv1.RolloutState_ROLLOUT_STATE_RUNNING, 0, false, buttons{true, true, false, true}, "running", []string{"current", "next", "next"}},
		{"paused by an operator", deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 0, false, buttons{true, false, true, true}, "paused", []string{"current", "next", "next"}},
		{"manual step", deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 1, true, buttons{true, false, false, true}, "waiting for promote", []string{"done", "current", "next"}},
		{"succeeded", deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 2, false, buttons{}, "succeeded", []string{"done", "done", "done"}},
		{"aborted", deployv1.RolloutState_ROLLOUT_STATE_ABORTED, 1, false, buttons{}, "aborted", []string{"done", "next", "next"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := proto.CloneOf(base)
			ro.State, ro.Step, ro.AwaitingPromote = tc.state, tc.step, tc.awaiting
			ro.Weights = map[string]int32{"1": 50, "2": 50}
			v := rolloutView(ro, canarySpec(), ix, now)
			if got := (buttons{v.CanPromote, v.CanPause, v.CanResume, v.CanAbort}); got != tc.want {
				t.Errorf("buttons = %+v, want %+v", got, tc.want)
			}
			if v.State != tc.label {
				t.Errorf("state = %q, want %q", v.State, tc.label)
			}
			var plan []string
			for _, p := range v.Plan {
				plan = append(plan, p.State)
			}
			if diff := cmp.Diff(tc.plan, plan); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if v.From.Label()+" "+v.From.Tag+" -> "+v.To.Label()+" "+v.To.Tag != "#1 v1 -> #2 v2" {
				t.Errorf("names = %s %s -> %s %s", v.From.Label(), v.From.Tag, v.To.Label(), v.To.Tag)
			}
			if len(v.Weights) != 2 || v.Weights[0].Release.Number != 1 || v.Weights[1].Weight != 50 {
				t.Errorf("weights = %+v", v.Weights)
			}
		})
	}
}

func TestChartBandsFollowTheWeights(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s int) *timestamppb.Timestamp { return timestamppb.New(t0.Add(time.Duration(s) * time.Second)) }
	ix := indexReleases([]*deployv1.Release{{Number: 1, Spec: &deployv1.ServiceSpec{Image: "d:v1"}}, {Number: 2, Spec: &deployv1.ServiceSpec{Image: "d:v2"}}})
	ro := &deployv1.Rollout{Id: "web-2"}
	events := map[string][]*deployv1.RolloutEvent{"web-2": {
		{At: at(0), Kind: "created", Weights: map[string]int32{"1": 100}, Healthy: map[string]int32{"1": 2}},
		{At: at(10), Kind: "step", Weights: map[string]int32{"1": 80, "2": 20}, Healthy: map[string]int32{"1": 2, "2": 1}},
		{At: at(15), Kind: "health", Weights: map[string]int32{"1": 80, "2": 20}, Healthy: map[string]int32{"1": 2, "2": 1}},
		{At: at(30), Kind: "failed", Message: "web-2-a exited", State: deployv1.RolloutState_ROLLOUT_STATE_REVERTED,
			Weights: map[string]int32{"1": 100}, Healthy: map[string]int32{"1": 2}},
	}}
	// The edges measured 10 req/s on #1 only, then 8 on #1 and 2 on #2 with
	// one error per second from 10s to 30s.
	rates := func(rel uint64, from time.Time, slot time.Duration, n int) (req, errs []uint64) {
		secs := uint64(slot.Seconds())
		for i := range n {
			f := from.Add(slot * time.Duration(i))
			canary := !f.Before(t0.Add(10*time.Second)) && f.Add(slot).Before(t0.Add(31*time.Second))
			var r, e uint64
			switch {
			case rel == 1 && canary:
				r = 8 * secs
			case rel == 1:
				r = 10 * secs
			case rel == 2 && canary:
				r, e = 2*secs, secs
			}
			req, errs = append(req, r), append(errs, e)
		}
		return req, errs
	}
	c := buildChart(chartPoints([]*deployv1.Rollout{ro}, events), ix, t0.Add(60*time.Second), rates)
	if c.Empty {
		t.Fatal("chart is empty")
	}
	// Three spans: 100% #1, 80/20 (the health event at 15s, which changed
	// nothing, is merged), then 100% #1 again.
	var got []string
	for _, b := range c.Bands {
		got = append(got, b.Colour+":"+strings.Fields(b.Title)[2])
	}
	want := []string{"c0:100%", "c0:80%", "c1:20%", "c0:100%"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bands (-want +got):\n%s", diff)
	}
	if c.Bands[2].H != shareH*0.2 || c.Bands[2].Y != shareTop+shareH*0.8 {
		t.Errorf("the 20%% band is at y=%v h=%v, want y=%v h=%v", c.Bands[2].Y, c.Bands[2].H, shareTop+shareH*0.8, shareH*0.2)
	}
	if len(c.Marks) != 1 || !strings.Contains(c.Marks[0].Title, "web-2-a exited") {
		t.Errorf("marks = %+v, want the failure", c.Marks)
	}
	if len(c.Lines) != 2 || c.MaxUp != 2 {
		t.Errorf("health lines = %d (max %d), want 2 releases up to 2", len(c.Lines), c.MaxUp)
	}
	if !c.Measured || c.MaxRate != "10/s" {
		t.Errorf("measured = %v, max rate %q, want true, 10/s", c.Measured, c.MaxRate)
	}
	var errBars, canaryBars int
	for _, b := range c.Bars {
		switch b.Colour {
		case "err":
			errBars++
			if !strings.Contains(b.Title, "#2 v2") || !strings.Contains(b.Title, "1.0 errors/s") {
				t.Errorf("error bar %q, want #2's 1.0 errors/s", b.Title)
			}
		case "c1":
			canaryBars++
			if b.H != trafficH*0.2 {
				t.Errorf("#2's bar is %v high, want %v (2 of 10 req/s)", b.H, trafficH*0.2)
			}
		}
	}
	if errBars == 0 || errBars != canaryBars {
		t.Errorf("%d error bars for %d bars of #2, want one each", errBars, canaryBars)
	}
	if len(c.Legend) != 2 || c.Legend[1].Label() != "#2" || c.Legend[1].Tag != "v2" {
		t.Errorf("legend = %+v", c.Legend)
	}
}

func TestPauseLeft(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for d, want := range map[time.Duration]string{45 * time.Second: "45s", 245 * time.Second: "4m05s", -3 * time.Second: "0s", 3600 * time.Second: "60m00s"} {
		if got := pauseLeft(now.Add(d), now); got != want {
			t.Errorf("pauseLeft(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestStartRefusesPlaintextWithoutInsecure(t *testing.T) {
	_, err := Start(Config{Addr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "TLS is required") {
		t.Fatalf("Start without TLS = %v, want the TLS requirement named", err)
	}
}
