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

// BenchmarkPassFleet measures one idle engine pass at fleet scale: 1,000
// and 3,000 nodes that stream their heartbeats (statuses from the heartbeat
// view, as with agents started with -coordinators), each running 10
// instances in services of 1,000, every rollout done. It is the leader's
// cost per pass with nothing to do (make bench-fleet measures the same
// through the real processes). The setup, which deploys and rolls out
// through this in-process harness, grows faster than the fleet (about 2 s
// at 1,000 nodes, 35 s at 3,000); 10,000 nodes did not set up within 5
// minutes:
//
//	go test -run '^$' -bench PassFleet -benchtime 20x ./engine
func BenchmarkPassFleet(b *testing.B) {
	if testing.Short() {
		b.Skip("fleet-size benchmark")
	}
	for _, size := range []int{1000, 3000} {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) { benchmarkPassFleet(b, size) })
	}
}

func benchmarkPassFleet(b *testing.B, size int) {
	nodes := make([]string, size)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("n%05d", i)
	}
	h := newHarness(b, nodes...)
	s := withStreams(h, nodes...)
	for i := range size / 100 {
		sp := webSpec("slipway/demo:v1", 1000, fast(&deployv1.UpdateStrategy{MaxParallel: 1000}))
		sp.Name = fmt.Sprintf("svc%03d", i)
		sp.Route.Host = sp.Name + ".test"
		sp.Resources = &deployv1.Resources{CpuMhz: 10, MemoryMb: 16}
		h.deploy(sp)
	}
	for range 200 {
		h.clock.Add(time.Second)
		s.beat()
		h.pass()
		if len(h.fsm.Rollouts("", true, 0)) == 0 {
			break
		}
	}
	if n := len(h.fsm.Rollouts("", true, 0)); n != 0 {
		b.Fatalf("%d rollouts still active", n)
	}
	b.ResetTimer()
	b.ReportAllocs()
	for range b.N {
		h.clock.Add(500 * time.Millisecond)
		h.pass()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/pass")
}
