package analysis_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/platform/latency"
)

// The false-revert simulation: a service of 200 requests/s, a canary at 5%
// weight held on one step for 15 minutes (90 windows of 10 s, judged
// throughout, as a manual step is), judged by the floors alone: a 99%
// success floor and a 100 ms p99 ceiling, min_requests 50, failure_limit 2,
// no_data hold (the comparison's own false alarms under repeated windows
// are BenchmarkDetection's "compare" column, on a finer latency model). Each window's counts are drawn from a
// seeded generator: the canary's requests ~ Binomial(2000, 5%), each an
// error with probability errPct and slower than the ceiling with
// probability slowPct; stable likewise at 0.1% errors and 0.2% slow. A
// healthy canary is stable's twin: 0.1% errors, 0.2% of its requests above
// the ceiling, yet about half its windows hold fewer than 100 requests,
// where one error (or one slow request) puts the observed success rate
// under 99% (or the observed p99 above the ceiling).
const (
	simRate     = 200 // requests/s
	simWeight   = 0.05
	simWindows  = 90
	simInterval = 10 * time.Second
	simCeiling  = 100 * time.Millisecond
)

func simConfig() analysis.Config {
	return analysis.Config{Interval: simInterval, MinRequests: 50, FailureLimit: 2, NoData: analysis.NoDataHold,
		SuccessRateMin: 99, LatencyP99Max: simCeiling}.WithDefaults()
}

// binomial draws from Binomial(n, p) by inversion (p small here).
func binomial(rng *rand.Rand, n uint64, p float64) uint64 {
	if p <= 0 || n == 0 {
		return 0
	}
	q := 1 - p
	s, a := p/q, float64(n+1)*p/q
	r := math.Pow(q, float64(n))
	u := rng.Float64()
	var x uint64
	for u > r && x < n {
		u -= r
		x++
		r *= a/float64(x) - s
	}
	return x
}

// simSample is one release's window: n requests, errors at errPct, and a
// latency histogram of fast requests at 10 ms and slow ones (at slowPct)
// well above the ceiling.
func simSample(rng *rand.Rand, n uint64, errPct, slowPct float64) analysis.Sample {
	s := analysis.Sample{Requests: n, Errors: binomial(rng, n, errPct/100)}
	slow := binomial(rng, n, slowPct/100)
	s.Latency.AddN(latency.Index(10*time.Millisecond), n-slow)
	s.Latency.AddN(latency.Index(3*simCeiling), slow)
	return s
}

// simRun is one canary's step: the window (1-based) at which it would be
// reverted under the current rule (analysis.Judge, consecutive failures
// counted by Tally) and under the rule before it (any failed window
// counted, floors judged on the observed rate alone), 0 when not reverted.
func simRun(seed uint64, errPct, slowPct float64) (now, before int) {
	rng := rand.New(rand.NewPCG(seed, 0xfa15e))
	cfg := simConfig()
	var fails, all int
	for w := 1; w <= simWindows && (now == 0 || before == 0); w++ {
		total := uint64(simRate * simInterval / time.Second)
		nc := binomial(rng, total, simWeight)
		canary := simSample(rng, nc, errPct, slowPct)
		stable := simSample(rng, total-nc, 0.1, 0.2)
		v := analysis.Judge(cfg, canary, stable)
		if now == 0 {
			if _, fails = cfg.Tally(fails, v.Result); fails >= cfg.FailureLimit {
				now = w
			}
		}
		if before == 0 && oldFailed(cfg, v) {
			if all++; all >= cfg.FailureLimit {
				before = w
			}
		}
	}
	return now, before
}

// oldFailed is the judgement before consecutive counting and significant
// floors: a floor failed on the observed value, whatever the sample.
func oldFailed(cfg analysis.Config, v analysis.Verdict) bool {
	if v.Canary.Requests < cfg.MinRequests {
		return false
	}
	return 100-v.Canary.ErrorRate < cfg.SuccessRateMin || v.Canary.P99 > cfg.LatencyP99Max
}

// TestHealthyCanariesAreNotReverted: of 1,000 seeded healthy canaries
// (stable's error and latency profile) at 5% weight with a 99% success
// floor, none is reverted in 15 minutes of analysis, where counting every
// failed window against floors judged on the observed value alone reverted
// almost all; and every one of 1,000 canaries answering 5% of requests
// with errors is still reverted, within a few windows.
func TestHealthyCanariesAreNotReverted(t *testing.T) {
	const runs = 1000
	var falseNow, falseBefore int
	for r := range runs {
		now, before := simRun(uint64(r), 0.1, 0.2)
		if now > 0 {
			falseNow++
		}
		if before > 0 {
			falseBefore++
		}
	}
	t.Logf("healthy canaries reverted: %d/%d now, %d/%d under the old rule (total failures, observed floors)", falseNow, runs, falseBefore, runs)
	if falseNow != 0 {
		t.Errorf("%d of %d healthy canaries falsely reverted, want 0", falseNow, runs)
	}
	if falseBefore < runs/2 {
		// The simulation must reproduce the defect it guards against, or it
		// proves nothing.
		t.Errorf("the old rule reverted only %d of %d healthy canaries: the simulation does not reproduce the defect", falseBefore, runs)
	}

	// Near the ceiling (0.5% of requests above it, half the 1% a p99 allows)
	// each window is one more test at 95% confidence: a few of 1,000 long
	// holds see two unlucky windows in a row.
	var near int
	for r := range runs {
		if now, _ := simRun(uint64(2*runs+r), 0.1, 0.5); now > 0 {
			near++
		}
	}
	t.Logf("healthy canaries with 0.5%% of requests above the p99 ceiling reverted: %d/%d", near, runs)
	if near > runs/25 {
		t.Errorf("%d of %d canaries near the ceiling reverted, want at most %d", near, runs, runs/25)
	}

	var at []float64
	for r := range runs {
		now, _ := simRun(uint64(runs+r), 5, 0.2)
		if now == 0 {
			t.Errorf("run %d: a canary with 5%% errors was not reverted in %d windows", r, simWindows)
			continue
		}
		at = append(at, float64(now))
	}
	if len(at) > 0 {
		slices.Sort(at)
		t.Logf("5%%-error canaries reverted at window: median %.0f, p99 %.0f, max %.0f (failure_limit 2: 2 is the soonest)",
			at[len(at)/2], at[len(at)*99/100], at[len(at)-1])
		if at[len(at)*99/100] > 6 {
			t.Errorf("99th percentile of the windows to revert a 5%%-error canary is %.0f, want within 6 (a minute)", at[len(at)*99/100])
		}
	}
}

// TestSlowCanaryIsStillReverted: a canary with 5% of its requests above the
// p99 ceiling (its p99 well above it) is reverted in every run.
func TestSlowCanaryIsStillReverted(t *testing.T) {
	for r := range 200 {
		if now, _ := simRun(uint64(5000+r), 0.1, 5); now == 0 || now > 6 {
			t.Errorf("run %d: a canary with 5%% slow requests reverted at window %d, want 2-6", r, now)
		}
	}
}
