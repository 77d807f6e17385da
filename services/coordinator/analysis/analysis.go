// Package analysis judges a canary from its golden signals: absolute
// thresholds on its own window, and a statistical comparison with the stable
// release over the same window, so that a load spike hurting both does not
// fail the canary. It is pure: samples in, a verdict with its evidence out.
package analysis

import (
	"fmt"
	"math"
	"strings"
	"time"

	"slipway.dev/platform/latency"
)

// Result is a verdict's outcome.
type Result string

// Results.
const (
	// Pass: every check that could be evaluated passed.
	Pass Result = "pass"
	// Fail: at least one check failed.
	Fail Result = "fail"
	// Inconclusive: too little traffic to judge (see NoData).
	Inconclusive Result = "inconclusive"
)

// NoData is what an inconclusive verdict counts as.
type NoData string

// NoData policies.
const (
	// NoDataHold keeps the step waiting for a conclusive verdict.
	NoDataHold NoData = "hold"
	// NoDataFail counts an inconclusive verdict as a failure.
	NoDataFail NoData = "fail"
	// NoDataPass counts an inconclusive verdict as a pass.
	NoDataPass NoData = "pass"
)

// Compare configures the canary-against-stable tests.
type Compare struct {
	// MaxErrorRateIncrease is how many percentage points the canary's error
	// rate may exceed stable's before a significant difference fails it.
	MaxErrorRateIncrease float64
	// MaxLatencyRatio is how much slower (canary p99 / stable p99) the
	// canary may be before a significant difference fails it.
	MaxLatencyRatio float64
	// Confidence is the tests' confidence level (0.95: fail at p < 0.05).
	Confidence float64
}

// Config is one analysis with its defaults applied (see the rollout
// package's config).
type Config struct {
	// Interval is the length of each judged window.
	Interval time.Duration
	// MinRequests is the canary traffic (and, for the comparison, stable
	// traffic) a window needs to be judged.
	MinRequests uint64
	// FailureLimit is how many consecutive failed verdicts fail the
	// rollout (see Tally): a passing verdict resets the count.
	FailureLimit int
	// NoData is what an inconclusive verdict counts as.
	NoData NoData
	// SuccessRateMin, when above 0, fails a canary whose success rate (in
	// percent, 5xx and transport failures counting as errors) is
	// significantly below it: the upper Wilson score bound of its success
	// rate at Confidence is below the floor. Below the floor but not
	// significantly is inconclusive (the window is too small to tell).
	SuccessRateMin float64
	// LatencyP99Max, when above 0, fails a canary whose p99 significantly
	// exceeds it: the lower Wilson score bound, at Confidence, of the share
	// of its requests slower than LatencyP99Max is above 1%. Above it but
	// not significantly is inconclusive.
	LatencyP99Max time.Duration
	// Confidence is the confidence level of the floor judgements
	// (SuccessRateMin, LatencyP99Max); by default the comparison's, else
	// DefaultConfidence.
	Confidence float64 `json:"Confidence,omitempty"`
	// Compare, when set, compares canary with stable.
	Compare *Compare
	// Webhooks are gates the caller asks each window (see Gate).
	Webhooks []Webhook `json:"Webhooks,omitempty"`
	// Prometheus are PromQL gates the caller asks each window.
	Prometheus []PromQuery `json:"Prometheus,omitempty"`
}

// PromQuery is a Prometheus gate: Query, at the window's end, must return
// one number within [Min, Max] (each when set).
type PromQuery struct {
	Name, Address, Query string
	Min, Max             *float64
	Timeout              time.Duration
}

// Webhook is an HTTP gate: the window's context is POSTed to URL; a 2xx
// answer passes.
type Webhook struct {
	Name, URL string
	// Timeout bounds each attempt; Retries more attempts follow a failure.
	Timeout time.Duration
	Retries int
}

// DefaultWebhookTimeout is a webhook attempt's default timeout.
const DefaultWebhookTimeout = 5 * time.Second

