package analysis_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"slipway.dev/coordinator/analysis"
)

// The detection benchmark (scripts/bench-detection.sh, in make bench) runs
// the pure judge on synthetic traffic: every second, rate requests split
// between a canary at weight w and stable, each request an error with
// probability e on the canary and 0.1% on stable (a realistic baseline),
// latencies log-normal around 10 ms for both, drawn from a seeded
// generator. On the same traffic it replays two policies from the moment
// the canary's weight takes effect:
//
//   - Slipway, twice: the analysis below with the README's 99% success
//     floor beside the comparison, and with the comparison alone (what an
//     analysis without checks does); each judged every 10 s window,
//     reverting at failure_limit (2) failed windows in a row (Tally);
//   - Flagger-style: every 1 m, the canary's success rate over the last
//     minute below 99% is a failed check; the same failure count (2)
//     reverts.
//
// It reports, per (e, w), the median time to the reverting verdict and the
// median number of the canary's errors served until then, over runs seeds;
// a run not reverted within the horizon counts as the horizon and what it
// served by then. The e = 0.1% rows are a healthy canary (stable's own
// error rate): there the detected count is the false reverts.
const (
	detectionHorizon = 15 * 60 // seconds
	stableErrorPct   = 0.1
)

// detectionConfigs are the Slipway analyses the benchmark judges with:
// 10 s windows, min_requests 50, failure_limit 2, no_data hold, the
// comparison with its defaults (+1 point at 95% confidence, p99 ratio 1.3);
// the first adds the README example's 99% success floor.
func detectionConfigs() []analysis.Config {
	floor := analysis.Config{Interval: 10 * time.Second, MinRequests: 50, FailureLimit: 2, NoData: analysis.NoDataHold,
		SuccessRateMin: 99, Compare: &analysis.Compare{}}.WithDefaults()
	cmp := floor
	cmp.SuccessRateMin = 0
	return []analysis.Config{floor, cmp}
}

type detection struct {
	detected bool
	at       int    // seconds from the canary's weight to the reverting verdict
	bad      uint64 // canary errors served until then
}

// simulate is one run: every policy on the same seeded traffic; the
// Slipway configs' results first, Flagger-style last.
func simulate(seed uint64, rate int, errPct float64, weight int) []detection {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	cfgs := detectionConfigs()
	out := make([]detection, len(cfgs)+1)
	done := make([]bool, len(out))
	fails := make([]int, len(out))
	var win struct{ c, s analysis.Sample }
	var flagReq, flagErr, served uint64
	pending := len(out)
	interval := int(cfgs[0].Interval / time.Second)
	for t := 0; t < detectionHorizon && pending > 0; t++ {
		for range rate {
			lat := time.Duration(math.Exp(rng.NormFloat64()*0.5) * float64(10*time.Millisecond))
			if rng.Float64()*100 < float64(weight) {
				win.c.Requests++
				flagReq++
				win.c.Latency.Add(lat)
				if rng.Float64()*100 < errPct {
					win.c.Errors++
					flagErr++
					served++
				}
				continue
			}
			win.s.Requests++
			win.s.Latency.Add(lat)
			if rng.Float64()*100 < stableErrorPct {
				win.s.Errors++
			}
		}
		now := t + 1
		if now%interval == 0 {
			for i, cfg := range cfgs {
				if done[i] {
					continue
				}
				_, fails[i] = cfg.Tally(fails[i], analysis.Judge(cfg, win.c, win.s).Result)
				if fails[i] >= cfg.FailureLimit {
					out[i], done[i] = detection{detected: true, at: now, bad: served}, true
					pending--
				}
			}
			win.c, win.s = analysis.Sample{}, analysis.Sample{}
		}
		if f := len(out) - 1; now%60 == 0 {
			if !done[f] && flagReq > 0 && 100*float64(flagReq-flagErr)/float64(flagReq) < 99 {
				fails[f]++
				if fails[f] >= 2 {
					out[f], done[f] = detection{detected: true, at: now, bad: served}, true
					pending--
				}
			}
			flagReq, flagErr = 0, 0
		}
	}
	for i := range out {
		if !done[i] {
			out[i] = detection{at: detectionHorizon, bad: served}
		}
	}
	return out
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// BenchmarkDetection reports, per error rate and weight, the median time to
// detection (s) and bad requests served for Slipway's judge (floor: with
// the 99% success floor; compare: the comparison alone) and a Flagger-style
// fixed threshold on the same traffic, and how many of the
// runs each reverted within the horizon. DETECTION_RATE (requests/s, default
// 200) and DETECTION_RUNS (default 20) tune it.
func BenchmarkDetection(b *testing.B) {
	rate, runs := envInt("DETECTION_RATE", 200), envInt("DETECTION_RUNS", 20)
	for ei, e := range []float64{stableErrorPct, 1, 2, 5} {
		for wi, w := range []int{5, 10, 20} {
			b.Run(fmt.Sprintf("e=%g%%/w=%d%%", e, w), func(b *testing.B) {
				names := []string{"floor", "compare", "flagger"}
				for range b.N {
					at := make([][]float64, len(names))
					bad := make([][]float64, len(names))
					reverted := make([]int, len(names))
					for r := range runs {
						for i, d := range simulate(uint64(1000*(ei*10+wi)+r), rate, e, w) {
							at[i], bad[i] = append(at[i], float64(d.at)), append(bad[i], float64(d.bad))
							if d.detected {
								reverted[i]++
							}
						}
					}
					for i, n := range names {
						b.ReportMetric(median(at[i]), n+"-s")
						b.ReportMetric(median(bad[i]), n+"-bad")
						b.ReportMetric(float64(reverted[i]), n+"-reverted")
					}
					b.ReportMetric(float64(runs), "runs")
				}
			})
		}
	}
}
