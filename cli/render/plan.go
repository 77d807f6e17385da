package render

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/platform/spec"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Change is one field that differs between two specs.
type Change struct {
	// Field is the path as a spec file writes it, e.g. "update.canary.steps[1].weight".
	Field string `json:"field"`
	// From and To are the old and new values as text; empty when the
	// field is added or removed.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// SpecDiff lists the fields that differ between old and new (normally both
// with defaults filled in), sorted by field path. A nil old is a first
// deploy: every field of new is added.
func SpecDiff(old, new *deployv1.ServiceSpec) []Change {
	a, b := flatten(old), flatten(new)
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var out []Change
	for k := range keys {
		if a[k] != b[k] {
			out = append(out, Change{Field: k, From: a[k], To: b[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return fieldLess(out[i].Field, out[j].Field) })
	return out
}

// fieldLess orders paths so that list elements come in index order.
func fieldLess(a, b string) bool {
	pa, pb := splitPath(a), splitPath(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] == pb[i] {
			continue
		}
		var na, nb int
		if _, err := fmt.Sscanf(pa[i], "[%d]", &na); err == nil {
			if _, err := fmt.Sscanf(pb[i], "[%d]", &nb); err == nil {
				return na < nb
			}
		}
		return pa[i] < pb[i]
	}
	return len(pa) < len(pb)
}

func splitPath(p string) []string {
	var parts []string
	for _, dot := range strings.Split(p, ".") {
		if i := strings.Index(dot, "["); i > 0 {
			parts = append(parts, dot[:i])
			dot = dot[i:]
			for _, e := range strings.SplitAfter(dot, "]") {
				if e != "" {
					parts = append(parts, e)
				}
			}
			continue
		}
		parts = append(parts, dot)
	}
	return parts
}

// flatten renders every set field of s as path -> value, with proto field
// names as a spec file writes them.
func flatten(s *deployv1.ServiceSpec) map[string]string {
	out := map[string]string{}
	if s == nil {
		return out
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(s)
	if err != nil {
		return out
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return out
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := k
				if path != "" {
					p = path + "." + k
				}
				if path == "env" || strings.HasSuffix(path, ".labels") {
					p = fmt.Sprintf("%s[%q]", path, k)
				}
				walk(p, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case string:
			out[path] = x
		default:
			out[path] = fmt.Sprint(x)
		}
	}
	walk("", v)
	return out
}

// PlanStep is one step a rollout would take.
type PlanStep struct {
	// What the step does, for people.
	What string `json:"what"`
	// Weight is the new release's traffic share after the step, in percent.
	Weight int `json:"weight"`
	// Instances is how many instances of the new release run in the step.
	Instances int `json:"instances"`
	// Wait is what ends the step: a pause, a promote, health.
	Wait string `json:"wait,omitempty"`
}

// RolloutSteps is what a rollout of spec s (defaults filled in) to release
// to, replacing release from (zero: a first deploy) as rollout id, would
// do, step by step, as the coordinator's rollout machine runs it.
func RolloutSteps(s *deployv1.ServiceSpec, id string, from, to uint64) []PlanStep {
	n := int(s.GetCount())
	u := s.GetUpdate()
	health := fmt.Sprintf("each healthy for %s within %s", dur(u.GetMinHealthyTime().AsDuration()), dur(u.GetHealthyDeadline().AsDuration()))
	promote := "waits for promote: slipctl rollout promote " + id
	if from == 0 {
		return []PlanStep{{What: fmt.Sprintf("start %d instance(s) of %s; all traffic once healthy", n, release(to)), Weight: 100, Instances: n, Wait: health}}
	}
	var steps []PlanStep
	switch u.GetStrategy() {
	case deployv1.Strategy_STRATEGY_CANARY:
		cs := u.GetCanary().GetSteps()
		for i, st := range cs {
			w := int(st.GetWeight())
			k := canaryInstances(n, w)
			ps := PlanStep{What: fmt.Sprintf("%s at %d%% (%s at %d%%)", release(to), w, release(from), 100-w), Weight: w, Instances: k}
			switch {
			case st.GetManual():
				ps.Wait = promote
			case st.GetPause().AsDuration() > 0:
				ps.Wait = "holds " + dur(st.GetPause().AsDuration())
			}
			if i == len(cs)-1 && !st.GetManual() && w < 100 && !u.GetAutoPromote() {
				ps.Wait = strings.TrimPrefix(ps.Wait+"; then ", "; then ") + promote
			}
			steps = append(steps, ps)
		}
		steps = append(steps, PlanStep{What: fmt.Sprintf("%s at 100%% with all %d instance(s); %s stopped", release(to), n, release(from)), Weight: 100, Instances: n, Wait: health})
	case deployv1.Strategy_STRATEGY_BLUE_GREEN:
		preview := promote
		if u.GetAutoPromote() {
			preview = "switches once healthy (auto_promote)"
		}
		steps = []PlanStep{
			{What: fmt.Sprintf("start %d instance(s) of %s beside %s; preview with header %s", n, release(to), release(from), u.GetBlueGreen().GetPreviewHeader()), Weight: 0, Instances: n, Wait: health},
			{What: fmt.Sprintf("switch all traffic to %s", release(to)), Weight: 100, Instances: n, Wait: preview},
			{What: fmt.Sprintf("keep %s warm, then stop it", release(from)), Weight: 100, Instances: n, Wait: "holds " + dur(u.GetScaleDownDelay().AsDuration())},
		}
	default:
		p := spec.RollingBatch(u, n)
		batches := max(1, (n+p-1)/p)
		for k := 0; k < batches; k++ {
			target := min(n, (k+1)*p)
			w := 100
			if n > 0 {
				w = (100*target + n/2) / n
			}
			steps = append(steps, PlanStep{What: fmt.Sprintf("batch %d/%d: %d/%d instance(s) of %s, as many of %s stopped", k+1, batches, target, n, release(to), release(from)), Weight: w, Instances: target, Wait: health})
		}
	}
	return steps
}

// dur renders a duration for people: "30s", "1m", "1m30s".
func dur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// canaryInstances is the coordinator's instance count for a canary weight.
func canaryInstances(count, weight int) int {
	if weight <= 0 || count == 0 {
		return 0
	}
	return max(1, (count*weight+99)/100)
}

// Plan is what a deploy of a spec file would do.
type Plan struct {
	// Service is the service name; Rollout the id the rollout would get.
	Service string `json:"service"`
	Rollout string `json:"rollout"`
	// Release is the number the release would get; From the release it
	// would replace (zero: a first deploy); Compared the release the diff
	// is against (the latest).
	Release  uint64 `json:"release"`
	From     uint64 `json:"from,omitempty"`
	Compared uint64 `json:"compared,omitempty"`
	// Image and FromImage are the images of the new and replaced releases.
	Image     string `json:"image"`
	FromImage string `json:"fromImage,omitempty"`
	// Strategy is rolling, blue_green or canary.
	Strategy string `json:"strategy"`
	// Changes are the fields that differ from release Compared.
	Changes []Change `json:"changes"`
	// Steps are the rollout's steps.
	Steps []PlanStep `json:"steps"`
	// Notes say what else a deploy would meet: an active rollout, checks
	// that could not be made.
	Notes []string `json:"notes,omitempty"`
}

// WritePlan prints a plan for people.
func WritePlan(w io.Writer, p *Plan) error {
	if p.From == 0 {
		fmt.Fprintf(w, "plan: service %s, release %s (%s), first deploy as rollout %s\n", p.Service, release(p.Release), p.Image, p.Rollout)
	} else {
		fmt.Fprintf(w, "plan: service %s, release %s (%s) replacing %s (%s), %s as rollout %s\n",
			p.Service, release(p.Release), p.Image, release(p.From), p.FromImage, p.Strategy, p.Rollout)
	}
	switch {
	case p.Compared == 0:
	case len(p.Changes) == 0:
		fmt.Fprintf(w, "\nno changes from %s: a deploy would still make release %s with the same spec\n", release(p.Compared), release(p.Release))
	default:
		fmt.Fprintf(w, "\nchanges from %s:\n", release(p.Compared))
		for _, c := range p.Changes {
			switch {
			case c.From == "":
				fmt.Fprintf(w, "  + %s: %s\n", c.Field, c.To)
			case c.To == "":
				fmt.Fprintf(w, "  - %s: %s\n", c.Field, c.From)
			default:
				fmt.Fprintf(w, "  ~ %s: %s -> %s\n", c.Field, c.From, c.To)
			}
		}
	}
	fmt.Fprintf(w, "\nrollout steps:\n")
	tw := table(w)
	for i, s := range p.Steps {
		wait := s.Wait
		if wait == "" {
			wait = "moves on"
		}
		fmt.Fprintf(tw, "  %d/%d\t%d%%\t%d inst\t%s\t%s\n", i+1, len(p.Steps), s.Weight, s.Instances, s.What, wait)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
	_, err := fmt.Fprintf(w, "\nnothing was deployed\n")
	return err
}