// Gate is the answer of one webhook or Prometheus query for a window.
type Gate struct {
	// Kind is webhook or prometheus; the check is named Kind.Name.
	Kind   string
	Name   string
	Passed bool
	// Detail says what it answered (status, error, attempts).
	Detail string
}

// Sample is one release's golden signals over a window.
type Sample struct {
	// Requests and Errors count responses; Errors are 5xx and transport
	// failures.
	Requests, Errors uint64
	// Latency is the response latency histogram.
	Latency latency.Histogram
}

// Summary is a sample as the evidence reports it.
type Summary struct {
	Requests, Errors uint64
	// ErrorRate is in percent.
	ErrorRate float64
	P50, P99  time.Duration
}

// Summarize reduces s to its summary.
func Summarize(s Sample) Summary {
	out := Summary{Requests: s.Requests, Errors: s.Errors, P50: s.Latency.Quantile(0.5), P99: s.Latency.Quantile(0.99)}
	if s.Requests > 0 {
		out.ErrorRate = 100 * float64(s.Errors) / float64(s.Requests)
	}
	return out
}

// Check is one test with its evidence.
type Check struct {
	// Name is success_rate, latency_p99, compare.error_rate or
	// compare.latency.
	Name string
	// Result is the check's outcome (inconclusive when it could not run).
	Result Result
	// Observed and Threshold are the compared values, in the check's unit
	// (percent, milliseconds, percentage points or a ratio).
	Observed, Threshold float64
	// Test names the statistical test, PValue its one-sided p-value (0
	// without one).
	Test   string
	PValue float64
	// Detail says it for people.
	Detail string
}

// Verdict is the judgement of one window.
type Verdict struct {
	Result Result
	// Canary and Stable summarise the samples judged.
	Canary, Stable Summary
	// Checks are the tests run, in a fixed order.
	Checks []Check
	// Reason is one sentence: the first failure, or why it is
	// inconclusive, or "all checks passed".
	Reason string
}

// String is the verdict with its evidence, one line.
func (v Verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s; canary %d req %d err (%.2f%%) p50 %s p99 %s; stable %d req %d err (%.2f%%) p50 %s p99 %s",
		v.Result, v.Reason, v.Canary.Requests, v.Canary.Errors, v.Canary.ErrorRate, ms(v.Canary.P50), ms(v.Canary.P99),
		v.Stable.Requests, v.Stable.Errors, v.Stable.ErrorRate, ms(v.Stable.P50), ms(v.Stable.P99))
	for _, c := range v.Checks {
		fmt.Fprintf(&b, "; %s %s: %s", c.Name, c.Result, c.Detail)
	}
	return b.String()
}

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

