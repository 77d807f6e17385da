package signals

import (
	"errors"
	"testing"
	"time"

	"slipway.dev/platform/latency"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

func report(edge string, sigs ...*edgev1.ReleaseSignals) *edgev1.ReportSignalsRequest {
	return &edgev1.ReportSignalsRequest{EdgeId: edge, Signals: sigs}
}

func sig(service string, release, requests, errs uint64, took time.Duration) *edgev1.ReleaseSignals {
	var h latency.Histogram
	h.AddN(latency.Index(took), requests)
	off, counts := h.Encode()
	return &edgev1.ReleaseSignals{Service: service, Release: release, Requests: requests, Errors: errs,
		Latency: &edgev1.LatencyHistogram{Schema: latency.Schema, Offset: off, Counts: counts}}
}

func TestMergesEdgesAndWindows(t *testing.T) {
	s := New(time.Minute)
	t0 := time.Unix(1000, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Add(t0, report("e1", sig("web", 2, 100, 5, 10*time.Millisecond), sig("web", 1, 900, 1, 10*time.Millisecond))))
	must(s.Add(t0.Add(300*time.Millisecond), report("e2", sig("web", 2, 50, 0, 20*time.Millisecond))))
	must(s.Add(t0.Add(5*time.Second), report("e1", sig("web", 2, 10, 10, time.Second))))

	w := s.Window("web", 2, t0, t0.Add(5*time.Second))
	if w.Requests != 150 || w.Errors != 5 || w.Latency.Total() != 150 {
		t.Errorf("first 5s of web v2: %d requests, %d errors, %d latencies; want 150, 5, 150 (two edges merged)", w.Requests, w.Errors, w.Latency.Total())
	}
	if w := s.Window("web", 2, t0.Add(5*time.Second), t0.Add(10*time.Second)); w.Requests != 10 || w.Errors != 10 {
		t.Errorf("next 5s: %+v, want 10 requests 10 errors", w)
	}
	if w := s.Window("web", 1, t0, t0.Add(10*time.Second)); w.Requests != 900 {
		t.Errorf("web v1: %d requests, want 900", w.Requests)
	}
	if n := s.Edges(t0.Add(5*time.Second), 10*time.Second); n != 2 {
		t.Errorf("edges reporting: %d, want 2", n)
	}
	// Retention: a minute later the first slots are gone.
	must(s.Add(t0.Add(70*time.Second), report("e1")))
	if w := s.Window("web", 2, t0, t0.Add(time.Minute)); w.Requests != 0 {
		t.Errorf("after retention: %d requests left", w.Requests)
	}
}

func TestRefusesBadReportsWhole(t *testing.T) {
	s := New(0)
	t0 := time.Unix(1000, 0)
	bad := sig("web", 2, 10, 1, time.Millisecond)
	bad.Latency.Schema = 9
	for _, c := range []struct {
		req   *edgev1.ReportSignalsRequest
		field string
	}{
		{report(""), "edge_id"},
		{report("e1", sig("web", 2, 10, 1, time.Millisecond), sig("", 2, 1, 0, time.Millisecond)), "signals[1].service"},
		{report("e1", sig("web", 0, 1, 0, time.Millisecond)), "signals[0].release"},
		{report("e1", sig("web", 2, 1, 2, time.Millisecond)), "signals[0].errors"},
		{report("e1", bad), "signals[0].latency"},
	} {
		err := s.Add(t0, c.req)
		if !errors.Is(err, ErrInvalidReport) || len(err.Error()) < len(c.field) || err.Error()[:len(c.field)] != c.field {
			t.Errorf("report %v: err %v, want ErrInvalidReport naming %s", c.req, err, c.field)
		}
	}
	if w := s.Window("web", 2, t0, t0.Add(time.Second)); w.Requests != 0 {
		t.Errorf("a refused report was merged in part: %d requests", w.Requests)
	}
}
