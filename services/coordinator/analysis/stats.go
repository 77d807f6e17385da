package analysis

import (
	"math"

	"slipway.dev/platform/latency"
)

// normalSF is the standard normal's survival function, P(Z > z).
func normalSF(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }

// TwoProportionZ is the pooled two-proportion z-test of H1 "the first
// proportion is greater than the second": x1 of n1 against x2 of n2. It
// returns the z statistic and the one-sided p-value; with either sample
// empty, or no variance at all (no errors or only errors on both sides), z
// is 0 and p is 1.
func TwoProportionZ(x1, n1, x2, n2 uint64) (z, p float64) {
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	pool := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0, 1
	}
	z = (p1 - p2) / se
	return z, normalSF(z)
}

// lchoose is log(n choose k).
func lchoose(n, k uint64) float64 {
	a, _ := math.Lgamma(float64(n) + 1)
	b, _ := math.Lgamma(float64(k) + 1)
	c, _ := math.Lgamma(float64(n-k) + 1)
	return a - b - c
}

// FisherGreater is the one-sided p-value of Fisher's exact test that the
// first sample's proportion is greater: the probability, with the margins
// of the 2x2 table [[x1, n1-x1], [x2, n2-x2]] fixed, of x1 or more
// successes in the first row.
func FisherGreater(x1, n1, x2, n2 uint64) float64 {
	if n1 == 0 || n2 == 0 {
		return 1
	}
	n, k := n1+n2, x1+x2 // total, successes
	hi := min(n1, k)
	base := lchoose(n, n1)
	var p float64
	for x := x1; x <= hi; x++ {
		if n1-x > n-k {
			continue // impossible: more failures in row 1 than in total
		}
		p += math.Exp(lchoose(k, x) + lchoose(n-k, n1-x) - base)
	}
	return math.Min(1, p)
}

// MannWhitney is the Mann-Whitney U test of H1 "a's latencies are
// stochastically greater than b's" on two histograms of the same buckets,
// each bucket a group of ties (as Kayenta's judge treats binned data). It
// returns U of a (pairs with a's value greater, ties counting one half), the
// tie-corrected z with continuity correction (as
// scipy.stats.mannwhitneyu with alternative="greater" computes it), and the one-sided p-value of
// the normal approximation; with either histogram empty, or every value in
// one bucket, z is 0 and p is 1.
func MannWhitney(a, b latency.Histogram) (u, z, p float64) {
	n1, n2 := float64(a.Total()), float64(b.Total())
	if n1 == 0 || n2 == 0 {
		return 0, 0, 1
	}
	n := n1 + n2
	var below, ties float64 // b's values in lower buckets; sum of t^3-t
	for i := 0; i < latency.Buckets; i++ {
		ai, bi := count(a, i), count(b, i)
		u += ai * (below + bi/2)
		below += bi
		t := ai + bi
		ties += t*t*t - t
	}
	mean := n1 * n2 / 2
	variance := n1 * n2 / 12 * ((n + 1) - ties/(n*(n-1)))
	if variance <= 0 {
		return u, 0, 1
	}
	// Continuity correction as scipy.stats.mannwhitneyu applies it to a
	// one-sided test.
	z = (u - mean - 0.5) / math.Sqrt(variance)
	return u, z, normalSF(z)
}

func count(h latency.Histogram, i int) float64 {
	if i < len(h.Counts) {
		return float64(h.Counts[i])
	}
	return 0
}

// zOneSided is the standard normal quantile a one-sided bound at
// confidence uses (1.645 at 0.95).
func zOneSided(confidence float64) float64 { return math.Sqrt2 * math.Erfinv(2*confidence-1) }

// Wilson is the Wilson score interval of x successes in n trials at
// confidence, each side a one-sided bound (lo is the lower confidence bound
// at confidence, hi the upper). With n == 0 it is [0, 1].
func Wilson(x, n uint64, confidence float64) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	z := zOneSided(confidence)
	nf, p := float64(n), float64(x)/float64(n)
	d := 1 + z*z/nf
	centre := (p + z*z/(2*nf)) / d
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / d
	return math.Max(0, centre-half), math.Min(1, centre+half)
}

// ScoreTestBelow is the one-sided p-value of the score test of H1 "the
// true proportion is below p0", x successes in n trials: Wilson's upper
// bound at confidence c is below p0 exactly when it is below 1-c. 1 with
// n == 0.
func ScoreTestBelow(x, n uint64, p0 float64) float64 {
	if n == 0 {
		return 1
	}
	p := float64(x) / float64(n)
	if p0 >= 1 || p0 <= 0 {
		if p < p0 {
			return 0
		}
		return 1
	}
	z := (p - p0) / math.Sqrt(p0*(1-p0)/float64(n))
	return normalSF(-z)
}

// ScoreTestAbove is the one-sided p-value of the score test of H1 "the
// true proportion is above p0" (see ScoreTestBelow).
func ScoreTestAbove(x, n uint64, p0 float64) float64 {
	if n == 0 {
		return 1
	}
	p := float64(x) / float64(n)
	if p0 >= 1 || p0 <= 0 {
		if p > p0 {
			return 0
		}
		return 1
	}
	z := (p - p0) / math.Sqrt(p0*(1-p0)/float64(n))
	return normalSF(z)
}