// Judge runs every configured check of cfg on the canary's and the stable
// release's samples of one window. The verdict fails if any check fails;
// else it is inconclusive if a floor (success_rate, latency_p99) is missed
// but not significantly for the window's requests; else it passes if at
// least one check passes, and is inconclusive otherwise (the canary, or for
// a comparison alone stable too, served fewer than MinRequests).
//
// Each gate (a webhook's answer) is one more check, judged whatever the
// traffic: a failed gate fails the window even without data.
func Judge(cfg Config, canary, stable Sample, gates ...Gate) Verdict {
	v := Verdict{Canary: Summarize(canary), Stable: Summarize(stable)}
	for _, g := range gates {
		kind := g.Kind
		if kind == "" {
			kind = "webhook"
		}
		c := Check{Name: kind + "." + g.Name, Result: Pass, Detail: g.Detail}
		if !g.Passed {
			c.Result = Fail
		}
		v.Checks = append(v.Checks, c)
	}
	if canary.Requests < cfg.MinRequests || canary.Requests == 0 {
		reason := fmt.Sprintf("the canary served %d requests in the window, fewer than min_requests %d", canary.Requests, max(cfg.MinRequests, 1))
		for _, c := range v.Checks {
			if c.Result == Fail {
				v.Result, v.Reason = Fail, c.Name+": "+c.Detail
				return v
			}
		}
		if len(v.Checks) > 0 && cfg.SuccessRateMin == 0 && cfg.LatencyP99Max == 0 && cfg.Compare == nil {
			v.Result, v.Reason = Pass, "all checks passed"
			return v
		}
		v.Result, v.Reason = Inconclusive, reason
		return v
	}
	if cfg.SuccessRateMin > 0 {
		v.Checks = append(v.Checks, successRate(cfg, canary, v))
	}
	if cfg.LatencyP99Max > 0 {
		v.Checks = append(v.Checks, latencyP99(cfg, canary, v))
	}
	if cfg.Compare != nil {
		v.Checks = append(v.Checks, compareErrors(cfg, canary, stable, v), compareLatency(cfg, canary, stable, v))
	}
	var passed bool
	var floor *Check // the first inconclusive floor
	for i, c := range v.Checks {
		switch c.Result {
		case Fail:
			v.Result, v.Reason = Fail, c.Name+": "+c.Detail
			return v
		case Pass:
			passed = true
		case Inconclusive:
			if floor == nil && (c.Name == "success_rate" || c.Name == "latency_p99") {
				floor = &v.Checks[i]
			}
		}
	}
	if floor != nil {
		// A floor the window cannot tell is met is not passed by the
		// other checks: the window is inconclusive (the no_data policy).
		v.Result, v.Reason = Inconclusive, floor.Name+": "+floor.Detail
		return v
	}
	if !passed {
		v.Result = Inconclusive
		v.Reason = "no check is configured"
		if len(v.Checks) > 0 {
			v.Reason = v.Checks[0].Name + ": " + v.Checks[0].Detail
		}
		return v
	}
	v.Result, v.Reason = Pass, "all checks passed"
	return v
}

// confidence is the floors' confidence level: Confidence, else the
// comparison's, else DefaultConfidence.
func (c Config) confidence() float64 {
	switch {
	case c.Confidence > 0:
		return c.Confidence
	case c.Compare != nil && c.Compare.Confidence > 0:
		return c.Compare.Confidence
	}
	return DefaultConfidence
}

// successRate judges the success floor on the canary's window: fail only
// when even the upper Wilson score bound of its success rate at the
// analysis's confidence is below the floor (the shortfall is significant
// for the requests seen; the score test's one-sided p-value is below 1 -
// confidence), pass when the observed rate is at or above it, and
// inconclusive in between: a few errors in a small window are not
// evidence that the canary is worse than the floor.
func successRate(cfg Config, canary Sample, v Verdict) Check {
	conf := cfg.confidence()
	rate := 100 - v.Canary.ErrorRate
	c := Check{Name: "success_rate", Observed: rate, Threshold: cfg.SuccessRateMin, Test: "wilson_score"}
	floor := cfg.SuccessRateMin / 100
	_, hi := Wilson(canary.Requests-canary.Errors, canary.Requests, conf)
	c.PValue = ScoreTestBelow(canary.Requests-canary.Errors, canary.Requests, floor)
	switch {
	case rate >= cfg.SuccessRateMin:
		c.Result, c.Detail = Pass, fmt.Sprintf("%.2f%% >= min %.2f%%", rate, cfg.SuccessRateMin)
	case hi < floor:
		c.Result, c.Detail = Fail, fmt.Sprintf("%.2f%% below min %.2f%% (%d of %d failed; upper bound %.2f%% at %g confidence, p=%.3g)",
			rate, cfg.SuccessRateMin, canary.Errors, canary.Requests, 100*hi, conf, c.PValue)
	default:
		c.Result, c.Detail = Inconclusive, fmt.Sprintf("%.2f%% below min %.2f%% but not significantly for %d requests (%d failed; upper bound %.2f%% at %g confidence, p=%.3g)",
			rate, cfg.SuccessRateMin, canary.Requests, canary.Errors, 100*hi, conf, c.PValue)
	}
	return c
}

