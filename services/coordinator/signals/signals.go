// Package signals keeps, on the leader, the golden signals the edges report
// per service and release, in one-second slots merged across edges, and
// answers a window's sample for canary analysis. It is in memory only:
// signals are telemetry, not state; a new leader judges from the reports it
// receives, and only windows it received whole (see the engine).
package signals

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/platform/latency"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// ErrInvalidReport is returned (wrapped, naming the field) for a report
// that cannot be merged; nothing of it is merged.
var ErrInvalidReport = errors.New("signals: invalid report")

// FieldError names the field of a report that is wrong; it wraps
// ErrInvalidReport.
type FieldError struct {
	Field, Description string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Description }

// Unwrap returns ErrInvalidReport.
func (e *FieldError) Unwrap() error { return ErrInvalidReport }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Description: fmt.Sprintf(format, args...)}
}

// Retention is how long slots are kept by default.
const Retention = 15 * time.Minute

type key struct {
	service string
	release uint64
}

// Store merges reports. It is safe for concurrent use.
type Store struct {
	mu        sync.Mutex
	retention time.Duration
	slots     map[key]map[int64]*analysis.Sample // unix second -> sample
	edges     map[string]time.Time               // edge id -> last report
}

// New returns an empty store keeping slots for retention (0: Retention).
func New(retention time.Duration) *Store {
	if retention <= 0 {
		retention = Retention
	}
	return &Store{retention: retention, slots: map[key]map[int64]*analysis.Sample{}, edges: map[string]time.Time{}}
}

// Add merges one edge's report, received at now, into the slot of now. A
// report is validated whole first.
func (s *Store) Add(now time.Time, req *edgev1.ReportSignalsRequest) error {
	hists, err := decode(req)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := now.Unix()
	for i, sig := range req.GetSignals() {
		k := key{sig.GetService(), sig.GetRelease()}
		m := s.slots[k]
		if m == nil {
			m = map[int64]*analysis.Sample{}
			s.slots[k] = m
		}
		sl := m[sec]
		if sl == nil {
			sl = &analysis.Sample{}
			m[sec] = sl
		}
		sl.Requests += sig.GetRequests()
		sl.Errors += sig.GetErrors()
		sl.Latency.Merge(hists[i])
	}
	s.edges[req.GetEdgeId()] = now
	s.prune(now)
	return nil
}

func (s *Store) prune(now time.Time) {
	oldest := now.Add(-s.retention).Unix()
	for k, m := range s.slots {
		for sec := range m {
			if sec < oldest {
				delete(m, sec)
			}
		}
		if len(m) == 0 {
			delete(s.slots, k)
		}
	}
	for id, at := range s.edges {
		if at.Unix() < oldest {
			delete(s.edges, id)
		}
	}
}

// Window returns the merged sample of service's release over [from, to),
// to the second: reports received in that time.
func (s *Store) Window(service string, release uint64, from, to time.Time) analysis.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out analysis.Sample
	lo, hi := from.Unix(), to.Unix()
	for sec, sl := range s.slots[key{service, release}] {
		if sec >= lo && sec < hi {
			out.Requests += sl.Requests
			out.Errors += sl.Errors
			out.Latency.Merge(sl.Latency)
		}
	}
	return out
}

// Edges returns how many edges reported within the last d before now.
func (s *Store) Edges(now time.Time, d time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.edges {
		if now.Sub(at) <= d {
			n++
		}
	}
	return n
}

// Validate checks a report as Add would, without keeping it, so a
// coordinator can refuse a bad report before forwarding it to the leader.
func Validate(req *edgev1.ReportSignalsRequest) error {
	_, err := decode(req)
	return err
}

// decode validates a report and decodes its latency histograms.
func decode(req *edgev1.ReportSignalsRequest) ([]latency.Histogram, error) {
	if req.GetEdgeId() == "" {
		return nil, invalid("edge_id", "must not be empty")
	}
	hists := make([]latency.Histogram, len(req.GetSignals()))
	for i, sig := range req.GetSignals() {
		field := fmt.Sprintf("signals[%d]", i)
		switch {
		case sig.GetService() == "":
			return nil, invalid(field+".service", "must not be empty")
		case sig.GetRelease() == 0:
			return nil, invalid(field+".release", "must not be zero")
		case sig.GetErrors() > sig.GetRequests():
			return nil, invalid(field+".errors", "%d exceeds requests %d", sig.GetErrors(), sig.GetRequests())
		}
		h, err := latency.Decode(sig.GetLatency().GetSchema(), sig.GetLatency().GetOffset(), sig.GetLatency().GetCounts())
		if err != nil {
			return nil, invalid(field+".latency", "%v", err)
		}
		hists[i] = h
	}
	return hists, nil
}
