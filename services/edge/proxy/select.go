package proxy

// Selection policies are pure functions over a pool, as in caddy's
// reverseproxy: the caller owns the state and the locking.

// smoothWeighted is nginx's smooth weighted round robin. weights and current
// have the same length; current is the per-item running state, updated in
// place. Items with weight <= 0 or with skip(i) true are never chosen. It
// returns -1 when nothing can be chosen.
func smoothWeighted(weights, current []int, skip func(int) bool) int {
	best, total := -1, 0
	for i, w := range weights {
		if w <= 0 || (skip != nil && skip(i)) {
			continue
		}
		current[i] += w
		total += w
		if best < 0 || current[i] > current[best] {
			best = i
		}
	}
	if best >= 0 {
		current[best] -= total
	}
	return best
}

// roundRobin returns the first index at or after start (mod n) for which
// skip is false, or -1.
func roundRobin(n, start int, skip func(int) bool) int {
	for k := 0; k < n; k++ {
		i := (start + k) % n
		if skip == nil || !skip(i) {
			return i
		}
	}
	return -1
}
