package dashboard

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartW       = 900.0
	chartLeft    = 44.0
	chartRight   = 12.0
	shareTop     = 10.0
	shareH       = 130.0
	trafficTop   = 164.0
	trafficH     = 80.0
	healthTop    = 268.0
	healthH      = 50.0
	chartH       = 344.0
	chartWindow  = 10 * time.Minute
	chartMinSpan = 90 * time.Second
)

// Chart is the traffic chart of one service: the share of traffic per
// release over time (stacked, from the weights the rollouts committed), the
// requests per second the edges measured per release with their errors in
// red, the healthy instances per release, and a red mark at every failure
// (a failed health check, placement or rollout, an abort or a revert).
type Chart struct {
	W, H  float64
	Bands []Band
	// Bars are the measured requests (and, Err set, their errors) per
	// release and time slot; empty when this coordinator has no signals.
	Bars     []Band
	MaxRate  string
	Measured bool
	Lines    []Line
	Marks    []Mark
	Ticks    []Tick
	Grid     []Grid
	Legend   []Release
	Empty    bool
	MaxUp    int
	Updated  string
}

// Band is one rect of the stacked share: a release's weight over a span.
type Band struct {
	X, Y, W, H float64
	Colour     string
	Title      string
}

// Line is a release's healthy instances over time (an SVG polyline).
type Line struct {
	Points string
	Colour string
}

// Mark is a failure at a point in time.
type Mark struct {
	X     float64
	Title string
}

// Tick is a time label on the x axis.
type Tick struct {
	X     float64
	Label string
}

// Grid is a horizontal guide with its label.
type Grid struct {
	Y     float64
	Label string
}

// point is the state after one committed change.
type point struct {
	at      time.Time
	weights map[string]int32
	healthy map[string]int32 // nil: not known at this point
	fail    string           // non-empty: a failure, described
}

// failureKinds are the event kinds drawn as failures.
var failureKinds = map[string]bool{"failed": true, "placement_failed": true, "unplaced": true}

// chartPoints collects the timeline of a service from its rollouts (newest
// first) and their events (by rollout id; a rollout without events
// contributes its step history).
func chartPoints(rollouts []*deployv1.Rollout, events map[string][]*deployv1.RolloutEvent) []point {
	var pts []point
	for _, ro := range rollouts {
		evs := events[ro.GetId()]
		if len(evs) == 0 {
			for _, h := range ro.GetHistory() {
				p := point{at: h.GetAt().AsTime(), weights: h.GetWeights()}
				if bad(h.GetState()) {
					p.fail = ro.GetId() + " " + stateName(h.GetState()) + ": " + h.GetDescription()
				}
				pts = append(pts, p)
			}
			continue
		}
		for _, e := range evs {
			p := point{at: e.GetAt().AsTime(), weights: e.GetWeights(), healthy: e.GetHealthy()}
			switch {
			case failureKinds[e.GetKind()]:
				p.fail = ro.GetId() + " " + e.GetKind() + ": " + e.GetMessage()
			case e.GetKind() == "command" && strings.Contains(e.GetMessage(), "abort"):
				p.fail = ro.GetId() + ": " + e.GetMessage()
			case bad(e.GetState()) && e.GetKind() != "command":
				p.fail = ro.GetId() + " " + stateName(e.GetState()) + ": " + e.GetMessage()
			}
			pts = append(pts, p)
		}
	}
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].at.Before(pts[j].at) })
	return pts
}

func bad(s deployv1.RolloutState) bool {
	switch s {
	case deployv1.RolloutState_ROLLOUT_STATE_FAILED, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, deployv1.RolloutState_ROLLOUT_STATE_ABORTED:
		return true
	}
	return false
}

// Rates returns the requests and errors the edges measured for a release
// in n consecutive slots of length slot from from.
type Rates func(release uint64, from time.Time, slot time.Duration, n int) (requests, errors []uint64)