// latencyP99 judges the p99 ceiling: the p99 is above max exactly when
// more than 1% of the requests are slower than max, so it fails only when
// the lower Wilson score bound of that share (at the analysis's
// confidence) is above 1%, passes when the observed p99 is at most max,
// and is inconclusive in between.
func latencyP99(cfg Config, canary Sample, v Verdict) Check {
	conf := cfg.confidence()
	p99 := v.Canary.P99
	c := Check{Name: "latency_p99", Observed: millis(p99), Threshold: millis(cfg.LatencyP99Max), Test: "wilson_score"}
	n := canary.Latency.Total()
	slow := slower(canary.Latency, cfg.LatencyP99Max)
	lo, _ := Wilson(slow, n, conf)
	c.PValue = ScoreTestAbove(slow, n, 0.01)
	switch {
	case p99 <= cfg.LatencyP99Max || n == 0:
		c.Result, c.Detail = Pass, fmt.Sprintf("%s <= max %s", ms(p99), cfg.LatencyP99Max)
	case lo > 0.01:
		c.Result, c.Detail = Fail, fmt.Sprintf("%s above max %s (%d of %d requests slower; lower bound %.2f%% > 1%% at %g confidence, p=%.3g)",
			ms(p99), cfg.LatencyP99Max, slow, n, 100*lo, conf, c.PValue)
	default:
		c.Result, c.Detail = Inconclusive, fmt.Sprintf("%s above max %s but not significantly for %d requests (%d slower; lower bound %.2f%% at %g confidence, p=%.3g)",
			ms(p99), cfg.LatencyP99Max, n, slow, 100*lo, conf, c.PValue)
	}
	return c
}

