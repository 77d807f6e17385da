package tour

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Service and Host name the demo service and its route.
const (
	Service       = "demo"
	Host          = "demo.local"
	PreviewHeader = "X-Slipway-Preview"
)

// Act is one release of the tour and the outcome it must reach.
type Act struct {
	// Name labels the act in the output and the summary, e.g. "canary v2".
	Name string
	// Version is the X-Slipway-Version the release answers with.
	Version string
	// Explain is printed before the deploy.
	Explain string
	Spec    *deployv1.ServiceSpec
	// Want is the rollout's expected final state.
	Want deployv1.RolloutState
	// ServesErrors marks a release that answers some requests with 500 by
	// design: its failed answers are the act's point, not the demo's
	// failures, and the summary counts them.
	ServesErrors bool
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func spec(version string, env map[string]string, u *deployv1.UpdateStrategy) *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{
		Name:      Service,
		Image:     "slipway/demo:" + version,
		Count:     3,
		Port:      8080,
		Env:       env,
		Resources: &deployv1.Resources{CpuMhz: 100, MemoryMb: 64},
		Check:     &deployv1.HealthCheck{Http: "/healthz", Interval: dur(time.Second), Timeout: dur(time.Second)},
		Route:     &deployv1.Route{Host: Host, Path: "/"},
		Update:    u,
	}
}

// Acts returns the tour: v1 first, a canary to v2 with a manual step, a
// blue/green switch to v3, a v4 whose health check fails, and a v5 whose
// health check passes but which answers 4% of requests with 500, failed by
// canary analysis.
func Acts() []Act {
	common := func(s deployv1.Strategy) *deployv1.UpdateStrategy {
		return &deployv1.UpdateStrategy{
			Strategy:         s,
			MaxParallel:      1,
			MinHealthyTime:   dur(2 * time.Second),
			HealthyDeadline:  dur(30 * time.Second),
			ProgressDeadline: dur(2 * time.Minute),
			AutoRevert:       true,
		}
	}
	canary := common(deployv1.Strategy_STRATEGY_CANARY)
	canary.Canary = &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
		{Weight: 20, Pause: dur(5 * time.Second)},
		{Weight: 50, Manual: true},
		{Weight: 100},
	}}
	bg := common(deployv1.Strategy_STRATEGY_BLUE_GREEN)
	bg.ScaleDownDelay = dur(5 * time.Second)
	bg.BlueGreen = &deployv1.BlueGreenStrategy{PreviewHeader: PreviewHeader}
	bad := common(deployv1.Strategy_STRATEGY_ROLLING)
	bad.HealthyDeadline = dur(10 * time.Second)
	analysed := common(deployv1.Strategy_STRATEGY_CANARY)
	analysed.Canary = &deployv1.CanaryStrategy{
		// Every 5s window of the 20% step is judged: the canary's success
		// rate against the 99% floor and its error rate against stable's
		// (Fisher's exact test). Two failed windows revert it. The pause
		// is long: only analysis ends this step.
		Analysis: &deployv1.Analysis{Interval: dur(5 * time.Second), MinRequests: 20, FailureLimit: 2,
			SuccessRate: &deployv1.SuccessRateThreshold{Min: 99},
			Compare:     &deployv1.Comparison{MaxErrorRateIncrease: 1, Confidence: 0.95, MaxLatencyRatio: 10}},
		Steps: []*deployv1.CanaryStep{{Weight: 20, Pause: dur(time.Minute)}, {Weight: 100, Analysis: &deployv1.Analysis{Disabled: true}}},
	}
	return []Act{
		{
			Name: "deploy v1", Version: "v1",
			Explain: "first release of service demo (3 instances, route Host: demo.local): every instance starts at once",
			Spec:    spec("v1", nil, common(deployv1.Strategy_STRATEGY_ROLLING)),
			Want:    deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
		},
		{
			Name: "canary v2", Version: "v2",
			Explain: "canary to v2: 20% of the traffic for 5s, then 50% until an operator promotes, then 100%",
			Spec:    spec("v2", nil, canary),
			Want:    deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
		},
		{
			Name: "blue/green v3", Version: "v3",
			Explain: "blue/green switch to v3: the new colour starts at full count beside v2, previewed with the header " + PreviewHeader + ", switched on promote; v2 stays warm 5s",
			Spec:    spec("v3", nil, bg),
			Want:    deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
		},
		{
			Name: "bad v4", Version: "v4",
			Explain: "rolling deploy of v4 whose /healthz fails (FAIL_HEALTH=1): it never becomes healthy, the rollout fails after healthy_deadline (10s) and auto_revert keeps v3",
			Spec:    spec("v4", map[string]string{"FAIL_HEALTH": "1"}, bad),
			Want:    deployv1.RolloutState_ROLLOUT_STATE_REVERTED,
		},
		{
			Name: "bad v5", Version: "v5",
			Explain: "canary of v5, whose image answers 4% of requests with 500 while its /healthz passes: healthy, so health checks would promote it; " +
				"canary analysis judges the edge's counts every 5s at 20%, fails two windows and auto_revert returns all traffic to v3",
			Spec:         spec("v5", nil, analysed),
			Want:         deployv1.RolloutState_ROLLOUT_STATE_REVERTED,
			ServesErrors: true,
		},
	}
}
