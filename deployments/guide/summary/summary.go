// Package summary turns the guide's recorded traffic and phases into the
// closing report: requests, failures and the share served per version, per
// time bucket and per phase. It is pure: no clock, no I/O besides the
// io.Writer it renders to.
package summary

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// ErrOpenPhase is returned when a phase is begun while another is open, or
// ended while none is.
var ErrOpenPhase = errors.New("summary: phase bookkeeping out of order")

// Sample is one request sent through the edge.
type Sample struct {
	// At is when the response (or error) came back, since the run started.
	At time.Duration
	// Version is the X-Slipway-Version header of the response: of every
	// successful one, and of a failed one when its release named itself.
	Version string
	// Err describes a failed request (non-2xx status or transport error);
	// empty on success.
	Err string
}

// OK reports whether the request succeeded.
func (s Sample) OK() bool { return s.Err == "" }

// Phase is a named interval of the run, e.g. one rollout.
type Phase struct {
	Name string
	// Start and End are offsets since the run started; End >= Start.
	Start, End time.Duration
	// Outcome is how the phase ended, e.g. the rollout's final state.
	Outcome string
}

// Duration is how long the phase lasted.
func (p Phase) Duration() time.Duration { return p.End - p.Start }

// Timeline records phases one after the other. The zero value is ready.
type Timeline struct {
	phases []Phase
	open   bool
}

// Begin opens a phase at the given offset.
func (t *Timeline) Begin(name string, at time.Duration) error {
	if t.open {
		return fmt.Errorf("begin %q while %q is open: %w", name, t.phases[len(t.phases)-1].Name, ErrOpenPhase)
	}
	t.phases = append(t.phases, Phase{Name: name, Start: at, End: at})
	t.open = true
	return nil
}

// End closes the open phase at the given offset with an outcome.
func (t *Timeline) End(at time.Duration, outcome string) error {
	if !t.open {
		return fmt.Errorf("end with no open phase: %w", ErrOpenPhase)
	}
	p := &t.phases[len(t.phases)-1]
	if at < p.Start {
		at = p.Start
	}
	p.End, p.Outcome = at, outcome
	t.open = false
	return nil
}

// Current returns the open phase's name, or "" when none is open.
func (t *Timeline) Current() string {
	if !t.open {
		return ""
	}
	return t.phases[len(t.phases)-1].Name
}

// Phases returns the phases recorded so far; an open phase ends at `now`
// with the outcome "unfinished".
func (t *Timeline) Phases(now time.Duration) []Phase {
	out := append([]Phase(nil), t.phases...)
	if t.open {
		p := &out[len(out)-1]
		if now > p.Start {
			p.End = now
		}
		p.Outcome = "unfinished"
	}
	return out
}

// Row is the traffic of one interval.
type Row struct {
	Label      string
	Start, End time.Duration
	Requests   int
	Failures   int
	// Served counts successful responses per version.
	Served map[string]int
	// Outcome is the phase's outcome (phase rows only).
	Outcome string
}

// Share is the percentage of the interval's successful responses served by
// version v (0 when nothing succeeded).
func (r Row) Share(v string) float64 {
	ok := r.Requests - r.Failures
	if ok <= 0 {
		return 0
	}
	return 100 * float64(r.Served[v]) / float64(ok)
}

// Report is the whole summary.
type Report struct {
	Requests, Failures int
	// Versions seen, sorted.
	Versions []string
	// Bucket is the width of each timeline row.
	Bucket   time.Duration
	Timeline []Row
	Phases   []Row
	// FirstErrors holds up to five distinct failure messages.
	FirstErrors []string
	// Answered counts the responses naming each version, failed ones
	// included; FailedBy counts the failed ones.
	Answered, FailedBy map[string]int
}

