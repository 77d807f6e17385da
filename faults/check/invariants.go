package check

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Release is a release as one coordinator holds it.
type Release struct {
	Service   string
	Number    uint64
	RequestID string
}

// AckedPresent checks that every acknowledged Deploy or Rollback (Outcome
// OK) is held by every coordinator with the release number it was
// answered, and that no coordinator holds two releases of a service under
// one number or one request id under two numbers. held maps a coordinator
// to the releases it holds.
func AckedPresent(calls []Call, held map[string][]Release) []string {
	var out []string
	coords := make([]string, 0, len(held))
	for c := range held {
		coords = append(coords, c)
	}
	sort.Strings(coords)
	byCoord := map[string]map[string]Release{} // coordinator -> service/rid -> release
	for _, c := range coords {
		idx := map[string]Release{}
		numbers := map[string]string{} // service/number -> rid
		for _, r := range held[c] {
			key := fmt.Sprintf("%s/%d", r.Service, r.Number)
			if prev, dup := numbers[key]; dup {
				out = append(out, fmt.Sprintf("%s holds release %s twice (request ids %q and %q)", c, key, prev, r.RequestID))
			}
			numbers[key] = r.RequestID
			if r.RequestID != "" {
				idx[r.Service+"/"+r.RequestID] = r
			}
		}
		byCoord[c] = idx
	}
	acked := map[string]uint64{} // service/number -> seen
	for _, call := range calls {
		if call.Outcome != OK || (call.Kind != Deploy && call.Kind != Rollback) {
			continue
		}
		key := fmt.Sprintf("%s/%d", call.Service, call.Release)
		if prev, ok := acked[key]; ok && prev != 0 {
			// Two acknowledged calls answered the same number: fine only
			// for a replay of one request id, which the index shows.
			_ = prev
		}
		acked[key] = call.Release
		for _, c := range coords {
			r, ok := byCoord[c][call.Service+"/"+call.RequestID]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("acknowledged %s (answered release %d at %s) is missing on %s",
					call.Kind, call.Release, call.End.Format("15:04:05.000"), c))
			case r.Number != call.Release:
				out = append(out, fmt.Sprintf("acknowledged %s rid %s was answered release %d but %s holds it as release %d",
					call.Kind, call.RequestID, call.Release, c, r.Number))
			}
		}
	}
	// Distinct acknowledged request ids must have distinct numbers.
	ridByNumber := map[string]string{}
	for _, call := range calls {
		if call.Outcome != OK || (call.Kind != Deploy && call.Kind != Rollback) {
			continue
		}
		key := fmt.Sprintf("%s/%d", call.Service, call.Release)
		if prev, ok := ridByNumber[key]; ok && prev != call.RequestID {
			out = append(out, fmt.Sprintf("release number %s answered to two requests, %q and %q", key, prev, call.RequestID))
		}
		ridByNumber[key] = call.RequestID
	}
	return out
}

// AgentEvent is one line of a node agent's log about an allocation.
type AgentEvent struct {
	At    time.Time
	Node  string
	Alloc string
	// Msg is the log message ("instance started", "adopted instance",
	// "stopped: ...", "failed", ...).
	Msg string
	// State is the allocation state the line reports (RUNNING, FAILED, ...).
	State string
}

// startsOver reports whether a line says the allocation's instance is gone,
// so that a later start is a restart, not a second instance.
func startsOver(e AgentEvent) bool {
	switch strings.ToUpper(e.State) {
	case "FAILED", "STOPPED":
		return true
	}
	return strings.HasPrefix(e.Msg, "stopped") || strings.Contains(e.Msg, "exited")
}

// StartedOnce checks that no allocation id was started on two nodes, nor
// started again on its node while its previous instance still ran.
// events are every agent's allocation lines, in any order.
func StartedOnce(events []AgentEvent) []string {
	sorted := append([]AgentEvent(nil), events...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.Before(sorted[j].At) })
	nodeOf := map[string]string{}
	running := map[string]time.Time{}
	var out []string
	for _, e := range sorted {
		if e.Alloc == "" {
			continue
		}
		switch {
		case e.Msg == "instance started":
			if n, ok := nodeOf[e.Alloc]; ok && n != e.Node {
				out = append(out, fmt.Sprintf("allocation %s started on %s at %s, and before on %s",
					e.Alloc, e.Node, e.At.Format("15:04:05.000"), n))
			} else if at, ok := running[e.Alloc]; ok {
				out = append(out, fmt.Sprintf("allocation %s started again on %s at %s while its instance started at %s still ran",
					e.Alloc, e.Node, e.At.Format("15:04:05.000"), at.Format("15:04:05.000")))
			}
			nodeOf[e.Alloc] = e.Node
			running[e.Alloc] = e.At
		case startsOver(e):
			delete(running, e.Alloc)
		}
	}
	return out
}

