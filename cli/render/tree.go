package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"slipway.dev/platform/spec"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TreeInput is everything the rollout tree shows: the rollout, the specs
// of its releases, its latest events and the clock. It is plain data, so a
// test can script any state.
type TreeInput struct {
	// Rollout is the rollout as last seen.
	Rollout *deployv1.Rollout
	// Releases are the service's releases by number (at least the
	// rollout's from and to, for images and steps); missing ones show "?".
	Releases map[uint64]*deployv1.Release
	// Events are the rollout's latest events, oldest first; the last one's
	// healthy counts are shown per release.
	Events []*deployv1.RolloutEvent
	// Now is the time the tree is drawn at (pause countdowns, ages).
	Now time.Time
}

// MaxTreeEvents is how many of the latest events the tree lists.
const MaxTreeEvents = 5

// Tree renders the rollout as a tree of lines, without colour:
//
//	rollout web-3  canary  PAUSED  step 2/3  started 1m05s ago
//	├── stable  #2  slipway/demo:v2   50%  healthy 4/4
//	├── canary  #3  slipway/demo:v3   50%  healthy 2/4
//	├── steps
//	│   ├── ✓ 1/3   10%  held 30s
//	│   ├── ▶ 2/3   50%  manual: waiting for promote: slipctl rollout promote web-3
//	│   └── · 3/3  100%
//	└── events
//	    └── 07:30:05  paused  step 2/3 (#3 at 50%) waits for promote
func Tree(in TreeInput) []string {
	r := in.Rollout
	if r == nil {
		return []string{"rollout: no state yet"}
	}
	to := in.Releases[r.GetToRelease()]
	steps := Steps(to.GetSpec(), r.GetFromRelease())
	var b treeBuilder
	head := fmt.Sprintf("rollout %s  %s  %s", r.GetId(), Strategy(r.GetStrategy()), State(r.GetState()))
	if !finalState(r.GetState()) {
		head += "  " + Step(r.GetStep(), steps)
	}
	if c := r.GetCreatedAt(); c != nil {
		head += "  started " + age(in.Now.Sub(c.AsTime())) + " ago"
	}
	b.line(0, false, head)

	healthy := map[string]int32{}
	if n := len(in.Events); n > 0 {
		healthy = in.Events[n-1].GetHealthy()
	}
	type track struct {
		name string
		num  uint64
	}
	var tracks []track
	if r.GetFromRelease() != 0 {
		tracks = append(tracks, track{"stable", r.GetFromRelease()})
	}
	newName := map[deployv1.Strategy]string{deployv1.Strategy_STRATEGY_CANARY: "canary", deployv1.Strategy_STRATEGY_BLUE_GREEN: "preview"}[r.GetStrategy()]
	if newName == "" || r.GetFromRelease() == 0 {
		newName = "new"
	}
	tracks = append(tracks, track{newName, r.GetToRelease()})
	for _, t := range tracks {
		rel := in.Releases[t.num]
		image := rel.GetSpec().GetImage()
		if image == "" {
			image = "?"
		}
		key := strconv.FormatUint(t.num, 10)
		line := fmt.Sprintf("%-7s %-4s %-24s %4d%%", t.name, release(t.num), image, r.GetWeights()[key])
		if h, ok := healthy[key]; ok || rel != nil {
			line += fmt.Sprintf("  healthy %d", h)
			if rel != nil {
				line += fmt.Sprintf("/%d", rel.GetSpec().GetCount())
			}
		}
		b.line(1, false, line)
	}

	// Steps, with where the rollout is and what moves it on.
	b.line(1, false, "steps")
	if steps == 0 {
		b.line(2, true, "unknown: the release's spec was not read")
	}
	for i, st := range stepLines(in, steps) {
		b.line(2, i == steps-1 || steps == 0, st)
	}
	if r.GetMessage() != "" {
		b.line(1, false, "message: "+r.GetMessage())
	}
	// The latest analysis verdict, with its checks.
	for j := len(in.Events) - 1; j >= 0; j-- {
		v := in.Events[j].GetAnalysis()
		if v == nil {
			continue
		}
		b.line(1, false, AnalysisSummary(v))
		for k, c := range v.GetChecks() {
			b.line(2, k == len(v.GetChecks())-1, fmt.Sprintf("%-18s %-12s %s", c.GetName(), resultName(c.GetResult()), c.GetDetail()))
		}
		break
	}
	b.line(1, true, "events")
	evs := in.Events
	if len(evs) > MaxTreeEvents {
		evs = evs[len(evs)-MaxTreeEvents:]
	}
	if len(evs) == 0 {
		b.line(2, true, "none yet")
	}
	for i, e := range evs {
		at := "--:--:--"
		if e.GetAt() != nil {
			at = e.GetAt().AsTime().UTC().Format("15:04:05")
		}
		msg := e.GetMessage()
		if v := e.GetAnalysis(); v != nil {
			msg = AnalysisSummary(v)
		}
		b.line(2, i == len(evs)-1, fmt.Sprintf("%s  %-9s %s", at, orDash(e.GetKind()), msg))
	}
	return b.lines
}

