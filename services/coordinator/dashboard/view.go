package dashboard

import (
	"fmt"
	"html/template"
	"sort"
	"strconv"
	"strings"
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// The view models below are built from API answers by pure functions: no
// I/O, the clock passed in.

// Release names one release the one way the dashboard (and slipctl) names
// it: "#7" with the image tag beside it, in the release's colour.
type Release struct {
	// Number is the release number, zero for none.
	Number uint64
	// Tag is the image tag ("v2"), or a short digest, or the image.
	Tag string
	// Image is the full image reference.
	Image string
}

// Label is "#7".
func (r Release) Label() string {
	if r.Number == 0 {
		return "none"
	}
	return "#" + strconv.FormatUint(r.Number, 10)
}

// Colour is the CSS class of the release's colour: the demo's blue, green,
// red and yellow, in release order, repeating.
func (r Release) Colour() string {
	if r.Number == 0 {
		return "c-none"
	}
	return "c" + strconv.FormatUint((r.Number-1)%4, 10)
}

// imageTag is the tag of an image reference ("slipway/demo:v2" -> "v2"), a
// short digest for a digest reference, else the last path element.
func imageTag(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		d := image[i+1:]
		if j := strings.IndexByte(d, ':'); j >= 0 {
			d = d[j+1:]
		}
		if len(d) > 12 {
			d = d[:12]
		}
		return "@" + d
	}
	last := image[strings.LastIndexByte(image, '/')+1:]
	if j := strings.LastIndexByte(last, ':'); j >= 0 {
		return last[j+1:]
	}
	if last == "" {
		return image
	}
	return last + ":latest"
}

// releaseIndex maps release numbers to their names.
type releaseIndex map[uint64]Release

func indexReleases(rels []*deployv1.Release) releaseIndex {
	ix := releaseIndex{}
	for _, r := range rels {
		img := r.GetSpec().GetImage()
		ix[r.GetNumber()] = Release{Number: r.GetNumber(), Tag: imageTag(img), Image: img}
	}
	return ix
}

func (ix releaseIndex) get(n uint64) Release {
	if r, ok := ix[n]; ok {
		return r
	}
	return Release{Number: n}
}

// Share is one release's traffic weight.
type Share struct {
	Release Release
	Weight  int32
}

// shares orders a weight map (release number as a decimal string) by
// release number.
func shares(w map[string]int32, ix releaseIndex) []Share {
	var out []Share
	for k, v := range w {
		n, err := strconv.ParseUint(k, 10, 64)
		if err != nil || v <= 0 {
			continue
		}
		out = append(out, Share{Release: ix.get(n), Weight: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Release.Number < out[j].Release.Number })
	return out
}

// ServiceRow is a service in the overview.
type ServiceRow struct {
	Name     string
	Current  Release // the stable release
	Latest   Release
	Host     string
	Strategy string
	Rollout  *RolloutView // the active rollout, nil when none
	Updated  string
}

// RolloutView is a rollout as shown: where it is, its steps, weights,
// and the buttons that apply.
type RolloutView struct {
	ID              string
	Service         string
	From, To        Release
	Strategy        string
	State           string // "running", "paused", ...
	StateClass      string // CSS class of the state badge
	Active          bool
	Step            int // current step, from 1
	Steps           int // steps in total, zero when not a canary
	Weights         []Share
	Message         string
	AwaitingPromote bool
	// PauseLeft is the time left in the current step's timed pause, e.g.
	// "4m05s", empty when none runs.
	PauseLeft string
	Plan      []PlanStep
	History   []HistoryStep
	Created   string
	By        string
	// Buttons that apply in this state.
	CanPromote, CanPause, CanResume, CanAbort bool
}

// PlanStep is one canary step of the rollout's plan.
type PlanStep struct {
	N      int
	Weight int32
	Pause  string
	State  string // "done", "current", "next"
}

// HistoryStep is one step the rollout took.
type HistoryStep struct {
	At          string
	Description string
	State       string
}

var stateNames = map[deployv1.RolloutState]string{
	deployv1.RolloutState_ROLLOUT_STATE_PENDING:    "pending",
	deployv1.RolloutState_ROLLOUT_STATE_RUNNING:    "running",
	deployv1.RolloutState_ROLLOUT_STATE_PAUSED:     "paused",
	deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED:  "succeeded",
	deployv1.RolloutState_ROLLOUT_STATE_FAILED:     "failed",
	deployv1.RolloutState_ROLLOUT_STATE_REVERTED:   "reverted",
	deployv1.RolloutState_ROLLOUT_STATE_ABORTED:    "aborted",
	deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED: "superseded",
}

func stateName(s deployv1.RolloutState) string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return "unknown"
}

