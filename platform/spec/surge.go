package spec

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// MaxStagger bounds update.stagger.
const MaxStagger = time.Hour

// Amount is a rolling update bound (max_surge, max_unavailable) as a spec
// writes it: an absolute number of instances ("2") or a percentage of the
// service's count ("25%").
type Amount struct {
	// N is the number, or the percentage when Percent is set.
	N int
	// Percent says N is a percentage of count.
	Percent bool
}

// ParseAmount reads "N" or "P%" (0-100 percent, 0-MaxCount instances);
// the empty string is the zero Amount.
func ParseAmount(s string) (Amount, error) {
	if s == "" {
		return Amount{}, nil
	}
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	switch {
	case err != nil || strings.TrimSpace(num) != num || strings.HasPrefix(num, "+"):
		return Amount{}, fmt.Errorf("%q is neither a number of instances (\"2\") nor a percentage of count (\"25%%\")", s)
	case pct && (n < 0 || n > 100):
		return Amount{}, fmt.Errorf("%q must be a percentage between 0%% and 100%%", s)
	case !pct && (n < 0 || n > specrules.MaxCount):
		return Amount{}, fmt.Errorf("%q must be between 0 and %d instances", s, specrules.MaxCount)
	}
	return Amount{N: n, Percent: pct}, nil
}

// Of resolves the amount against count: a percentage rounds up when up is
// set (max_surge), down otherwise (max_unavailable), as Kubernetes does.
func (a Amount) Of(count int, up bool) int {
	if !a.Percent {
		return a.N
	}
	if up {
		return (a.N*count + 99) / 100
	}
	return a.N * count / 100
}

// IsZero reports whether the amount is 0 (or 0%).
func (a Amount) IsZero() bool { return a.N == 0 }

// SurgeBounds resolves a rolling update's max_surge and max_unavailable
// (as written: "" means unset) for count instances. When neither is set
// it returns ok false: the update runs max_parallel batches. When both
// resolve to 0 (a percentage of a small count) max_unavailable is 1, as in
// Kubernetes, so that the update can progress. Invalid amounts (refused by
// validation) count as 0.
func SurgeBounds(maxSurge, maxUnavailable string, count int) (surge, unavailable int, ok bool) {
	if maxSurge == "" && maxUnavailable == "" {
		return 0, 0, false
	}
	s, _ := ParseAmount(maxSurge)
	u, _ := ParseAmount(maxUnavailable)
	surge, unavailable = s.Of(count, true), u.Of(count, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable, true
}

// validateSurge checks max_surge, max_unavailable and stagger, and how
// they go with max_parallel and the strategy.
func validateSurge(v *violations, at string, u *deployv1.UpdateStrategy) {
	ms, mu := u.GetMaxSurge(), u.GetMaxUnavailable()
	s, errS := ParseAmount(ms)
	if errS != nil {
		v.add(at+".max_surge", "%v", errS)
	}
	un, errU := ParseAmount(mu)
	if errU != nil {
		v.add(at+".max_unavailable", "%v", errU)
	}
	if validDuration(v, at+".stagger", u.GetStagger()) && u.GetStagger().AsDuration() > MaxStagger {
		v.add(at+".stagger", "must be at most %s, got %s", showDuration(MaxStagger), show(u.GetStagger()))
	}
	rolling := u.GetStrategy() == deployv1.Strategy_STRATEGY_ROLLING || u.GetStrategy() == deployv1.Strategy_STRATEGY_UNSPECIFIED
	if !rolling && !isZero(u.GetStagger()) {
		v.add(at+".stagger", "applies to rolling updates only (strategy is %s)", strategyWord(u.GetStrategy()))
	}
	if ms == "" && mu == "" {
		return
	}
	if !rolling {
		field := ".max_surge"
		if ms == "" {
			field = ".max_unavailable"
		}
		v.add(at+field, "applies to rolling updates only (strategy is %s)", strategyWord(u.GetStrategy()))
	}
	if u.GetMaxParallel() != 0 {
		v.add(at+".max_parallel", "must be unset with max_surge or max_unavailable (max_parallel %d is max_surge %d with max_unavailable 0)", u.GetMaxParallel(), u.GetMaxParallel())
	}
	if errS == nil && errU == nil && s.IsZero() && un.IsZero() {
		v.add(at+".max_unavailable", "max_surge and max_unavailable must not both be 0 (the update could never replace an instance)")
	}
}

func strategyWord(s deployv1.Strategy) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STRATEGY_"))
}

// RollingBatch is about how many instances one rolling batch replaces for
// count instances: max_parallel, or with max_surge/max_unavailable their
// resolved sum (the first batch places max_surge, the next ones up to
// both), at least 1. Plans and renderings use it; the rollout machine
// keeps the exact bounds.
func RollingBatch(u *deployv1.UpdateStrategy, count int) int {
	if s, un, ok := SurgeBounds(u.GetMaxSurge(), u.GetMaxUnavailable(), count); ok {
		return max(1, s+un)
	}
	return int(max(1, u.GetMaxParallel()))
}