// stepLines describes each step of the rollout: done, current (with its
// pause countdown or the command it waits for) or to come.
func stepLines(in TreeInput, steps int) []string {
	r := in.Rollout
	spec := in.Releases[r.GetToRelease()].GetSpec()
	cur := int(r.GetStep())
	final := finalState(r.GetState())
	var out []string
	for i := 0; i < steps; i++ {
		mark := "·"
		switch {
		case final && r.GetState() == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, i < cur:
			mark = "✓"
		case final:
			mark = "✗"
			if i > cur {
				mark = "·"
			}
		case i == cur:
			mark = "▶"
		}
		desc, pause, manual := stepDesc(r, spec, i)
		line := fmt.Sprintf("%s %d/%d  %s", mark, i+1, steps, desc)
		if mark == "▶" {
			switch {
			case r.GetAwaitingPromote():
				line += "  waiting for promote: slipctl rollout promote " + r.GetId()
			case r.GetState() == deployv1.RolloutState_ROLLOUT_STATE_PAUSED:
				line += "  paused by an operator: slipctl rollout resume " + r.GetId()
			case pause > 0:
				if at, ok := stepStarted(in, i); ok {
					left := at.Add(pause).Sub(in.Now)
					line += fmt.Sprintf("  pause %s, %s left", age(pause), age(max(0, left)))
				} else {
					line += "  then pause " + age(pause)
				}
			case manual:
				line += "  then waits for promote"
			}
		} else if pause > 0 {
			line += "  pause " + age(pause)
		} else if manual {
			line += "  manual"
		}
		out = append(out, line)
	}
	return out
}

// stepDesc says what step i does, its timed pause and whether it is manual.
func stepDesc(r *deployv1.Rollout, s *deployv1.ServiceSpec, i int) (string, time.Duration, bool) {
	to := release(r.GetToRelease())
	n := int(s.GetCount())
	if r.GetFromRelease() == 0 {
		return fmt.Sprintf("start %d instance(s) of %s", n, to), 0, false
	}
	u := s.GetUpdate()
	switch r.GetStrategy() {
	case deployv1.Strategy_STRATEGY_CANARY:
		cs := u.GetCanary().GetSteps()
		if i >= len(cs) {
			return "", 0, false
		}
		w := int(cs[i].GetWeight())
		return fmt.Sprintf("%3d%%  %d instance(s) of %s", w, canaryInstances(n, w), to), cs[i].GetPause().AsDuration(), cs[i].GetManual()
	case deployv1.Strategy_STRATEGY_BLUE_GREEN:
		switch i {
		case 0:
			return fmt.Sprintf("deploy %d instance(s) of %s beside %s", n, to, release(r.GetFromRelease())), 0, false
		case 1:
			return "preview, then switch all traffic", 0, !u.GetAutoPromote()
		default:
			return "keep " + release(r.GetFromRelease()) + " warm", u.GetScaleDownDelay().AsDuration(), false
		}
	default:
		p := spec.RollingBatch(u, n)
		return fmt.Sprintf("batch: %d/%d instance(s) of %s", min(n, (i+1)*p), n, to), 0, false
	}
}

// stepStarted is when step i took effect: its latest "step" event.
func stepStarted(in TreeInput, i int) (time.Time, bool) {
	for j := len(in.Events) - 1; j >= 0; j-- {
		e := in.Events[j]
		if e.GetKind() == "step" && int(e.GetStep()) == i && e.GetAt() != nil {
			return e.GetAt().AsTime(), true
		}
	}
	for _, h := range in.Rollout.GetHistory() {
		if int(h.GetIndex()) == i && h.GetAt() != nil {
			return h.GetAt().AsTime(), true
		}
	}
	return time.Time{}, false
}

