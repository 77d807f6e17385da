package analysis

import (
	"math"
	"strings"
	"testing"
	"time"

	"slipway.dev/platform/latency"
)

func near(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.10g, want %.10g (±%g)", name, got, want, tol)
	}
}

// Known values: the lady tasting tea (17/70), scipy.stats.fisher_exact's
// alternative="greater" on the other tables, and the pooled z-test by hand.
func TestFisherGreaterKnownValues(t *testing.T) {
	for _, c := range []struct {
		x1, n1, x2, n2 uint64
		want           float64
	}{
		{3, 4, 1, 4, 17.0 / 70},
		{6, 8, 1, 5, 0.08624708624708624},
		{5, 100, 0, 100, 0.029691605234293292},
		{0, 100, 5, 100, 1},
		{0, 0, 1, 10, 1},
	} {
		near(t, "FisherGreater", FisherGreater(c.x1, c.n1, c.x2, c.n2), c.want, 1e-9)
	}
}

func TestTwoProportionZKnownValues(t *testing.T) {
	z, p := TwoProportionZ(50, 1000, 10, 1000)
	near(t, "z", z, 5.243225050930763, 1e-9)
	near(t, "p", p, 7.889693920404284e-08, 1e-12)
	z, p = TwoProportionZ(10, 1000, 10, 1000)
	near(t, "z (equal)", z, 0, 1e-12)
	near(t, "p (equal)", p, 0.5, 1e-12)
	if _, p := TwoProportionZ(0, 1000, 0, 1000); p != 1 {
		t.Errorf("no errors at all: p = %v, want 1", p)
	}
}

// hist puts value v (a small integer) into bucket v+1, one bucket per
// value, so that a histogram ranks exactly as the raw values do.
func hist(vals ...int) latency.Histogram {
	var h latency.Histogram
	for _, v := range vals {
		h.Add(latency.Lower(v + 1))
	}
	return h
}

// scipy.stats.mannwhitneyu(males, females, method="asymptotic") documents
// U=17, p=0.11134688653314041 (two-sided); one-sided "greater" is half.
func TestMannWhitneyKnownValues(t *testing.T) {
	u, z, p := MannWhitney(hist(19, 22, 16, 29, 24), hist(20, 11, 17, 12))
	near(t, "U", u, 17, 0)
	near(t, "z", z, 1.5921683328090657, 1e-9)
	near(t, "p", p, 0.11134688653314041/2, 1e-9)

	// Ties: a bucket shared by both samples counts one half per pair, and
	// the variance shrinks by the tie correction. Brute force over the raw
	// values as the oracle.
	a, b := []int{1, 2, 2, 3, 3, 3, 5}, []int{1, 1, 2, 3, 4}
	var want float64
	for _, x := range a {
		for _, y := range b {
			switch {
			case x > y:
				want++
			case x == y:
				want += 0.5
			}
		}
	}
	u, _, _ = MannWhitney(hist(a...), hist(b...))
	near(t, "U with ties", u, want, 0)
	// scipy: mannwhitneyu([1,2,2,3,3,3,5],[1,1,2,3,4], alternative="greater", method="asymptotic")
	// ranks by hand: n=12, ties {1:3, 2:3, 3:4}, sum(t^3-t) = 24+24+60 = 108.
	n1, n2, n := 7.0, 5.0, 12.0
	sd := math.Sqrt(n1 * n2 / 12 * ((n + 1) - 108/(n*(n-1))))
	_, z, _ = MannWhitney(hist(a...), hist(b...))
	near(t, "z with ties", z, (want-n1*n2/2-0.5)/sd, 1e-12)

	if _, _, p := MannWhitney(latency.Histogram{}, hist(1)); p != 1 {
		t.Errorf("empty sample: p = %v, want 1", p)
	}
	if _, _, p := MannWhitney(hist(3, 3), hist(3, 3, 3)); p != 1 {
		t.Errorf("all values tied: p = %v, want 1", p)
	}
}

// sample is n requests with errs errors and latencies spread evenly over
// [lo, hi].
func sample(n, errs uint64, lo, hi time.Duration) Sample {
	s := Sample{Requests: n, Errors: errs}
	for i := uint64(0); i < n; i++ {
		s.Latency.Add(lo + time.Duration(float64(hi-lo)*float64(i)/float64(max(n-1, 1))))
	}
	return s
}

// slowSample is n requests at fast latency, slow of them at slow instead.
func slowSample(n, slow uint64, fast, slowAt time.Duration) Sample {
	s := Sample{Requests: n}
	s.Latency.AddN(latency.Index(fast), n-slow)
	s.Latency.AddN(latency.Index(slowAt), slow)
	return s
}

