// Package signals counts the golden signals of every release the edge
// serves (requests, errors, a latency histogram) and reports them, as
// summaries, to the coordinators for canary analysis.
package signals

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/latency"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// Key names one release of one service.
type Key struct {
	Service string
	Release uint64
}

// series are one release's cumulative counts, updated with atomics.
type series struct {
	requests, errors atomic.Uint64
	buckets          [latency.Buckets]atomic.Uint64
}

// Counter counts responses per service and release. It is safe for
// concurrent use; Observe takes no lock once a release has been seen.
type Counter struct {
	m sync.Map // Key -> *series
}

// Observe counts one response of service's release with HTTP status code
// (5xx counting as an error, the edge's own 502/504 for a transport failure
// included) that took took.
func (c *Counter) Observe(service string, release uint64, code int, took time.Duration) {
	k := Key{service, release}
	v, ok := c.m.Load(k)
	if !ok {
		v, _ = c.m.LoadOrStore(k, new(series))
	}
	s := v.(*series)
	s.requests.Add(1)
	if code >= 500 && code <= 599 {
		s.errors.Add(1)
	}
	s.buckets[latency.Index(took)].Add(1)
}

// Totals are one release's counts.
type Totals struct {
	Requests, Errors uint64
	Latency          latency.Histogram
}

// Snapshot returns the cumulative counts of every release seen.
func (c *Counter) Snapshot() map[Key]Totals {
	out := map[Key]Totals{}
	c.m.Range(func(k, v any) bool {
		s := v.(*series)
		t := Totals{Requests: s.requests.Load(), Errors: s.errors.Load()}
		for i := range s.buckets {
			t.Latency.AddN(i, s.buckets[i].Load())
		}
		out[k.(Key)] = t
		return true
	})
	return out
}

// Delta is cur minus prev per release, leaving out releases without new
// requests. Counts never decrease, so the difference is exact; a release
// whose request count went down was reset (nginx restarted) and counts
// whole.
func Delta(cur, prev map[Key]Totals) map[Key]Totals {
	out := map[Key]Totals{}
	for k, c := range cur {
		p := prev[k]
		if c.Requests == p.Requests {
			continue
		}
		if c.Requests < p.Requests || c.Errors < p.Errors {
			p = Totals{}
		}
		d := Totals{Requests: c.Requests - p.Requests, Errors: c.Errors - p.Errors}
		for i, n := range c.Latency.Counts {
			var pn uint64
			if i < len(p.Latency.Counts) {
				pn = p.Latency.Counts[i]
			}
			if n > pn {
				d.Latency.AddN(i, n-pn)
			}
		}
		out[k] = d
	}
	return out
}

// Request builds the report of d.
func Request(edgeID string, period time.Duration, d map[Key]Totals) *edgev1.ReportSignalsRequest {
	keys := make([]Key, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Service != keys[j].Service {
			return keys[i].Service < keys[j].Service
		}
		return keys[i].Release < keys[j].Release
	})
	req := &edgev1.ReportSignalsRequest{EdgeId: edgeID, Period: durationpb.New(period)}
	for _, k := range keys {
		t := d[k]
		off, counts := t.Latency.Encode()
		req.Signals = append(req.Signals, &edgev1.ReleaseSignals{Service: k.Service, Release: k.Release, Requests: t.Requests, Errors: t.Errors,
			Latency: &edgev1.LatencyHistogram{Schema: latency.Schema, Offset: off, Counts: counts}})
	}
	return req
}

// Source gives the cumulative counts to report (a Counter, or nginx's
// shared dictionary read through its control endpoint).
type Source interface {
	Snapshot(ctx context.Context) (map[Key]Totals, error)
}

// CounterSource is a Counter as a Source.
type CounterSource struct{ *Counter }

// Snapshot implements Source.
func (c CounterSource) Snapshot(context.Context) (map[Key]Totals, error) {
	return c.Counter.Snapshot(), nil
}

// Send delivers one report (the gRPC client of SignalService in production).
type Send func(ctx context.Context, req *edgev1.ReportSignalsRequest) error

// Reporter pushes what a Source counted since the last accepted report,
// every Interval. A report that fails is not lost: its counts are carried
// into the next one (the reporter remembers what was accepted, not what was
// sent).
type Reporter struct {
	EdgeID   string
	Source   Source
	Send     Send
	Interval time.Duration
	Logger   *slog.Logger

	sent   map[Key]Totals
	sentAt time.Time
	failed bool
}

// ReportOnce sends the counts since the last accepted report, if any, and
// reports whether there was something to send.
func (r *Reporter) ReportOnce(ctx context.Context, now time.Time) (bool, error) {
	cur, err := r.Source.Snapshot(ctx)
	if err != nil {
		return false, fmt.Errorf("signals: read counts: %w", err)
	}
	if r.sentAt.IsZero() {
		r.sentAt = now.Add(-r.Interval)
	}
	d := Delta(cur, r.sent)
	if len(d) == 0 {
		r.sentAt = now
		return false, nil
	}
	if err := r.Send(ctx, Request(r.EdgeID, now.Sub(r.sentAt), d)); err != nil {
		return true, fmt.Errorf("signals: report: %w", err)
	}
	r.sent, r.sentAt = cur, now
	return true, nil
}

// Run reports every Interval until ctx ends. Failures are logged once per
// outage, not per report.
func (r *Reporter) Run(ctx context.Context) {
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			sctx, cancel := context.WithTimeout(ctx, r.Interval*5)
			_, err := r.ReportOnce(sctx, now)
			cancel()
			switch {
			case err != nil && !r.failed:
				r.failed = true
				r.Logger.Warn("golden signals not reported; counts are kept for the next report", "err", err)
			case err == nil && r.failed:
				r.failed = false
				r.Logger.Info("golden signals reported again")
			}
		}
	}
}
