package agent

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus metrics.
type metrics struct {
	syncs    *prometheus.CounterVec
	exits    prometheus.Counter
	restarts prometheus.Counter
	start    prometheus.Histogram
	drain    prometheus.Histogram
}

func newMetrics(a *Agent, reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "nodeagent", Name: "syncs_total",
			Help: "SyncAllocations calls by result (ok, stale, refused, error)."}, []string{"result"}),
		exits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "nodeagent", Name: "instance_exits_total",
			Help: "Instances that exited behind the agent's back."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "nodeagent", Name: "restarts_total",
			Help: "Instances restarted by the agent after an exit."}),
		start: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "slipway", Subsystem: "nodeagent", Name: "start_seconds",
			Help: "Time from starting an instance to registering it.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
		drain: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "slipway", Subsystem: "nodeagent", Name: "drain_seconds",
			Help: "Time from deregistering an instance to the route barrier (or drain window) being passed.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
	}
	if reg == nil {
		return m
	}
	allocs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "slipway", Subsystem: "nodeagent", Name: "allocations",
		Help: "Allocations the agent knows (desired, refused or stopping)."}, func() float64 { return float64(len(a.Statuses())) })
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "slipway", Subsystem: "nodeagent", Name: "allocations_running",
		Help: "Allocations running and registered."}, func() float64 {
		n := 0
		for _, s := range a.Statuses() {
			if s.State == Running {
				n++
			}
		}
		return float64(n)
	})
	for _, c := range []prometheus.Collector{m.syncs, m.exits, m.restarts, m.start, m.drain, allocs, running} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(fmt.Sprintf("agent: register metrics: %v", err)) // a programming error: duplicate names
			}
		}
	}
	return m
}