// slower counts the latencies of h above d: whole buckets above it, and
// the bucket holding d in proportion (as Quantile interpolates), rounded.
func slower(h latency.Histogram, d time.Duration) uint64 {
	var n float64
	for i, k := range h.Counts {
		lo, hi := latency.Lower(i), latency.Upper(i)
		switch {
		case k == 0 || hi <= d:
		case lo >= d:
			n += float64(k)
		default:
			n += float64(k) * float64(hi-d) / float64(hi-lo)
		}
	}
	return uint64(math.Round(n))
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func alpha(c *Compare) float64 { return 1 - c.Confidence }

// compareErrors tests whether the canary's error rate is significantly
// higher than stable's and by more than the allowed increase: Fisher's
// exact test when an expected cell count of the 2x2 table is below 5, the
// pooled two-proportion z-test otherwise.
func compareErrors(cfg Config, canary, stable Sample, v Verdict) Check {
	c := Check{Name: "compare.error_rate", Threshold: cfg.Compare.MaxErrorRateIncrease}
	if stable.Requests < max(cfg.MinRequests, 1) {
		c.Result = Inconclusive
		c.Detail = fmt.Sprintf("stable served %d requests in the window, fewer than min_requests %d", stable.Requests, max(cfg.MinRequests, 1))
		return c
	}
	c.Observed = v.Canary.ErrorRate - v.Stable.ErrorRate
	n := float64(canary.Requests + stable.Requests)
	errs := float64(canary.Errors + stable.Errors)
	minExpected := min(float64(canary.Requests), float64(stable.Requests)) * min(errs, n-errs) / n
	if minExpected < 5 {
		c.Test = "fisher_exact"
		c.PValue = FisherGreater(canary.Errors, canary.Requests, stable.Errors, stable.Requests)
	} else {
		c.Test = "two_proportion_z"
		_, c.PValue = TwoProportionZ(canary.Errors, canary.Requests, stable.Errors, stable.Requests)
	}
	significant := c.PValue < alpha(cfg.Compare)
	c.Result = Pass
	c.Detail = fmt.Sprintf("canary %.2f%% vs stable %.2f%% (%+.2f points, max +%.2f), %s p=%.3g", v.Canary.ErrorRate, v.Stable.ErrorRate, c.Observed, c.Threshold, c.Test, c.PValue)
	if significant && c.Observed > c.Threshold {
		c.Result = Fail
		c.Detail += fmt.Sprintf(" < %.3g", alpha(cfg.Compare))
	}
	return c
}

// compareLatency tests whether the canary's latencies are significantly
// greater than stable's (Mann-Whitney U on the histograms) and its p99 more
// than MaxLatencyRatio times stable's.
func compareLatency(cfg Config, canary, stable Sample, v Verdict) Check {
	c := Check{Name: "compare.latency", Threshold: cfg.Compare.MaxLatencyRatio, Test: "mann_whitney_u"}
	if stable.Latency.Total() < max(cfg.MinRequests, 1) || canary.Latency.Total() == 0 {
		c.Result = Inconclusive
		c.Detail = fmt.Sprintf("stable has %d latencies in the window, fewer than min_requests %d", stable.Latency.Total(), max(cfg.MinRequests, 1))
		return c
	}
	if v.Stable.P99 > 0 {
		c.Observed = float64(v.Canary.P99) / float64(v.Stable.P99)
	}
	_, _, c.PValue = MannWhitney(canary.Latency, stable.Latency)
	c.Result = Pass
	c.Detail = fmt.Sprintf("p99 canary %s vs stable %s (ratio %.2f, max %.2f), mann_whitney_u p=%.3g", ms(v.Canary.P99), ms(v.Stable.P99), c.Observed, c.Threshold, c.PValue)
	if c.PValue < alpha(cfg.Compare) && c.Observed > c.Threshold {
		c.Result = Fail
		c.Detail += fmt.Sprintf(" < %.3g", alpha(cfg.Compare))
	}
	return c
}

// Tally counts a verdict's result under the no_data policy against the
// consecutive failed windows so far, as Argo Rollouts' consecutive error
// and failure limits do: it returns what the result counts as (pass, fail,
// or inconclusive for no_data hold) and the new count. A failure adds one;
// a pass, or an inconclusive window counted as one, resets it to 0; a held
// inconclusive window leaves it. The rollout fails when the count reaches
// FailureLimit, so random dips of a healthy canary, each rare, do not add
// up over a long step.
func (c Config) Tally(failures int, r Result) (counted Result, next int) {
	counted = r
	if r == Inconclusive {
		switch c.NoData {
		case NoDataFail:
			counted = Fail
		case NoDataPass:
			counted = Pass
		}
	}
	switch counted {
	case Pass:
		return counted, 0
	case Fail:
		return counted, failures + 1
	}
	return counted, failures
}

// Defaults applied by WithDefaults.
const (
	DefaultInterval             = 10 * time.Second
	DefaultMinRequests          = 100
	DefaultFailureLimit         = 2
	DefaultMaxErrorRateIncrease = 1.0
	DefaultMaxLatencyRatio      = 1.3
	DefaultConfidence           = 0.95
)

// WithDefaults returns c with every unset (zero) field at its default.
// Without any threshold or comparison, the comparison with its defaults
// applies.
func (c Config) WithDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.FailureLimit == 0 {
		c.FailureLimit = DefaultFailureLimit
	}
	if c.NoData == "" {
		c.NoData = NoDataHold
	}
	if c.SuccessRateMin == 0 && c.LatencyP99Max == 0 && c.Compare == nil && len(c.Webhooks) == 0 && len(c.Prometheus) == 0 {
		c.Compare = &Compare{}
	}
	if len(c.Webhooks) > 0 {
		hooks := make([]Webhook, len(c.Webhooks))
		for i, w := range c.Webhooks {
			if w.Timeout == 0 {
				w.Timeout = DefaultWebhookTimeout
			}
			hooks[i] = w
		}
		c.Webhooks = hooks
	}
	if len(c.Prometheus) > 0 {
		qs := make([]PromQuery, len(c.Prometheus))
		for i, q := range c.Prometheus {
			if q.Timeout == 0 {
				q.Timeout = DefaultWebhookTimeout
			}
			qs[i] = q
		}
		c.Prometheus = qs
	}
	if c.Compare != nil {
		cmp := *c.Compare
		if cmp.MaxErrorRateIncrease == 0 {
			cmp.MaxErrorRateIncrease = DefaultMaxErrorRateIncrease
		}
		if cmp.MaxLatencyRatio == 0 {
			cmp.MaxLatencyRatio = DefaultMaxLatencyRatio
		}
		if cmp.Confidence == 0 {
			cmp.Confidence = DefaultConfidence
		}
		c.Compare = &cmp
	}
	if c.Confidence == 0 {
		c.Confidence = c.confidence()
	}
	return c
}

