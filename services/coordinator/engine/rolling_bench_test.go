package engine_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// BenchmarkRollingFive measures a rolling update of 5 instances (max_parallel
// 1, min_healthy_time 1s) through a real coordinator, Consul and
// process-driver agent, against the sum of its parts measured in the same
// run: 5 x (the time to replace one instance through the same stack with
// min_healthy_time ~0, + min_healthy_time). Run it with -benchtime 1x:
//
//	go test -run XXX -bench RollingFive -benchtime 1x ./engine
func BenchmarkRollingFive(b *testing.B) {
	c := testenv.StartConsul(b)
	imgDir := b.TempDir()
	buildDemo(b, imgDir, "v1", "v2")
	startAgent(b, c.Addr(), imgDir)
	co := coordtest.Start(b, c.Addr(), nil)
	e := newE2E(b, co, c.Addr())
	minHealthy := time.Second

	// One instance replaced with min_healthy_time ~0 on the warm stack: the
	// stack's per-instance latency (placement, commit, sync, process start,
	// probe, report, drain).
	single := *e
	single.name = e.name + "one"
	u := &deployv1.UpdateStrategy{MinHealthyTime: durationpb.New(time.Millisecond), HealthyDeadline: durationpb.New(20 * time.Second)}
	id := single.doDeployCount("slipway/demo:v1", 1, u)
	single.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	start := time.Now()
	id = single.doDeployCount("slipway/demo:v2", 1, u)
	one := succeededAt(b, single.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)).Sub(start)

	roll := func() *deployv1.UpdateStrategy {
		return &deployv1.UpdateStrategy{MaxParallel: 1, MinHealthyTime: durationpb.New(minHealthy), HealthyDeadline: durationpb.New(20 * time.Second)}
	}
	v1 := e.doDeployCount("slipway/demo:v1", 5, roll())
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	b.ResetTimer()
	start = time.Now()
	v2 := e.doDeployCount("slipway/demo:v2", 5, roll())
	total := succeededAt(b, e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 120*time.Second)).Sub(start)
	b.StopTimer()
	ideal := 5 * (one + minHealthy)
	b.ReportMetric(total.Seconds(), "s_total")
	b.ReportMetric(one.Seconds(), "s_one_replace")
	b.ReportMetric(total.Seconds()/ideal.Seconds(), "ratio_vs_sum")
}

// succeededAt is when ro's success was committed, from its history: the
// measurement does not depend on how often the wait looked.
func succeededAt(b *testing.B, ro *deployv1.Rollout) time.Time {
	b.Helper()
	for _, h := range ro.GetHistory() {
		if h.GetState() == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
			return h.GetAt().AsTime()
		}
	}
	b.Fatalf("rollout %s has no SUCCEEDED step in its history: %v", ro.GetId(), ro.GetHistory())
	return time.Time{}
}
