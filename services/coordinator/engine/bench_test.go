package engine_test

import (
	"fmt"
	"testing"
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// BenchmarkPassSteadyState measures one engine pass over a cluster of 100
// nodes running 500 services of 2 instances each, every rollout done: the
// leader's fixed cost of observing and re-checking the world.
func BenchmarkPassSteadyState(b *testing.B) {
	nodes := make([]string, 100)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("n%03d", i)
	}
	h := newHarness(b, nodes...)
	for i := range 500 {
		s := webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{}))
		s.Name = fmt.Sprintf("svc%03d", i)
		h.deploy(s)
	}
	h.run(time.Second, "every service deployed", func() bool {
		return len(h.fsm.Rollouts("", true, 0)) == 0
	})
	b.ResetTimer()
	for range b.N {
		h.pass()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/pass")
}
