package placement

import (
	"fmt"
	"testing"
)

// benchCluster is 1,000 nodes in 3 zones of mixed sizes, a few not ready or
// draining, with 10 services of 1,000 allocations each to place.
func benchCluster() (Snapshot, []Ask) {
	var st Snapshot
	for i := range 1000 {
		n := Node{
			ID:         fmt.Sprintf("node-%04d", i),
			Ready:      i%50 != 7,
			Draining:   i%50 == 13,
			Labels:     map[string]string{"zone": string(rune('a' + i%3)), "rack": fmt.Sprintf("r%02d", i%40)},
			Attributes: map[string]string{"node.driver": "docker"},
			CPU:        4000 + 2000*(i%5),
			MemoryMB:   8192 * (1 + i%4),
		}
		st.NodeList = append(st.NodeList, n)
		if i%4 == 0 {
			st.AllocList = append(st.AllocList, Allocation{ID: fmt.Sprintf("old-%d", i), Service: "legacy", NodeID: n.ID, CPU: 1000, MemoryMB: 2048})
		}
	}
	var asks []Ask
	for s := range 10 {
		a := Ask{Service: fmt.Sprintf("svc-%d", s), Release: 1, CPU: 100 + 50*(s%4), MemoryMB: 64 << (s % 4)}
		switch s % 3 {
		case 1:
			a.Constraints = []Constraint{{"node.label.zone", "!=", "b"}}
		case 2:
			a.Constraints = []Constraint{{"node.label.rack", "regexp", "^r[0-2]"}, {"node.driver", "=", "docker"}}
		}
		for i := range 1000 {
			a.IDs = append(a.IDs, fmt.Sprintf("%s-%d", a.Service, i))
		}
		asks = append(asks, a)
	}
	return st, asks
}

// BenchmarkPlace10kOn1k places 10,000 allocations across 1,000 simulated
// nodes and reports allocations placed per second (scripts/bench-placement.sh
// compares it with Nomad's published 1,500-3,750/s).
func BenchmarkPlace10kOn1k(b *testing.B) {
	st, asks := benchCluster()
	b.ReportAllocs()
	b.ResetTimer()
	placed := 0
	for i := range b.N {
		plan, err := Place(st, asks, uint64(i))
		if err != nil {
			b.Fatal(err)
		}
		if len(plan.Failures) != 0 || len(plan.Placements) != 10000 {
			b.Fatalf("placed %d, failed %d (%s)", len(plan.Placements), len(plan.Failures), plan.Failures[0].Reason)
		}
		placed += len(plan.Placements)
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "allocs/s")
}
