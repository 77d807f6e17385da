package summary

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const s = time.Second

func ok(at time.Duration, v string) Sample  { return Sample{At: at, Version: v} }
func bad(at time.Duration, e string) Sample { return Sample{At: at, Err: e} }

func TestTimelineBookkeeping(t *testing.T) {
	var tl Timeline
	if got := tl.Current(); got != "" {
		t.Fatalf("Current of an empty timeline = %q", got)
	}
	if err := tl.End(s, "x"); !errors.Is(err, ErrOpenPhase) {
		t.Fatalf("End with nothing open: err = %v, want ErrOpenPhase", err)
	}
	must(t, tl.Begin("deploy v1", 0))
	if err := tl.Begin("canary v2", s); !errors.Is(err, ErrOpenPhase) {
		t.Fatalf("Begin while open: err = %v, want ErrOpenPhase", err)
	}
	if got := tl.Current(); got != "deploy v1" {
		t.Fatalf("Current = %q, want deploy v1", got)
	}
	must(t, tl.End(4*s, "succeeded"))
	must(t, tl.Begin("steady", 4*s))
	must(t, tl.End(5*s, ""))
	must(t, tl.Begin("canary v2", 5*s))
	// An end before the start is clamped: durations are never negative.
	must(t, tl.End(3*s, "succeeded"))
	must(t, tl.Begin("bad v4", 6*s))

	want := []Phase{
		{Name: "deploy v1", Start: 0, End: 4 * s, Outcome: "succeeded"},
		{Name: "steady", Start: 4 * s, End: 5 * s},
		{Name: "canary v2", Start: 5 * s, End: 5 * s, Outcome: "succeeded"},
		{Name: "bad v4", Start: 6 * s, End: 9 * s, Outcome: "unfinished"},
	}
	got := tl.Phases(9 * s)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("Phases (-want +got):\n%s", d)
	}
	// Phases returns a copy: the open phase is still open afterwards.
	if tl.Current() != "bad v4" {
		t.Fatalf("Phases closed the open phase")
	}
	if d := got[0].Duration(); d != 4*s {
		t.Fatalf("Duration = %s, want 4s", d)
	}
}

func TestComputeBucketsAndPhases(t *testing.T) {
	samples := []Sample{
		ok(100*time.Millisecond, "v1"), ok(900*time.Millisecond, "v1"),
		ok(1100*time.Millisecond, "v1"), ok(1200*time.Millisecond, "v1"), ok(1300*time.Millisecond, "v1"), ok(1400*time.Millisecond, "v2"),
		bad(2500*time.Millisecond, "HTTP 502"), ok(2600*time.Millisecond, "v2"),
		ok(3500*time.Millisecond, "v2"), bad(3600*time.Millisecond, "HTTP 502"), bad(3700*time.Millisecond, "EOF"),
	}
	phases := []Phase{
		{Name: "steady", Start: 0, End: 1 * s},
		{Name: "canary v2", Start: 1 * s, End: 3 * s, Outcome: "succeeded"},
		{Name: "steady", Start: 3 * s, End: 4 * s},
	}
	r := Compute(samples, phases, s, 0)
	if r.Requests != 11 || r.Failures != 3 {
		t.Fatalf("requests/failures = %d/%d, want 11/3", r.Requests, r.Failures)
	}
	if d := cmp.Diff([]string{"v1", "v2"}, r.Versions); d != "" {
		t.Fatalf("Versions (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"HTTP 502", "EOF"}, r.FirstErrors); d != "" {
		t.Fatalf("FirstErrors (-want +got):\n%s", d)
	}
	type row struct {
		Label         string
		Req, Fail     int
		V1, V2        float64
		Start, Finish time.Duration
	}
	flat := func(rs []Row) []row {
		var out []row
		for _, x := range rs {
			out = append(out, row{x.Label, x.Requests, x.Failures, x.Share("v1"), x.Share("v2"), x.Start, x.End})
		}
		return out
	}
	wantTimeline := []row{
		{"+0s", 2, 0, 100, 0, 0, s},
		{"+1s", 4, 0, 75, 25, s, 2 * s},
		{"+2s", 2, 1, 0, 100, 2 * s, 3 * s},
		{"+3s", 3, 2, 0, 100, 3 * s, 4 * s},
	}
	if d := cmp.Diff(wantTimeline, flat(r.Timeline)); d != "" {
		t.Fatalf("Timeline (-want +got):\n%s", d)
	}
	wantPhases := []row{
		{"steady", 2, 0, 100, 0, 0, s},
		{"canary v2", 6, 1, 60, 40, s, 3 * s},
		{"steady", 3, 2, 0, 100, 3 * s, 4 * s},
	}
	if d := cmp.Diff(wantPhases, flat(r.Phases)); d != "" {
		t.Fatalf("Phases (-want +got):\n%s", d)
	}
	if r.Phases[1].Outcome != "succeeded" {
		t.Fatalf("phase outcome = %q", r.Phases[1].Outcome)
	}
}

func TestTimelineStartsAtTheFirstSample(t *testing.T) {
	r := Compute([]Sample{ok(61*s, "v1"), ok(65*s, "v2"), ok(63*s, "v1")}, nil, 0, 3)
	if r.Bucket != 2*s {
		t.Fatalf("bucket = %s, want 2s (4s span in at most 3 rows)", r.Bucket)
	}
	var labels []string
	for _, row := range r.Timeline {
		labels = append(labels, fmt.Sprintf("%s:%d", row.Label, row.Requests))
	}
	if d := cmp.Diff([]string{"+1m0s:1", "+1m2s:1", "+1m4s:1"}, labels); d != "" {
		t.Fatalf("timeline (-want +got):\n%s", d)
	}
}

func TestComputeEmptyAndAllFailed(t *testing.T) {
	r := Compute(nil, []Phase{{Name: "deploy v1", End: 3 * s}}, 0, 30)
	if r.Requests != 0 || len(r.Timeline) != 0 || len(r.Phases) != 1 || r.Phases[0].Requests != 0 {
		t.Fatalf("empty report = %+v", r)
	}
	r = Compute([]Sample{bad(0, "x"), bad(s, "x")}, nil, 0, 30)
	if r.Failures != 2 || len(r.FirstErrors) != 1 || r.Timeline[0].Share("v1") != 0 {
		t.Fatalf("all-failed report = %+v", r)
	}
}

func TestBucketFor(t *testing.T) {
	for _, tc := range []struct {
		span time.Duration
		rows int
		want time.Duration
	}{
		{0, 30, s},
		{29 * s, 30, s},
		{30 * s, 30, 2 * s},
		{90 * s, 30, 5 * s},
		{200 * s, 30, 10 * s},
		{10 * time.Minute, 30, 30 * s},
		{5 * s, 0, 10 * s},
	} {
		if got := BucketFor(tc.span, tc.rows); got != tc.want {
			t.Errorf("BucketFor(%s, %d) = %s, want %s", tc.span, tc.rows, got, tc.want)
		}
	}
}

func TestWrite(t *testing.T) {
	r := Compute([]Sample{ok(0, "v1"), ok(s, "v2"), bad(s, "HTTP 502")},
		[]Phase{{Name: "canary v2", Start: 0, End: 2 * s, Outcome: "succeeded"}}, s, 0)
	var b strings.Builder
	must(t, r.Write(&b))
	out := b.String()
	for _, want := range []string{
		"requests sent: 3   failed: 1 (33.333%)",
		"failure: HTTP 502",
		"canary v2        2s succeeded          3      1  50.0%  50.0%",
		"+1s        2      1      - 100.0%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