func TestJudge(t *testing.T) {
	ms := time.Millisecond
	compare := &Compare{MaxErrorRateIncrease: 1, MaxLatencyRatio: 1.3, Confidence: 0.95}
	for _, c := range []struct {
		name           string
		cfg            Config
		canary, stable Sample
		want           Result
		failing        string // the check named in the reason
	}{
		{"healthy canary", Config{MinRequests: 100, SuccessRateMin: 99, LatencyP99Max: 500 * ms, Compare: compare},
			sample(1000, 2, 10*ms, 50*ms), sample(9000, 20, 10*ms, 50*ms), Pass, ""},
		{"5% errors fails the comparison", Config{MinRequests: 100, Compare: compare},
			sample(1000, 50, 10*ms, 50*ms), sample(9000, 9, 10*ms, 50*ms), Fail, "compare.error_rate"},
		{"5% errors fails the success rate", Config{MinRequests: 100, SuccessRateMin: 99},
			sample(1000, 50, 10*ms, 50*ms), sample(9000, 9, 10*ms, 50*ms), Fail, "success_rate"},
		{"a shared error spike passes the comparison", Config{MinRequests: 100, Compare: compare},
			sample(1000, 50, 10*ms, 50*ms), sample(9000, 460, 10*ms, 50*ms), Pass, ""},
		{"a shared error spike fails a fixed threshold", Config{MinRequests: 100, SuccessRateMin: 99},
			sample(1000, 50, 10*ms, 50*ms), sample(9000, 460, 10*ms, 50*ms), Fail, "success_rate"},
		{"2x slower fails the comparison", Config{MinRequests: 100, Compare: compare},
			sample(1000, 0, 20*ms, 100*ms), sample(9000, 0, 10*ms, 50*ms), Fail, "compare.latency"},
		{"a shared slowdown passes the comparison", Config{MinRequests: 100, Compare: compare},
			sample(1000, 0, 200*ms, 1000*ms), sample(9000, 0, 200*ms, 1000*ms), Pass, ""},
		{"a shared slowdown fails the p99 ceiling", Config{MinRequests: 100, LatencyP99Max: 500 * ms},
			sample(1000, 0, 200*ms, 1000*ms), sample(9000, 0, 200*ms, 1000*ms), Fail, "latency_p99"},
		{"a small insignificant excess passes", Config{MinRequests: 10, Compare: compare},
			sample(20, 1, 10*ms, 50*ms), sample(200, 0, 10*ms, 50*ms), Pass, ""},
		{"too little canary traffic", Config{MinRequests: 100, SuccessRateMin: 99, Compare: compare},
			sample(99, 50, 10*ms, 50*ms), sample(9000, 0, 10*ms, 50*ms), Inconclusive, ""},
		{"no traffic at all", Config{SuccessRateMin: 99}, Sample{}, Sample{}, Inconclusive, ""},
		{"a comparison alone without stable traffic", Config{MinRequests: 100, Compare: compare},
			sample(1000, 0, 10*ms, 50*ms), sample(10, 0, 10*ms, 50*ms), Inconclusive, ""},
		{"one error in 95 requests is under 99% but not significantly", Config{MinRequests: 50, SuccessRateMin: 99, Compare: compare},
			sample(95, 1, 10*ms, 50*ms), sample(1905, 2, 10*ms, 50*ms), Inconclusive, "success_rate"},
		{"5 errors in 95 requests is significant", Config{MinRequests: 50, SuccessRateMin: 99},
			sample(95, 5, 10*ms, 50*ms), sample(1905, 2, 10*ms, 50*ms), Fail, "success_rate"},
		{"2 of 95 requests above the p99 ceiling is not significant", Config{MinRequests: 50, LatencyP99Max: 45 * ms},
			slowSample(95, 2, 10*ms, 100*ms), Sample{}, Inconclusive, "latency_p99"},
		{"6 of 95 requests above the p99 ceiling is significant", Config{MinRequests: 50, LatencyP99Max: 45 * ms},
			slowSample(95, 6, 10*ms, 100*ms), Sample{}, Fail, "latency_p99"},
		{"thresholds still judge without stable traffic", Config{MinRequests: 100, SuccessRateMin: 99, Compare: compare},
			sample(1000, 0, 10*ms, 50*ms), Sample{}, Pass, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(c.cfg, c.canary, c.stable)
			if v.Result != c.want {
				t.Fatalf("Judge = %s, want %s\n%s", v.Result, c.want, v)
			}
			if c.failing != "" && !strings.HasPrefix(v.Reason, c.failing+":") {
				t.Errorf("reason %q does not name %s", v.Reason, c.failing)
			}
			if v.Canary.Requests != c.canary.Requests || v.Stable.Errors != c.stable.Errors {
				t.Errorf("evidence lost the counts: %+v %+v", v.Canary, v.Stable)
			}
		})
	}
}