func stateClass(s deployv1.RolloutState) string {
	switch s {
	case deployv1.RolloutState_ROLLOUT_STATE_RUNNING, deployv1.RolloutState_ROLLOUT_STATE_PENDING:
		return "st-run"
	case deployv1.RolloutState_ROLLOUT_STATE_PAUSED:
		return "st-pause"
	case deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED:
		return "st-ok"
	case deployv1.RolloutState_ROLLOUT_STATE_FAILED, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, deployv1.RolloutState_ROLLOUT_STATE_ABORTED:
		return "st-bad"
	default:
		return "st-dim"
	}
}

func active(s deployv1.RolloutState) bool {
	switch s {
	case deployv1.RolloutState_ROLLOUT_STATE_PENDING, deployv1.RolloutState_ROLLOUT_STATE_RUNNING, deployv1.RolloutState_ROLLOUT_STATE_PAUSED:
		return true
	}
	return false
}

var strategyNames = map[deployv1.Strategy]string{
	deployv1.Strategy_STRATEGY_ROLLING:    "rolling",
	deployv1.Strategy_STRATEGY_BLUE_GREEN: "blue/green",
	deployv1.Strategy_STRATEGY_CANARY:     "canary",
}

func strategyName(s deployv1.Strategy) string {
	if n, ok := strategyNames[s]; ok {
		return n
	}
	return "rolling"
}

// rolloutView builds the view of ro; spec is the spec of its target
// release (for the canary plan), nil when unknown.
func rolloutView(ro *deployv1.Rollout, spec *deployv1.ServiceSpec, ix releaseIndex, now time.Time) *RolloutView {
	if ro == nil {
		return nil
	}
	st := ro.GetState()
	v := &RolloutView{
		ID: ro.GetId(), Service: ro.GetService(), From: ix.get(ro.GetFromRelease()), To: ix.get(ro.GetToRelease()),
		Strategy: strategyName(ro.GetStrategy()), State: stateName(st), StateClass: stateClass(st), Active: active(st),
		Step: int(ro.GetStep()) + 1, Weights: shares(ro.GetWeights(), ix), Message: ro.GetMessage(),
		AwaitingPromote: ro.GetAwaitingPromote(), Created: ago(ro.GetCreatedAt().AsTime(), now), By: ro.GetCreatedBy(),
	}
	if v.AwaitingPromote {
		v.State, v.StateClass = "waiting for promote", "st-pause"
	}
	if v.Active {
		paused := st == deployv1.RolloutState_ROLLOUT_STATE_PAUSED
		v.CanPromote = v.AwaitingPromote || ro.GetStrategy() == deployv1.Strategy_STRATEGY_CANARY || ro.GetStrategy() == deployv1.Strategy_STRATEGY_BLUE_GREEN
		v.CanPause = !paused
		v.CanResume = paused && !v.AwaitingPromote
		v.CanAbort = true
	}
	if steps := spec.GetUpdate().GetCanary().GetSteps(); ro.GetStrategy() == deployv1.Strategy_STRATEGY_CANARY && len(steps) > 0 {
		v.Steps = len(steps)
		for i, s := range steps {
			p := PlanStep{N: i + 1, Weight: s.GetWeight(), State: "next"}
			switch {
			case s.GetManual():
				p.Pause = "until promoted"
			case s.GetPause().AsDuration() > 0:
				p.Pause = s.GetPause().AsDuration().String()
			}
			switch {
			case st == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED || i < int(ro.GetStep()):
				p.State = "done"
			case i == int(ro.GetStep()) && v.Active:
				p.State = "current"
			}
			v.Plan = append(v.Plan, p)
		}
		if v.Step > v.Steps {
			v.Step = v.Steps
		}
	}
	hist := ro.GetHistory()
	for i := len(hist) - 1; i >= 0 && len(v.History) < 8; i-- {
		h := hist[i]
		v.History = append(v.History, HistoryStep{At: clock(h.GetAt().AsTime()), Description: h.GetDescription(), State: stateName(h.GetState())})
	}
	return v
}

