package rollout

import "testing"

func TestServing(t *testing.T) {
	for _, c := range []struct {
		name      string
		weights   map[uint64]int
		instances map[uint64]int
		stable    uint64
		want      uint64
	}{
		{"no traffic", nil, nil, 3, 3},
		{"first deploy", nil, nil, 0, 0},
		{"stable serves", map[uint64]int{1: 100}, map[uint64]int{1: 4}, 1, 1},
		{"canary keeps stable", map[uint64]int{1: 20, 2: 80}, map[uint64]int{1: 4, 2: 4}, 1, 1},
		{"stable drained", map[uint64]int{2: 100}, map[uint64]int{2: 2}, 1, 2},
		{"rolling past half", map[uint64]int{1: 25, 2: 75}, map[uint64]int{1: 1, 2: 3}, 1, 2},
		{"warm stable", map[uint64]int{2: 100}, map[uint64]int{1: 2, 2: 2}, 1, 1},
		{"tie of non-stable is newer", map[uint64]int{2: 50, 3: 50}, map[uint64]int{2: 2, 3: 2}, 1, 3},
		{"nothing runs", map[uint64]int{1: 100}, nil, 1, 1},
		{"zero weight ignored", map[uint64]int{1: 100, 2: 0}, map[uint64]int{1: 1, 2: 4}, 1, 1},
	} {
		if got := Serving(c.weights, c.instances, c.stable); got != c.want {
			t.Errorf("%s: Serving = %d, want %d", c.name, got, c.want)
		}
	}
}