// Validate checks a Config with defaults applied; the error names the
// field.
func (c Config) Validate() error {
	switch {
	case c.Interval < time.Second:
		return fmt.Errorf("interval: must be at least 1s (signals are merged per second), got %s", c.Interval)
	case c.FailureLimit < 1:
		return fmt.Errorf("failure_limit: must be at least 1, got %d", c.FailureLimit)
	case c.NoData != NoDataHold && c.NoData != NoDataFail && c.NoData != NoDataPass:
		return fmt.Errorf("no_data: %q is not hold, fail or pass", c.NoData)
	case !(c.SuccessRateMin >= 0 && c.SuccessRateMin <= 100):
		return fmt.Errorf("success_rate.min: must be 0-100 percent, got %v", c.SuccessRateMin)
	case c.LatencyP99Max < 0:
		return fmt.Errorf("latency_p99.max: must not be negative, got %s", c.LatencyP99Max)
	}
	for i, w := range c.Webhooks {
		switch {
		case w.Name == "" || w.URL == "":
			return fmt.Errorf("webhooks[%d]: needs a name and a url", i)
		case w.Timeout <= 0 || w.Timeout > 30*time.Second:
			return fmt.Errorf("webhooks[%d].timeout: must be above 0 and at most 30s, got %s", i, w.Timeout)
		case w.Retries < 0 || w.Retries > 5:
			return fmt.Errorf("webhooks[%d].retries: must be 0-5, got %d", i, w.Retries)
		}
	}
	for i, q := range c.Prometheus {
		switch {
		case q.Name == "" || q.Address == "" || q.Query == "":
			return fmt.Errorf("prometheus[%d]: needs a name, an address and a query", i)
		case q.Min == nil && q.Max == nil:
			return fmt.Errorf("prometheus[%d]: needs min or max", i)
		case q.Timeout <= 0 || q.Timeout > 30*time.Second:
			return fmt.Errorf("prometheus[%d].timeout: must be above 0 and at most 30s, got %s", i, q.Timeout)
		}
	}
	if cmp := c.Compare; cmp != nil {
		switch {
		case !(cmp.MaxErrorRateIncrease >= 0 && cmp.MaxErrorRateIncrease <= 100):
			return fmt.Errorf("compare.max_error_rate_increase: must be 0-100 percentage points, got %v", cmp.MaxErrorRateIncrease)
		case !(cmp.MaxLatencyRatio >= 1 && cmp.MaxLatencyRatio <= 1000):
			return fmt.Errorf("compare.max_latency_ratio: must be 1-1000, got %v", cmp.MaxLatencyRatio)
		case !(cmp.Confidence >= 0.5 && cmp.Confidence <= 0.9999):
			return fmt.Errorf("compare.confidence: must be 0.5-0.9999, got %v", cmp.Confidence)
		}
	}
	if c.Confidence != 0 && !(c.Confidence >= 0.5 && c.Confidence <= 0.9999) {
		return fmt.Errorf("confidence: must be 0.5-0.9999, got %v", c.Confidence)
	}
	return nil
}
