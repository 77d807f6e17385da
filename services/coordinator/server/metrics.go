package server

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/coordinator/state"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

var (
	descPhase = prometheus.NewDesc("slipway_rollout_phase", "1 for the phase of each service's latest rollout (pending, running, paused, succeeded, failed, reverted, aborted, superseded).",
		[]string{"service", "rollout", "phase"}, nil)
	descStep      = prometheus.NewDesc("slipway_rollout_step", "The step of each service's latest rollout, from one.", []string{"service", "rollout"}, nil)
	descWeight    = prometheus.NewDesc("slipway_rollout_weight", "Traffic percentage per release of each service's latest rollout.", []string{"service", "release"}, nil)
	descHealthy   = prometheus.NewDesc("slipway_rollout_healthy", "Healthy instances per release of each service's latest rollout, as of its last event.", []string{"service", "release"}, nil)
	descAwaiting  = prometheus.NewDesc("slipway_rollout_awaiting_promote", "1 while the service's latest rollout waits for a promote.", []string{"service", "rollout"}, nil)
	descAFailures = prometheus.NewDesc("slipway_rollout_analysis_failures", "Failed analysis verdicts of the service's latest rollout, as its last verdict counted them.", []string{"service", "rollout"}, nil)
)

// rolloutMetrics exports the rollouts of the replicated state: gauges of
// each service's latest rollout, read at scrape time, and counters of the
// events this coordinator applied (every coordinator applies the same log,
// so each reports the same counts).
type rolloutMetrics struct {
	fsm      *state.FSM
	events   *prometheus.CounterVec
	verdicts *prometheus.CounterVec
}

func newRolloutMetrics() *rolloutMetrics {
	return &rolloutMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipway_rollout_events_total",
			Help: "Rollout events applied, by service and kind (started, step, paused, analysis, hook, promoted, succeeded, failed, reverted, ...)."}, []string{"service", "kind"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "slipway_analysis_verdicts_total",
			Help: "Canary analysis verdicts applied, by service and what they counted as (pass, fail, inconclusive)."}, []string{"service", "result"}),
	}
}

// observe counts one applied event (state.WithEventObserver).
func (m *rolloutMetrics) observe(service, kind string, verdict deployv1.AnalysisResult) {
	m.events.WithLabelValues(service, kind).Inc()
	if verdict != deployv1.AnalysisResult_ANALYSIS_RESULT_UNSPECIFIED {
		m.verdicts.WithLabelValues(service, strings.ToLower(strings.TrimPrefix(verdict.String(), "ANALYSIS_RESULT_"))).Inc()
	}
}

// Describe implements prometheus.Collector.
func (m *rolloutMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPhase, descStep, descWeight, descHealthy, descAwaiting, descAFailures} {
		ch <- d
	}
	m.events.Describe(ch)
	m.verdicts.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *rolloutMetrics) Collect(ch chan<- prometheus.Metric) {
	m.events.Collect(ch)
	m.verdicts.Collect(ch)
	if m.fsm == nil {
		return
	}
	seen := map[string]bool{}
	for _, ro := range m.fsm.Rollouts("", false, 0) { // newest first
		svc := ro.GetService()
		if seen[svc] {
			continue
		}
		seen[svc] = true
		id := ro.GetId()
		phase := strings.ToLower(strings.TrimPrefix(ro.GetState().String(), "ROLLOUT_STATE_"))
		ch <- prometheus.MustNewConstMetric(descPhase, prometheus.GaugeValue, 1, svc, id, phase)
		ch <- prometheus.MustNewConstMetric(descStep, prometheus.GaugeValue, float64(ro.GetStep()+1), svc, id)
		for rel, w := range ro.GetWeights() {
			ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(w), svc, rel)
		}
		awaiting := 0.0
		if ro.GetAwaitingPromote() {
			awaiting = 1
		}
		ch <- prometheus.MustNewConstMetric(descAwaiting, prometheus.GaugeValue, awaiting, svc, id)
		failures := 0.0
		if evs, err := m.fsm.EventsAfter(id, 0); err == nil {
			var healthy map[string]int32
			for _, ev := range evs.Events {
				if ev.GetHealthy() != nil {
					healthy = ev.GetHealthy()
				}
				if a := ev.GetAnalysis(); a != nil {
					failures = float64(a.GetFailures())
				}
			}
			for rel, n := range healthy {
				ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, float64(n), svc, rel)
			}
		}
		ch <- prometheus.MustNewConstMetric(descAFailures, prometheus.GaugeValue, failures, svc, id)
	}
}