func finalState(s deployv1.RolloutState) bool {
	switch s {
	case deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, deployv1.RolloutState_ROLLOUT_STATE_FAILED,
		deployv1.RolloutState_ROLLOUT_STATE_REVERTED, deployv1.RolloutState_ROLLOUT_STATE_ABORTED,
		deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED:
		return true
	}
	return false
}

// age renders a duration rounded to the second: "0s", "45s", "1m5s".
func age(d time.Duration) string {
	return dur(d.Round(time.Second))
}

// treeBuilder draws the branches of a tree of depth up to 2.
type treeBuilder struct {
	lines []string
	// last records, per depth, whether the latest node there was the last
	// of its parent, which decides the rails drawn below it.
	last [3]bool
}

func (b *treeBuilder) line(depth int, last bool, text string) {
	if depth == 0 {
		b.lines = append(b.lines, text)
		return
	}
	var prefix strings.Builder
	for d := 1; d < depth; d++ {
		if b.last[d] {
			prefix.WriteString("    ")
		} else {
			prefix.WriteString("│   ")
		}
	}
	if last {
		prefix.WriteString("└── ")
	} else {
		prefix.WriteString("├── ")
	}
	b.last[depth] = last
	b.lines = append(b.lines, prefix.String()+text)
}

// WriteTree writes the tree, each line cut to width runes (0: no limit).
func WriteTree(w io.Writer, in TreeInput, width int) error {
	for _, l := range Tree(in) {
		if _, err := fmt.Fprintln(w, cut(l, width)); err != nil {
			return err
		}
	}
	return nil
}

func cut(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// LiveTree shows a watched rollout as a tree redrawn in place on a
// terminal, after each event and each Tick. It is safe for concurrent use.
type LiveTree struct {
	mu     sync.Mutex
	w      io.Writer
	now    func() time.Time
	width  int
	in     TreeInput
	drawn  int // lines of the tree on screen
	notes  []string
	closed bool
}

// NewLiveTree returns a LiveTree drawing on w (a terminal), lines cut to
// width.
func NewLiveTree(w io.Writer, width int, now func() time.Time) *LiveTree {
	return &LiveTree{w: w, width: width, now: now, in: TreeInput{Releases: map[uint64]*deployv1.Release{}}}
}

// SetReleases gives the tree the service's releases (images, steps).
func (t *LiveTree) SetReleases(rels []*deployv1.Release) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range rels {
		t.in.Releases[r.GetNumber()] = r
	}
	t.redraw()
}

// Event adds one event and redraws.
func (t *LiveTree) Event(resp *deployv1.WatchRolloutResponse) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if resp.GetRollout() != nil {
		t.in.Rollout = resp.GetRollout()
	}
	if e := resp.GetEvent(); e != nil {
		t.in.Events = append(t.in.Events, e)
		if len(t.in.Events) > MaxTreeEvents {
			t.in.Events = t.in.Events[len(t.in.Events)-MaxTreeEvents:]
		}
	}
	t.redraw()
}

// Tick redraws, so countdowns and ages move between events.
func (t *LiveTree) Tick() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.redraw()
}

// Note shows a line under the tree, such as a reconnect.
func (t *LiveTree) Note(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
	if len(t.notes) > 3 {
		t.notes = t.notes[1:]
	}
	t.redraw()
}

// Done draws the final tree and stops redrawing.
func (t *LiveTree) Done(r *deployv1.Rollout) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.in.Rollout = r
	t.notes = nil
	t.redraw()
	t.closed = true
}

func (t *LiveTree) redraw() {
	if t.closed || t.in.Rollout == nil {
		return
	}
	t.in.Now = t.now()
	var b strings.Builder
	if t.drawn > 0 {
		fmt.Fprintf(&b, "\033[%dA\r\033[J", t.drawn)
	}
	lines := append(Tree(t.in), t.notes...)
	for _, l := range lines {
		b.WriteString(cut(l, t.width))
		b.WriteString("\n")
	}
	t.drawn = len(lines)
	_, _ = io.WriteString(t.w, b.String())
}
