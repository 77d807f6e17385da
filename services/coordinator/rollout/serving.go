package rollout

// Serving is the release a new rollout of a service starts from, given the
// traffic weights in force (per release), how many instances of each release
// run and are not drained, and the stable release. The candidates are the
// releases carrying traffic and stable when it has instances; of these, the
// one with the most instances wins (on a tie stable, else the newer one).
// Stable is the answer when there is no candidate.
//
// A rollout superseded in the middle of a rolling update may have drained
// most or all of the stable release's instances while the release it was
// rolling out serves: a new rollout from stable would route all traffic to a
// release with few or no instances, and drain the ones that serve. A canary
// keeps the stable release at full count and a blue/green rollout keeps it
// warm, so a new rollout still starts from stable there.
func Serving(weights map[uint64]int, instances map[uint64]int, stable uint64) uint64 {
	best, bestN := uint64(0), -1
	consider := func(r uint64) {
		n := instances[r]
		switch {
		case r == 0 || r == best:
			return
		case n > bestN:
		case n < bestN, best == stable, r != stable && r < best:
			return
		}
		best, bestN = r, n
	}
	if stable != 0 && instances[stable] > 0 {
		consider(stable)
	}
	for r, w := range weights {
		if w > 0 {
			consider(r)
		}
	}
	if best == 0 {
		return stable
	}
	return best
}
