package signals

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"slipway.dev/platform/latency"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

func TestCounterCountsConcurrently(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 1000; i++ {
				code := 200
				if i%20 == 0 {
					code = 503
				}
				c.Observe("web", 2, code, 3*time.Millisecond)
				c.Observe("web", 1, 499, time.Second) // a client that went away is no error
			}
		})
	}
	wg.Wait()
	s := c.Snapshot()
	if got := s[Key{"web", 2}]; got.Requests != 8000 || got.Errors != 400 || got.Latency.Counts[latency.Index(3*time.Millisecond)] != 8000 {
		t.Errorf("web v2: %d requests %d errors %d in the 3ms bucket; want 8000, 400, 8000", got.Requests, got.Errors, got.Latency.Total())
	}
	if got := s[Key{"web", 1}]; got.Requests != 8000 || got.Errors != 0 {
		t.Errorf("web v1: %d requests %d errors; want 8000, 0", got.Requests, got.Errors)
	}
}

// recorder is a Send that records reports and fails while fail is set.
type recorder struct {
	reqs []*edgev1.ReportSignalsRequest
	fail bool
}

func (r *recorder) send(_ context.Context, req *edgev1.ReportSignalsRequest) error {
	r.reqs = append(r.reqs, req)
	if r.fail {
		return errors.New("coordinator unavailable")
	}
	return nil
}

func TestReporterCarriesFailedReportsOver(t *testing.T) {
	var c Counter
	rec := &recorder{}
	r := &Reporter{EdgeID: "e1", Source: CounterSource{&c}, Send: rec.send, Interval: time.Second}
	t0 := time.Unix(1000, 0)
	ctx := context.Background()

	if sent, err := r.ReportOnce(ctx, t0); sent || err != nil {
		t.Fatalf("nothing counted: sent %v, err %v", sent, err)
	}
	for i := 0; i < 10; i++ {
		c.Observe("web", 2, 200, time.Millisecond)
	}
	c.Observe("web", 2, 500, time.Millisecond)
	rec.fail = true
	if _, err := r.ReportOnce(ctx, t0.Add(time.Second)); err == nil {
		t.Fatal("a failed send was not reported as an error")
	}
	rec.fail = false
	c.Observe("web", 2, 200, time.Millisecond)
	c.Observe("api", 7, 200, time.Millisecond)
	if _, err := r.ReportOnce(ctx, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	last := rec.reqs[len(rec.reqs)-1]
	if last.GetPeriod().AsDuration() != 2*time.Second {
		t.Errorf("period %s, want 2s (the failed second carried over)", last.GetPeriod().AsDuration())
	}
	if len(last.Signals) != 2 || last.Signals[0].Service != "api" || last.Signals[1].Requests != 12 || last.Signals[1].Errors != 1 {
		t.Fatalf("report after the failure: %v; want api v7 then web v2 with 12 requests, 1 error", last.Signals)
	}
	h, err := latency.Decode(last.Signals[1].Latency.Schema, last.Signals[1].Latency.Offset, last.Signals[1].Latency.Counts)
	if err != nil || h.Total() != 12 {
		t.Errorf("latency histogram: %v total %d, want 12", err, h.Total())
	}
	// Accepted counts are not sent again.
	c.Observe("web", 2, 200, time.Millisecond)
	if _, err := r.ReportOnce(ctx, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if last := rec.reqs[len(rec.reqs)-1]; len(last.Signals) != 1 || last.Signals[0].Requests != 1 {
		t.Errorf("next report: %v, want web v2 with 1 request", last.Signals)
	}
}