// buildChart lays out the chart of pts (oldest first) up to now, with the
// measured rates when rates is not nil.
func buildChart(pts []point, ix releaseIndex, now time.Time, rates Rates) Chart {
	c := Chart{W: chartW, H: chartH, Updated: clock(now)}
	if len(pts) == 0 {
		c.Empty = true
		return c
	}
	start := now.Add(-chartWindow)
	if first := pts[0].at.Add(-10 * time.Second); first.After(start) {
		start = first
	}
	if now.Sub(start) < chartMinSpan {
		start = now.Add(-chartMinSpan)
	}
	span := now.Sub(start).Seconds()
	plotW := chartW - chartLeft - chartRight
	x := func(t time.Time) float64 {
		if t.Before(start) {
			t = start
		}
		return chartLeft + plotW*t.Sub(start).Seconds()/span
	}

	// Carry the state in force at start, then one segment per change.
	type seg struct {
		from, to time.Time
		p        point
	}
	var segs []seg
	cur := -1
	for i, p := range pts {
		if !p.at.After(start) {
			cur = i
		}
	}
	from := start
	var carry *point
	if cur >= 0 {
		carry = &pts[cur]
	}
	lastHealthy := map[string]int32{}
	for i := cur + 1; i <= len(pts); i++ {
		to := now
		if i < len(pts) {
			to = pts[i].at
		}
		if carry != nil && to.After(from) {
			// A change that moved neither weights nor health extends the
			// segment before it.
			if n := len(segs); n > 0 && sameMap(segs[n-1].p.weights, carry.weights) &&
				(carry.healthy == nil || sameMap(segs[n-1].p.healthy, carry.healthy)) {
				segs[n-1].to = to
			} else {
				segs = append(segs, seg{from: from, to: to, p: *carry})
			}
		}
		if i < len(pts) {
			carry = &pts[i]
			from = pts[i].at
			if pts[i].fail != "" {
				c.Marks = append(c.Marks, Mark{X: x(pts[i].at), Title: clock(pts[i].at) + " " + pts[i].fail})
			}
		}
	}

	seen := map[uint64]bool{}
	maxUp := int32(1)
	for _, s := range segs {
		if s.p.healthy != nil {
			for _, v := range s.p.healthy {
				maxUp = max(maxUp, v)
			}
		}
	}
	c.MaxUp = int(maxUp)
	lines := map[uint64][]string{}
	for _, s := range segs {
		x0, x1 := x(s.from), x(s.to)
		y := shareTop
		for _, sh := range shares(s.p.weights, ix) {
			h := shareH * float64(sh.Weight) / 100
			c.Bands = append(c.Bands, Band{X: x0, Y: y, W: max(x1-x0, 0.5), H: h, Colour: sh.Release.Colour(),
				Title: fmt.Sprintf("%s %s: %d%% from %s", sh.Release.Label(), sh.Release.Tag, sh.Weight, clock(s.from))})
			y += h
			if !seen[sh.Release.Number] {
				seen[sh.Release.Number] = true
				c.Legend = append(c.Legend, sh.Release)
			}
		}
		healthy := s.p.healthy
		if healthy == nil {
			healthy = lastHealthy
		}
		lastHealthy = healthy
		for k, v := range healthy {
			n, err := strconv.ParseUint(k, 10, 64)
			if err != nil {
				continue
			}
			hy := healthTop + healthH - healthH*float64(v)/float64(maxUp)
			lines[n] = append(lines[n], fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x0, hy, x1, hy))
			if !seen[n] {
				seen[n] = true
				c.Legend = append(c.Legend, ix.get(n))
			}
		}
	}
	nums := make([]uint64, 0, len(lines))
	for n := range lines {
		nums = append(nums, n)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	for _, n := range nums {
		c.Lines = append(c.Lines, Line{Points: strings.Join(lines[n], " "), Colour: ix.get(n).Colour()})
	}
	sort.Slice(c.Legend, func(i, j int) bool { return c.Legend[i].Number < c.Legend[j].Number })
	if rates != nil {
		c.Bars, c.MaxRate, c.Measured = rateBars(rates, c.Legend, start, now, x)
	}

	for _, pct := range []int{0, 100} {
		c.Grid = append(c.Grid, Grid{Y: shareTop + shareH - shareH*float64(pct)/100, Label: strconv.Itoa(pct) + "%"})
	}
	step := tickStep(now.Sub(start))
	for t := start.Truncate(step).Add(step); t.Before(now); t = t.Add(step) {
		if tx := x(t); tx < chartW-chartRight-24 { // a label at the right edge would be cut
			c.Ticks = append(c.Ticks, Tick{X: tx, Label: t.Local().Format("15:04:05")})
		}
	}
	return c
}

func tickStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute} {
		if span/s <= 7 {
			return s
		}
	}
	return 10 * time.Minute
}

func sameMap(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// rateBars lays out the measured requests per second per release in about
// 60 slots, stacked in release order, the errored part of each release's
// bar in red.
func rateBars(rates Rates, rels []Release, start, now time.Time, x func(time.Time) float64) ([]Band, string, bool) {
	slot := max(now.Sub(start)/60, 2*time.Second).Round(time.Second)
	type cell struct {
		rel      Release
		req, err uint64
	}
	// Whole slots only, the last one ending at now's second.
	n := int(now.Sub(start) / slot)
	first := now.Truncate(time.Second).Add(-slot * time.Duration(n))
	cols := make([][]cell, n)
	slots := make([]time.Time, n)
	totals := make([]uint64, n)
	for i := range slots {
		slots[i] = first.Add(slot * time.Duration(i))
	}
	for _, r := range rels {
		req, errs := rates(r.Number, first, slot, n)
		for i := 0; i < n && i < len(req) && i < len(errs); i++ {
			if req[i] > 0 {
				cols[i] = append(cols[i], cell{r, req[i], errs[i]})
				totals[i] += req[i]
			}
		}
	}
	var top float64
	for _, t := range totals {
		top = max(top, float64(t)/slot.Seconds())
	}
	if top == 0 {
		return nil, "", false
	}
	var bars []Band
	for i, col := range cols {
		x0, x1 := x(slots[i]), x(slots[i].Add(slot))
		y := trafficTop + trafficH
		for _, c := range col {
			rate := float64(c.req) / slot.Seconds()
			h := trafficH * rate / top
			y -= h
			title := fmt.Sprintf("%s %s %s: %.1f req/s, %.1f errors/s", c.rel.Label(), c.rel.Tag, clock(slots[i]), rate, float64(c.err)/slot.Seconds())
			bars = append(bars, Band{X: x0, Y: y, W: max(x1-x0-1, 0.5), H: h, Colour: c.rel.Colour(), Title: title})
			if c.err > 0 {
				eh := max(h*float64(c.err)/float64(c.req), 1.5)
				bars = append(bars, Band{X: x0, Y: y, W: max(x1-x0-1, 0.5), H: eh, Colour: "err", Title: title})
			}
		}
	}
	return bars, strconv.FormatFloat(top, 'f', 0, 64) + "/s", true
}