// Compute builds the report. Samples need not be sorted; the timeline runs
// from the first sample's bucket to the last's; bucket <= 0 picks a width
// giving at most maxRows rows over the samples' span (see BucketFor).
func Compute(samples []Sample, phases []Phase, bucket time.Duration, maxRows int) Report {
	r := Report{Answered: map[string]int{}, FailedBy: map[string]int{}}
	var last time.Duration
	versions := map[string]bool{}
	seenErr := map[string]bool{}
	for _, s := range samples {
		r.Requests++
		if s.At > last {
			last = s.At
		}
		if s.Version != "" {
			r.Answered[s.Version]++
		}
		if !s.OK() {
			r.Failures++
			if s.Version != "" {
				r.FailedBy[s.Version]++
			}
			if !seenErr[s.Err] && len(r.FirstErrors) < 5 {
				seenErr[s.Err] = true
				r.FirstErrors = append(r.FirstErrors, s.Err)
			}
			continue
		}
		versions[s.Version] = true
	}
	for v := range versions {
		r.Versions = append(r.Versions, v)
	}
	sort.Strings(r.Versions)
	if bucket <= 0 {
		first := last
		for _, s := range samples {
			first = min(first, s.At)
		}
		bucket = BucketFor(last-first, maxRows)
	}
	r.Bucket = bucket
	if len(samples) > 0 {
		// Rows run from the first sample's bucket to the last's.
		first := last
		for _, s := range samples {
			first = min(first, max(s.At, 0))
		}
		lo := int(first / bucket)
		n := int(last/bucket) + 1 - lo
		r.Timeline = make([]Row, n)
		for i := range r.Timeline {
			start := time.Duration(lo+i) * bucket
			r.Timeline[i] = Row{Label: fmtOffset(start), Start: start, End: start + bucket, Served: map[string]int{}}
		}
		for _, s := range samples {
			add(&r.Timeline[int(max(s.At, 0)/bucket)-lo], s)
		}
	}
	for _, p := range phases {
		row := Row{Label: p.Name, Start: p.Start, End: p.End, Served: map[string]int{}, Outcome: p.Outcome}
		for _, s := range samples {
			if s.At >= p.Start && s.At < p.End {
				add(&row, s)
			}
		}
		r.Phases = append(r.Phases, row)
	}
	return r
}

func add(row *Row, s Sample) {
	row.Requests++
	if !s.OK() {
		row.Failures++
		return
	}
	row.Served[s.Version]++
}

// BucketFor returns the smallest "round" width (1s, 2s, 5s, 10s, 15s, 30s,
// 1m, ...) that covers span in at most maxRows rows.
func BucketFor(span time.Duration, maxRows int) time.Duration {
	if maxRows <= 0 {
		maxRows = 1
	}
	for _, b := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute} {
		if int(span/b)+1 <= maxRows {
			return b
		}
	}
	return span/time.Duration(maxRows) + time.Second
}

// Write renders the report as plain text tables.
func (r Report) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "requests sent: %d   failed: %d", r.Requests, r.Failures)
	if r.Requests > 0 {
		fmt.Fprintf(&b, " (%.3f%%)", 100*float64(r.Failures)/float64(r.Requests))
	}
	b.WriteString("\n")
	for _, e := range r.FirstErrors {
		fmt.Fprintf(&b, "  failure: %s\n", e)
	}
	var bad []string
	for v := range r.FailedBy {
		bad = append(bad, v)
	}
	sort.Strings(bad)
	for _, v := range bad {
		fmt.Fprintf(&b, "  %s answered %d requests, %d of them failed\n", v, r.Answered[v], r.FailedBy[v])
	}
	if len(r.Phases) > 0 {
		b.WriteString("\nper phase:\n")
		r.table(&b, "phase", r.Phases, true)
	}
	if len(r.Timeline) > 0 {
		fmt.Fprintf(&b, "\nshare served per version, every %s:\n", r.Bucket)
		r.table(&b, "t", r.Timeline, false)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r Report) table(b *strings.Builder, first string, rows []Row, phases bool) {
	width := len(first)
	for _, row := range rows {
		width = max(width, len(row.Label))
	}
	fmt.Fprintf(b, "  %-*s", width, first)
	if phases {
		fmt.Fprintf(b, " %9s %-11s", "duration", "outcome")
	}
	fmt.Fprintf(b, " %8s %6s", "requests", "failed")
	for _, v := range r.Versions {
		fmt.Fprintf(b, " %6s", v)
	}
	b.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(b, "  %-*s", width, row.Label)
		if phases {
			fmt.Fprintf(b, " %9s %-11s", (row.End - row.Start).Round(100*time.Millisecond), row.Outcome)
		}
		fmt.Fprintf(b, " %8d %6d", row.Requests, row.Failures)
		for _, v := range r.Versions {
			if row.Served[v] == 0 {
				fmt.Fprintf(b, " %6s", "-")
				continue
			}
			fmt.Fprintf(b, " %5.1f%%", row.Share(v))
		}
		b.WriteString("\n")
	}
}

func fmtOffset(d time.Duration) string {
	return fmt.Sprintf("+%s", d)
}