// InstanceRow is one instance in the per-node table.
type InstanceRow struct {
	ID          string
	Release     Release
	Track       string
	Desired     string
	Health      string
	HealthClass string
	Age         string
}

// NodeGroup is the instances of one node.
type NodeGroup struct {
	Node      string
	Instances []InstanceRow
}

func instanceGroups(service string, all []Instance, ix releaseIndex, now time.Time) []NodeGroup {
	byNode := map[string][]InstanceRow{}
	for _, in := range all {
		a := in.Allocation
		if a.GetService() != service {
			continue
		}
		desired := strings.ToLower(strings.TrimPrefix(a.GetDesiredState().String(), "DESIRED_STATE_"))
		row := InstanceRow{ID: a.GetId(), Release: ix.get(a.GetRelease()), Track: a.GetTrack(), Desired: desired,
			Health: in.Health, HealthClass: "h-unknown"}
		if !in.CreatedAt.IsZero() {
			row.Age = ago(in.CreatedAt, now)
		}
		switch in.Health {
		case "":
			row.Health = "not reported here"
		case "passing":
			row.HealthClass = "h-ok"
		case "critical", "failed", "exited":
			row.HealthClass = "h-bad"
		default:
			row.HealthClass = "h-wait"
		}
		if !in.HealthSince.IsZero() && in.Health != "" {
			row.Health += " for " + since(in.HealthSince, now)
		}
		byNode[a.GetNodeId()] = append(byNode[a.GetNodeId()], row)
	}
	var out []NodeGroup
	for node, rows := range byNode {
		sort.Slice(rows, func(i, j int) bool {
			if rows[i].Release.Number != rows[j].Release.Number {
				return rows[i].Release.Number > rows[j].Release.Number
			}
			return rows[i].ID < rows[j].ID
		})
		out = append(out, NodeGroup{Node: node, Instances: rows})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// ReleaseRow is one release in the history.
type ReleaseRow struct {
	Release    Release
	Created    string
	By         string
	Reason     string
	RollbackOf Release
	Current    bool
}

// AuditRow is one audit entry.
type AuditRow struct {
	At, Actor, Action, Detail, Accessor string
}

func releaseRows(rels []*deployv1.Release, stable uint64, ix releaseIndex, now time.Time) []ReleaseRow {
	out := make([]ReleaseRow, 0, len(rels))
	for _, r := range rels {
		row := ReleaseRow{Release: ix.get(r.GetNumber()), Created: ago(r.GetCreatedAt().AsTime(), now), By: r.GetCreatedBy(),
			Reason: r.GetReason(), Current: r.GetNumber() == stable}
		if r.GetRollbackOf() != 0 {
			row.RollbackOf = ix.get(r.GetRollbackOf())
		}
		out = append(out, row)
	}
	return out
}

func auditRows(events []*deployv1.AuditEvent, limit int) []AuditRow {
	var out []AuditRow
	for _, e := range events {
		if len(out) == limit {
			break
		}
		acc := e.GetAccessorId()
		if len(acc) > 8 {
			acc = acc[:8]
		}
		out = append(out, AuditRow{At: e.GetAt().AsTime().Local().Format("Jan 2 15:04:05"), Actor: e.GetActor(), Action: e.GetAction(),
			Detail: e.GetDetail(), Accessor: acc})
	}
	return out
}

// ago is a short relative time: "12s ago", "3m ago", "2h ago".
func ago(t, now time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return ""
	}
	return since(t, now) + " ago"
}

func since(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func clock(t time.Time) string { return t.Local().Format("15:04:05") }

// pauseLeft is the time from now to end, e.g. "45s" or "4m05s"; "0s" once
// it has passed (the engine moves on at its next pass).
func pauseLeft(end, now time.Time) string {
	d := max(end.Sub(now).Round(time.Second), 0)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

var funcs = template.FuncMap{
	"pct": func(w int32) string { return strconv.Itoa(int(w)) + "%" },
}