func TestVerdictEvidence(t *testing.T) {
	v := Judge(Config{MinRequests: 100, SuccessRateMin: 99, Compare: &Compare{MaxErrorRateIncrease: 1, MaxLatencyRatio: 1.3, Confidence: 0.95}},
		sample(1000, 50, 10*time.Millisecond, 50*time.Millisecond), sample(9000, 9, 10*time.Millisecond, 50*time.Millisecond))
	var errCheck Check
	for _, c := range v.Checks {
		if c.Name == "compare.error_rate" {
			errCheck = c
		}
	}
	if errCheck.Test != "two_proportion_z" || errCheck.PValue > 1e-10 || errCheck.Result != Fail {
		t.Errorf("error comparison evidence: %+v", errCheck)
	}
	near(t, "observed increase", errCheck.Observed, 5-0.1, 1e-9)
	s := v.String()
	for _, want := range []string{"fail", "canary 1000 req 50 err (5.00%)", "stable 9000 req 9 err (0.10%)", "two_proportion_z p=", "success_rate fail: 95.00% below min 99.00%"} {
		if !strings.Contains(s, want) {
			t.Errorf("verdict %q lacks %q", s, want)
		}
	}
}

func TestDefaultsAndValidate(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Interval != 10*time.Second || c.MinRequests != 100 || c.FailureLimit != 2 || c.NoData != NoDataHold || c.Compare == nil || c.Compare.Confidence != 0.95 {
		t.Errorf("defaults: %+v %+v", c, c.Compare)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	if c := (Config{SuccessRateMin: 99}).WithDefaults(); c.Compare != nil {
		t.Error("a threshold alone got a comparison by default")
	}
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{Interval: 100 * time.Millisecond}, "interval"},
		{Config{FailureLimit: -1}, "failure_limit"},
		{Config{NoData: "maybe"}, "no_data"},
		{Config{SuccessRateMin: math.NaN()}, "success_rate.min"},
		{Config{Compare: &Compare{MaxLatencyRatio: 0.5}}, "compare.max_latency_ratio"},
		{Config{Compare: &Compare{Confidence: 1}}, "compare.confidence"},
	} {
		err := c.cfg.WithDefaults().Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.field+":") {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.field)
		}
	}
}

func TestWilsonKnownValues(t *testing.T) {
	// Reference values from the closed form (z = 1.6449 at 0.95, one-sided
	// bounds), computed independently.
	for _, c := range []struct {
		x, n   uint64
		lo, hi float64
	}{{95, 100, 0.9008389, 0.9754526}, {94, 95, 0.9541914, 0.9976481}, {0, 50, 0, 0.0513332}} {
		lo, hi := Wilson(c.x, c.n, 0.95)
		if math.Abs(lo-c.lo) > 1e-6 || math.Abs(hi-c.hi) > 1e-6 {
			t.Errorf("Wilson(%d, %d) = [%.7f, %.7f], want [%.7f, %.7f]", c.x, c.n, lo, hi, c.lo, c.hi)
		}
		// The score test is Wilson's interval inverted: significant below
		// p0 exactly when the upper bound is below it.
		for _, p0 := range []float64{0.9, 0.97, 0.99} {
			if sig := ScoreTestBelow(c.x, c.n, p0) < 0.05; sig != (hi < p0) {
				t.Errorf("Wilson(%d, %d) upper %.4f vs p0 %v: score test significant=%v", c.x, c.n, hi, p0, sig)
			}
		}
	}
}

func TestTally(t *testing.T) {
	hold := Config{NoData: NoDataHold}
	for _, c := range []struct {
		cfg     Config
		seq     []Result
		want    int
		counted Result
	}{
		{hold, []Result{Fail, Fail}, 2, Fail},
		{hold, []Result{Fail, Pass, Fail}, 1, Fail},
		{hold, []Result{Fail, Inconclusive, Fail}, 2, Fail},
		{hold, []Result{Fail, Inconclusive}, 1, Inconclusive},
		{Config{NoData: NoDataPass}, []Result{Fail, Inconclusive}, 0, Pass},
		{Config{NoData: NoDataFail}, []Result{Fail, Inconclusive}, 2, Fail},
	} {
		var n int
		var counted Result
		for _, r := range c.seq {
			counted, n = c.cfg.Tally(n, r)
		}
		if n != c.want || counted != c.counted {
			t.Errorf("no_data %s, %v: count %d counted %s, want %d %s", c.cfg.NoData, c.seq, n, counted, c.want, c.counted)
		}
	}
}
