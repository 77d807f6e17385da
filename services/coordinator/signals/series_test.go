package signals

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

func TestSeriesSlotsMatchWindows(t *testing.T) {
	s := New(0)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 10 {
		req := &edgev1.ReportSignalsRequest{EdgeId: "e1", Signals: []*edgev1.ReleaseSignals{
			{Service: "web", Release: 2, Requests: uint64(10 + i), Errors: uint64(i % 2)}}}
		if err := s.Add(t0.Add(time.Duration(i)*time.Second), req); err != nil {
			t.Fatal(err)
		}
	}
	req, errs := s.Series("web", 2, t0.Add(time.Second), 3*time.Second, 4)
	var wantReq, wantErr []uint64
	for i := range 4 {
		w := s.Window("web", 2, t0.Add(time.Second+time.Duration(3*i)*time.Second), t0.Add(time.Second+time.Duration(3*i+3)*time.Second))
		wantReq, wantErr = append(wantReq, w.Requests), append(wantErr, w.Errors)
	}
	if diff := cmp.Diff(wantReq, req); diff != "" {
		t.Errorf("requests (-window +series):\n%s", diff)
	}
	if diff := cmp.Diff(wantErr, errs); diff != "" {
		t.Errorf("errors (-window +series):\n%s", diff)
	}
	if req[0] != 11+12+13 {
		t.Errorf("first slot = %d requests, want %d", req[0], 11+12+13)
	}
}
