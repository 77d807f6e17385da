package placement

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestPlaceRandomClusters checks on random clusters that every placement is
// on a ready, non-draining node meeting the constraints, that no node is
// over capacity or given a host port twice, that a service's instances are
// spread (at each placement no eligible node had fewer of them), and that a
// failure only happens when no node could take the allocation.
func TestPlaceRandomClusters(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var st Snapshot
		for i := range rng.IntN(12) + 1 {
			st.NodeList = append(st.NodeList, Node{
				ID: fmt.Sprintf("n%d", i), Ready: rng.IntN(8) != 0, Draining: rng.IntN(8) == 0,
				Labels: map[string]string{"zone": string(rune('a' + rng.IntN(3)))},
				CPU:    rng.IntN(3000), MemoryMB: rng.IntN(3000),
			})
		}
		var asks []Ask
		for s := range rng.IntN(4) + 1 {
			a := Ask{Service: fmt.Sprintf("s%d", rng.IntN(3)), Release: uint64(s), CPU: rng.IntN(500), MemoryMB: rng.IntN(500)}
			for i := range rng.IntN(8) {
				a.IDs = append(a.IDs, fmt.Sprintf("a%d-%d", s, i))
			}
			if rng.IntN(3) == 0 {
				a.HostPorts = []int{8000 + rng.IntN(2)}
			}
			switch rng.IntN(4) {
			case 0:
				a.Constraints = []Constraint{{"node.label.zone", "!=", "b"}}
			case 1:
				a.Constraints = []Constraint{{"node.label.zone", "regexp", "^[ab]$"}}
			}
			asks = append(asks, a)
		}
		plan, err := Place(st, asks, seed)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		// Replay the plan against a model of the cluster.
		nodes := map[string]Node{}
		cpu, mem := map[string]int{}, map[string]int{}
		ports := map[string]map[int]bool{}
		perSvc := map[string]map[string]int{}
		for _, n := range st.NodeList {
			nodes[n.ID] = n
			ports[n.ID] = map[int]bool{}
		}
		byID := map[string]Ask{}
		for _, a := range asks {
			for _, id := range a.IDs {
				byID[id] = a
			}
		}
		eligible := func(a Ask, n Node) bool {
			if !n.Ready || n.Draining || cpu[n.ID]+a.CPU > n.CPU || mem[n.ID]+a.MemoryMB > n.MemoryMB {
				return false
			}
			for _, p := range a.HostPorts {
				if ports[n.ID][p] {
					return false
				}
			}
			for _, c := range a.Constraints {
				v, ok := n.Attribute(c.Attribute)
				switch c.Operator {
				case "!=":
					if ok && v == c.Value {
						return false
					}
				case "regexp":
					if !ok || (v != "a" && v != "b") {
						return false
					}
				}
			}
			return true
		}
		pi, fi := 0, 0
		for _, a := range asks {
			if perSvc[a.Service] == nil {
				perSvc[a.Service] = map[string]int{}
			}
			for _, id := range a.IDs {
				if pi < len(plan.Placements) && plan.Placements[pi].AllocID == id {
					pl := plan.Placements[pi]
					pi++
					n := nodes[pl.NodeID]
					if !eligible(a, n) {
						t.Fatalf("seed %d: %s placed on ineligible node %+v", seed, id, n)
					}
					for _, o := range st.NodeList {
						if eligible(a, o) && perSvc[a.Service][o.ID] < perSvc[a.Service][n.ID] {
							t.Fatalf("seed %d: %s on %s (%d of %s) while %s had %d", seed, id, n.ID, perSvc[a.Service][n.ID], a.Service, o.ID, perSvc[a.Service][o.ID])
						}
					}
					cpu[n.ID] += a.CPU
					mem[n.ID] += a.MemoryMB
					for _, p := range a.HostPorts {
						ports[n.ID][p] = true
					}
					perSvc[a.Service][n.ID]++
					continue
				}
				if fi >= len(plan.Failures) || plan.Failures[fi].AllocID != id {
					t.Fatalf("seed %d: %s neither placed nor failed, in order", seed, id)
				}
				fi++
				for _, o := range st.NodeList {
					if eligible(a, o) {
						t.Fatalf("seed %d: %s failed (%s) but %s could take it", seed, id, plan.Failures[fi-1].Reason, o.ID)
					}
				}
			}
		}
		if pi != len(plan.Placements) || fi != len(plan.Failures) || len(byID) != pi+fi {
			t.Fatalf("seed %d: plan has %d placements and %d failures for %d ids", seed, len(plan.Placements), len(plan.Failures), len(byID))
		}
	}
}