// Serving is one sample of the instances of a service that the edges
// route to.
type Serving struct {
	At      time.Time
	Service string
	// Passing counts the routed instances; Bound is count + max_parallel
	// of the release being rolled out (or the stable one).
	Passing, Bound int
	// Instances names them, for the report.
	Instances []string
}

// ServingBound checks that no sample saw more serving instances than the
// bound. Samples inside a window in excused (a data-plane fault and the
// recovery after it) are left out: pass nil to check every sample.
func ServingBound(samples []Serving, excused []Window) []string {
	var out []string
	for _, s := range samples {
		in := false
		for _, w := range excused {
			if w.Excuses && !s.At.Before(w.From) && !s.At.After(w.To) {
				in = true
			}
		}
		if s.Passing > s.Bound && !in {
			out = append(out, fmt.Sprintf("%s: %s had %d instances serving (routed by the edges), more than its bound %d: %s",
				s.At.Format("15:04:05.000"), s.Service, s.Passing, s.Bound, strings.Join(s.Instances, " ")))
		}
	}
	return out
}

// Registration is an instance registered in Consul.
type Registration struct {
	Service, ID, Node string
}

// Orphans checks, at the end of a run, that every instance registered in
// Consul and every instance running on a node belongs to an allocation
// that node's agent holds live. live maps a node to its live allocation
// ids; running maps a node to the allocation ids of the instances found
// running on it (containers by label, or processes).
func Orphans(regs []Registration, live, running map[string][]string) []string {
	set := map[string]map[string]bool{}
	for n, ids := range live {
		set[n] = map[string]bool{}
		for _, id := range ids {
			set[n][id] = true
		}
	}
	var out []string
	for _, r := range regs {
		if !set[r.Node][r.ID] {
			out = append(out, fmt.Sprintf("%s instance %s is registered in Consul for node %s, which holds no such allocation", r.Service, r.ID, r.Node))
		}
	}
	nodes := make([]string, 0, len(running))
	for n := range running {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		for _, id := range running[n] {
			if !set[n][id] {
				out = append(out, fmt.Sprintf("an instance of allocation %s runs on node %s, whose agent holds no such allocation", id, n))
			}
		}
	}
	return out
}

// Window is a span of time during which a fault was active, extended by
// the time the system is allowed to recover.
type Window struct {
	From, To time.Time
	Fault    string
	// Excuses is whether requests failing inside it are excused: the
	// fault hits the data plane (an instance's host, Consul, the edge).
	Excuses bool
}

// EdgeRequest is a failed request sent through an edge.
type EdgeRequest struct {
	// At is when the request was sent; Done when it failed (zero: At).
	At, Done time.Time
	Edge     string
	Service  string
	Err      string
}

// EdgeFailures checks that every failed request was in flight during a
// window that excuses it (a request sent just before a fault began is hit
// by it too), reporting each other failure with its time and the fault
// active then ("none" when none was).
func EdgeFailures(failed []EdgeRequest, windows []Window) []string {
	var out []string
	for _, f := range failed {
		active := []string{}
		excused := false
		done := f.Done
		if done.IsZero() {
			done = f.At
		}
		for _, w := range windows {
			if !done.Before(w.From) && !f.At.After(w.To) {
				active = append(active, w.Fault)
				excused = excused || w.Excuses
			}
		}
		if excused {
			continue
		}
		fault := "none"
		if len(active) > 0 {
			fault = strings.Join(active, ", ") + " (not on the data plane)"
		}
		out = append(out, fmt.Sprintf("%s: request to %s through %s failed (%s); fault active: %s",
			f.At.Format("15:04:05.000"), f.Service, f.Edge, f.Err, fault))
	}
	return out
}

// Token is a fencing token a node agent accepted, in the order it logged
// them.
type Token struct {
	At          time.Time
	Node        string
	Term, Index uint64
}

// TokensMonotonic checks that each agent accepted fencing tokens in
// non-decreasing (term, index) order: a deposed leader's command, older
// than one already accepted, was refused.
func TokensMonotonic(accepted []Token) []string {
	last := map[string]Token{}
	var out []string
	for _, t := range accepted {
		p, ok := last[t.Node]
		if ok && (t.Term < p.Term || t.Term == p.Term && t.Index < p.Index) {
			out = append(out, fmt.Sprintf("%s: node %s accepted fencing token %d/%d after %d/%d (at %s)",
				t.At.Format("15:04:05.000"), t.Node, t.Term, t.Index, p.Term, p.Index, p.At.Format("15:04:05.000")))
			continue
		}
		last[t.Node] = t
	}
	return out
}
