package signals

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/platform/latency"
)

// Prometheus names of the golden signals per release (both edge modes).
const (
	MetricRequests = "slipway_edge_release_requests_total"
	MetricErrors   = "slipway_edge_release_errors_total"
	MetricLatency  = "slipway_edge_release_latency_seconds"
)

var (
	descRequests = prometheus.NewDesc(MetricRequests, "Responses the edge served per service and release (both modes: the built-in proxy and nginx).", []string{"service", "release"}, nil)
	descErrors   = prometheus.NewDesc(MetricErrors, "Responses per service and release that were 5xx or transport failures (the edge's own 502/504).", []string{"service", "release"}, nil)
	descLatency  = prometheus.NewDesc(MetricLatency, "Response latency per service and release, in buckets of one doubling from 100µs.", []string{"service", "release"}, nil)
)

// Collector exports a Source's cumulative counts to Prometheus as the
// golden signals per release: what canary analysis judges, for dashboards
// and alerts.
type Collector struct {
	src     Source
	timeout time.Duration
}

// NewCollector returns a Collector of src.
func NewCollector(src Source) *Collector { return &Collector{src: src, timeout: 2 * time.Second} }

// Interface guards.
var _ prometheus.Collector = (*Collector)(nil)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRequests
	ch <- descErrors
	ch <- descLatency
}

// Collect implements prometheus.Collector; a Source that cannot be read
// (nginx restarting) yields no series for the scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	snap, err := c.src.Snapshot(ctx)
	if err != nil {
		return
	}
	for k, t := range snap {
		rel := strconv.FormatUint(k.Release, 10)
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(t.Requests), k.Service, rel)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(t.Errors), k.Service, rel)
		buckets := map[float64]uint64{}
		var cum, total uint64
		var sum float64
		for i, n := range t.Latency.Counts {
			total += n
			sum += float64(n) * (latency.Lower(i) + latency.Upper(i)).Seconds() / 2
		}
		for i, n := range t.Latency.Counts {
			cum += n
			if i%latency.PerOctave == 0 && i < latency.Buckets-1 {
				buckets[latency.Upper(i).Seconds()] = cum
			}
		}
		if len(t.Latency.Counts) == 0 {
			for i := 0; i < latency.Buckets-1; i += latency.PerOctave {
				buckets[latency.Upper(i).Seconds()] = 0
			}
		}
		ch <- prometheus.MustNewConstHistogram(descLatency, total, sum, buckets, k.Service, rel)
	}
}
