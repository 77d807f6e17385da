package rollout

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"slipway.dev/coordinator/analysis"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// The scripts in testdata/*.txt drive the machine the way the leader engine
// does and assert on what it decides. One command per line; '#' starts a
// comment. Every command that changes the world runs Step once, and after
// each Step the runner checks the machine's contracts (determinism, JSON
// round trip, fixed point, weights summing to 100, stops only after the
// route barrier, nothing placed or stopped twice).
//
// World commands:
//
//	stable v1 x4                  4 healthy instances of release 1 serving all traffic
//	deploy <rolling|blue_green|canary> v2 [count=N] [max_parallel=N]
//	       [max_surge=N|P%] [max_unavailable=N|P%] [stagger=D]
//	       [header_route=H[:value] | header_route=cookie:C[:value]] (canary)
//	       [min_healthy=D] [healthy_deadline=D] [progress_deadline=D] [flap=D]
//	       [scale_down_delay=D] [steps=10:30s,50:manual,100] [header=H]
//	       [auto_revert] [auto_promote] [supersede] [fast_rollback=N]
//	       [analysis] [analysis_steps=0,2] [interval=D] [min_requests=N]
//	       [failure_limit=N] [no_data=hold|fail|pass] [success_min=99]
//	       [p99_max=D] [compare] [webhook=NAME]   canary analysis (on every step,
//	                              or the listed ones); for blue_green the
//	                              preview's, for rolling every batch's
//	       [hook=POINT:NAME]      a hook (pre_rollout, rollout, confirm_promotion,
//	                              post_rollout, rollback) named NAME, interval 10s
//	gate <name> pass|fail         what webhook NAME answers for each window
//	hook <name> pass|fail|none    what hook NAME answers whenever its gate is asked
//	signals canary=N/E@L stable=N/E@L | none   what the edges report per analysis
//	                              window: N requests, E errors, latencies spread over L..2L
//	report <id|vN> <starting|passing|critical|dead> [reason...] (healthy, unhealthy: aliases;
//	                              the rest of the line: why it died, as its agent says)
//	restart <id|vN> [reason...]   its agent restarted it in place: restarts+1,
//	                              starting again, the reason why it exited
//	pull <id> <progress...>       its agent's last word on pulling its image
//	tick <duration>
//	ack [gen=N]                   edges acknowledge generation N (default: latest)
//	promote [full] | pause | resume | abort   operator commands
//	lose <id>                     the instance vanishes (its node went away)
//	disown <id>                   its allocation leaves the state (stopped, or
//	                              replaced off its node) while its agent still
//	                              runs it: an unowned instance, as it was
//	unowned <id> <health>|gone    an unowned instance as its agent reports it
//	                              (passing: registered, may be routed), or gone
//	                              (stopped, or its node is down: not listed)
//	step                          Step with nothing changed
//
// Assertions (on the last Step's plan, or on the state):
//
//	expect state <phase>          expect stage <stage>     expect step <n>
//	expect weights v1=90 v2=10    expect weights none      expect gen <n>
//	expect pins <header>=vN | none
//	expect place vN xK [track=T] | none
//	expect stop <ids...> | none   expect drain <ids...> | none
//	expect traffic none           expect idle
//	expect event <kind> [text]    expect message <text>
//	expect awaiting yes|no        the state is (not) waiting for a promote
//	expect live v1=4 v2=1         expect pending <ids...> | none
//	expect done yes|no            expect wake <duration from now> | none
//	expect told <point> | none    the plan tells the point's hooks of the end
//	expect asking <point> | none  the gate DueHooks asks now
func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			w := newWorld(t)
			if err := w.runScript(f, string(data)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRunnerRejectsUnknownCommands(t *testing.T) {
	for _, script := range []string{
		"frobnicate",
		"stable v1 x2\nexpect colour blue",
		"deploy canary v2 shiny=yes",
	} {
		w := newWorld(t)
		err := w.runScript("inline", script)
		if err == nil || !strings.Contains(err.Error(), "unknown") {
			t.Errorf("script %q: got error %v, want an unknown command/argument error", script, err)
		}
	}
}

func TestRunnerFailsOnWrongExpectation(t *testing.T) {
	w := newWorld(t)
	err := w.runScript("inline", "stable v1 x2\ndeploy canary v2 count=2\nexpect place v2 x2")
	if err == nil || !strings.Contains(err.Error(), "placed") {
		t.Fatalf("got %v, want a failed expectation about placements", err)
	}
}

type world struct {
	t         testing.TB
	now       time.Time
	state     []byte // the State as committed: JSON
	started   bool
	instances map[string]*Instance
	// unowned are the instances no allocation holds that the caller lists
	// (Observation.Unowned).
	unowned   map[string]*Instance
	counter   map[uint64]int
	acked     uint64
	gen       uint64
	weights   map[uint64]int
	stable    uint64
	cmds      []Command
	last      Plan
	lastPlace map[uint64]string // release -> track of the last placement
	issued    map[uint64]*Traffic
	// canary and stable are the signals reported per analysis window; nil:
	// no signals are observed.
	sigCanary, sigStable *analysis.Sample
	gates                []analysis.Gate // the webhooks' answers per window
	// sickDrained are old instances drained while failing their check.
	sickDrained map[string]bool
	hookAnswers map[string]bool // hook name -> passes; missing: no answer yet
}

func newWorld(t testing.TB) *world {
	return &world{
		t:           t,
		now:         time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		instances:   map[string]*Instance{},
		unowned:     map[string]*Instance{},
		counter:     map[uint64]int{},
		issued:      map[uint64]*Traffic{},
		lastPlace:   map[uint64]string{},
		sickDrained: map[string]bool{},
	}
}

func (w *world) runScript(name, script string) error {
	sc := bufio.NewScanner(strings.NewReader(script))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if i := strings.Index(text, "#"); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		if err := w.exec(strings.Fields(text)); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", name, line, text, err)
		}
	}
	return sc.Err()
}

func (w *world) current() State {
	var s State
	if w.state == nil {
		return s
	}
	if err := json.Unmarshal(w.state, &s); err != nil {
		w.t.Fatalf("decode state: %v", err)
	}
	return s
}

func (w *world) exec(f []string) error {
	cmd, args := f[0], f[1:]
	switch cmd {
	case "stable":
		return w.cmdStable(args)
	case "deploy":
		return w.cmdDeploy(args)
	case "report":
		return w.cmdReport(args)
	case "restart":
		return w.cmdRestart(args)
	case "pull":
		if len(args) < 2 || w.instances[args[0]] == nil {
			return fmt.Errorf("usage: pull <existing instance id> <progress...>")
		}
		w.instances[args[0]].Progress = strings.Join(args[1:], " ")
		return w.step()
	case "tick":
		if len(args) != 1 {
			return fmt.Errorf("tick takes one duration")
		}
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return err
		}
		w.now = w.now.Add(d)
		return w.step()
	case "ack":
		w.acked = w.gen
		for _, a := range args {
			v, ok := strings.CutPrefix(a, "gen=")
			if !ok {
				return fmt.Errorf("unknown argument %q", a)
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return err
			}
			w.acked = n
		}
		return w.step()
	case "promote", "pause", "resume", "abort":
		c := Command{Seq: uint64(len(w.cmds) + 1), Kind: deployv1.CommandKind(deployv1.CommandKind_value["COMMAND_KIND_"+strings.ToUpper(cmd)])}
		for _, a := range args {
			switch {
			case a == "full" && cmd == "promote":
				c.Full = true
			case strings.HasPrefix(a, "by="):
				c.By = strings.TrimPrefix(a, "by=")
			default:
				return fmt.Errorf("unknown argument %q", a)
			}
		}
		w.cmds = append(w.cmds, c)
		return w.step()
	case "lose":
		if len(args) != 1 || w.instances[args[0]] == nil {
			return fmt.Errorf("usage: lose <existing instance id>")
		}
		delete(w.instances, args[0])
		return w.step()
	case "disown":
		if len(args) != 1 || w.instances[args[0]] == nil {
			return fmt.Errorf("usage: disown <existing instance id>")
		}
		w.unowned[args[0]] = w.instances[args[0]]
		delete(w.instances, args[0])
		return w.step()
	case "unowned":
		return w.cmdUnowned(args)
	case "step":
		return w.step()
	case "signals":
		return w.cmdSignals(args)
	case "hook":
		if len(args) != 2 || (args[1] != "pass" && args[1] != "fail" && args[1] != "none") {
			return fmt.Errorf("usage: hook <name> pass|fail|none")
		}
		if w.hookAnswers == nil {
			w.hookAnswers = map[string]bool{}
		}
		if args[1] == "none" {
			delete(w.hookAnswers, args[0])
		} else {
			w.hookAnswers[args[0]] = args[1] == "pass"
		}
		return w.step()
	case "gate":
		if len(args) != 2 || (args[1] != "pass" && args[1] != "fail") {
			return fmt.Errorf("usage: gate <name> pass|fail")
		}
		w.gates = slices.DeleteFunc(w.gates, func(g analysis.Gate) bool { return g.Name == args[0] })
		w.gates = append(w.gates, analysis.Gate{Name: args[0], Passed: args[1] == "pass", Detail: "answered " + args[1]})
		return w.step()
	case "expect":
		if len(args) == 0 {
			return fmt.Errorf("expect what?")
		}
		return w.expect(args[0], args[1:])
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func parseRelease(s string) (uint64, error) {
	v, ok := strings.CutPrefix(s, "v")
	if !ok {
		return 0, fmt.Errorf("release %q: want vN", s)
	}
	return strconv.ParseUint(v, 10, 64)
}

func (w *world) cmdUnowned(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: unowned <id> <health>|gone")
	}
	id := args[0]
	if _, owned := w.instances[id]; owned {
		return fmt.Errorf("unowned %s: an allocation holds it (disown it first)", id)
	}
	if args[1] == "gone" {
		if w.unowned[id] == nil {
			return fmt.Errorf("unowned %s: no such unowned instance", id)
		}
		delete(w.unowned, id)
		return w.step()
	}
	h := Health(args[1])
	switch h {
	case HealthStarting, HealthPassing, HealthCritical, HealthDead, HealthUnknown:
	default:
		return fmt.Errorf("unknown health %q", args[1])
	}
	in := w.unowned[id]
	if in == nil {
		relText, _, _ := strings.Cut(id, "-")
		rel, err := parseRelease(relText)
		if err != nil {
			return fmt.Errorf("unowned %s: want an id vN-K: %w", id, err)
		}
		in = &Instance{ID: id, Release: rel, CreatedAt: w.now.Add(-time.Hour)}
		w.unowned[id] = in
	}
	in.Health, in.Since = h, w.now
	if !w.started {
		return nil // seen by the rollout deployed next
	}
	return w.step()
}

func (w *world) cmdStable(args []string) error {
	if len(args) != 2 || !strings.HasPrefix(args[1], "x") {
		return fmt.Errorf("usage: stable vN xK")
	}
	rel, err := parseRelease(args[0])
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(args[1][1:])
	if err != nil {
		return err
	}
	for range n {
		w.counter[rel]++
		id := fmt.Sprintf("v%d-%d", rel, w.counter[rel])
		w.instances[id] = &Instance{ID: id, Release: rel, Health: HealthPassing, Since: w.now.Add(-time.Hour), CreatedAt: w.now.Add(-time.Hour)}
	}
	w.stable = rel
	if w.gen == 0 { // an intent serving the stable release exists
		w.gen, w.acked = 1, 1
		w.weights = map[uint64]int{rel: 100}
	}
	return nil
}

func (w *world) cmdDeploy(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: deploy <strategy> vN [options]")
	}
	var cfg Config
	switch args[0] {
	case "rolling":
		cfg.Strategy = deployv1.Strategy_STRATEGY_ROLLING
	case "blue_green":
		cfg.Strategy = deployv1.Strategy_STRATEGY_BLUE_GREEN
	case "canary":
		cfg.Strategy = deployv1.Strategy_STRATEGY_CANARY
	default:
		return fmt.Errorf("unknown strategy %q", args[0])
	}
	to, err := parseRelease(args[1])
	if err != nil {
		return err
	}
	spec := Spec{Service: "web", To: to, Count: 4}
	supersede := false
	var an *analysis.Config
	var anSteps []int
	useAnalysis := func() *analysis.Config {
		if an == nil {
			an = &analysis.Config{}
		}
		return an
	}
	for _, a := range args[2:] {
		k, v, _ := strings.Cut(a, "=")
		dur := func(d *time.Duration) error {
			var err error
			*d, err = time.ParseDuration(v)
			return err
		}
		var err error
		switch k {
		case "count":
			spec.Count, err = strconv.Atoi(v)
		case "max_parallel":
			cfg.MaxParallel, err = strconv.Atoi(v)
		case "max_surge":
			cfg.MaxSurge = v
		case "max_unavailable":
			cfg.MaxUnavailable = v
		case "stagger":
			err = dur(&cfg.Stagger)
		case "header_route":
			// header_route=X-Canary[:value] or header_route=cookie:beta[:value]
			h := HeaderRoute{}
			name, val, _ := strings.Cut(v, ":")
			if name == "cookie" {
				name, val, _ = strings.Cut(val, ":")
				h.Cookie = name
			} else {
				h.Header = name
			}
			h.Value = val
			cfg.HeaderRoutes = append(cfg.HeaderRoutes, h)
		case "min_healthy":
			err = dur(&cfg.MinHealthyTime)
		case "healthy_deadline":
			err = dur(&cfg.HealthyDeadline)
		case "progress_deadline":
			err = dur(&cfg.ProgressDeadline)
		case "flap":
			err = dur(&cfg.FlapTolerance)
		case "scale_down_delay":
			err = dur(&cfg.ScaleDownDelay)
		case "header":
			cfg.PreviewHeader = v
		case "steps":
			cfg.Steps, err = parseSteps(v)
		case "auto_revert":
			cfg.AutoRevert = true
		case "auto_promote":
			cfg.AutoPromote = true
		case "supersede":
			supersede = true
		case "fast_rollback":
			spec.FastRollback = "rollback within rollback_window " + v
		case "analysis":
			useAnalysis()
		case "analysis_steps":
			for _, f := range strings.Split(v, ",") {
				i, err := strconv.Atoi(f)
				if err != nil {
					return fmt.Errorf("%s: %w", a, err)
				}
				anSteps = append(anSteps, i)
			}
		case "interval":
			err = dur(&useAnalysis().Interval)
		case "min_requests":
			useAnalysis().MinRequests, err = strconv.ParseUint(v, 10, 64)
		case "failure_limit":
			useAnalysis().FailureLimit, err = strconv.Atoi(v)
		case "no_data":
			useAnalysis().NoData = analysis.NoData(v)
		case "success_min":
			useAnalysis().SuccessRateMin, err = strconv.ParseFloat(v, 64)
		case "p99_max":
			err = dur(&useAnalysis().LatencyP99Max)
		case "compare":
			useAnalysis().Compare = &analysis.Compare{}
		case "hook":
			point, name, _ := strings.Cut(v, ":")
			cfg.Hooks = append(cfg.Hooks, Hook{Name: name, Point: HookPoint(point), URL: "http://hooks.test/" + name, Timeout: time.Second, Interval: 10 * time.Second})
		case "webhook":
			useAnalysis().Webhooks = append(useAnalysis().Webhooks, analysis.Webhook{Name: v, URL: "http://gate.test/" + v})
		default:
			return fmt.Errorf("unknown deploy argument %q", a)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
	}
	if w.started {
		prev := w.current()
		switch {
		case !Terminal(prev.Phase) && !supersede:
			return fmt.Errorf("rollout to v%d is active; add supersede", prev.To)
		case !Terminal(prev.Phase):
			next, plan := Supersede(prev, fmt.Sprintf("v%d", to))
			if err := w.commit(next, plan); err != nil {
				return err
			}
		}
	}
	if an != nil && cfg.Strategy != deployv1.Strategy_STRATEGY_CANARY {
		cfg.Analysis = an // the preview's or the batches'
	} else if an != nil {
		if cfg.Steps == nil {
			cfg.Steps = DefaultSteps()
		}
		for i := range cfg.Steps {
			if len(anSteps) == 0 || slices.Contains(anSteps, i) {
				a := *an
				cfg.Steps[i].Analysis = &a
			}
		}
	}
	// As the replicated state does: the new rollout starts from the
	// release that serves, and counts its instances not drained.
	var drained []string
	if tr := w.issued[w.gen]; tr != nil {
		drained = tr.Drain
	}
	running := map[uint64]int{}
	for _, id := range slices.Sorted(maps.Keys(w.instances)) {
		in := w.instances[id]
		if !slices.Contains(drained, in.ID) {
			running[in.Release]++
		} else {
			// As the engine does: the allocations drained and not
			// stopped yet are the new rollout's strays.
			spec.Draining = append(spec.Draining, PendingStop{ID: in.ID, Release: in.Release})
		}
	}
	spec.From = Serving(w.weights, running, w.stable)
	if spec.From != 0 {
		spec.FromCount = running[spec.From]
	}
	spec.Config = cfg
	spec.Generation = w.gen
	spec.Weights = maps.Clone(w.weights)
	s, err := New(spec)
	if err != nil {
		return err
	}
	w.cmds = nil
	w.started = true
	w.state, err = json.Marshal(s)
	if err != nil {
		return err
	}
	return w.step()
}

func parseSteps(v string) ([]CanaryStep, error) {
	var steps []CanaryStep
	for _, part := range strings.Split(v, ",") {
		weight, pause, _ := strings.Cut(part, ":")
		n, err := strconv.Atoi(weight)
		if err != nil {
			return nil, err
		}
		st := CanaryStep{Weight: n}
		switch pause {
		case "":
		case "manual":
			st.Manual = true
		default:
			if st.Pause, err = time.ParseDuration(pause); err != nil {
				return nil, err
			}
		}
		steps = append(steps, st)
	}
	return steps, nil
}

func (w *world) cmdReport(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: report <id|vN> <health> [reason...]")
	}
	reason := strings.Join(args[2:], " ")
	h := Health(args[1])
	switch args[1] { // the words
	case "healthy":
		h = HealthPassing
	case "unhealthy":
		h = HealthCritical
	}
	switch h {
	case HealthStarting, HealthPassing, HealthCritical, HealthDead, HealthUnknown:
	default:
		return fmt.Errorf("unknown health %q", args[1])
	}
	var targets []*Instance
	if in, ok := w.instances[args[0]]; ok {
		targets = append(targets, in)
	} else if rel, err := parseRelease(args[0]); err == nil {
		for _, in := range w.instances {
			if in.Release == rel {
				targets = append(targets, in)
			}
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("no instance %q", args[0])
	}
	for _, in := range targets {
		if in.Health != h {
			in.Health, in.Since = h, w.now
		}
		in.Reason = reason
	}
	return w.step()
}

// cmdSignals sets what the edges report per analysis window.
func (w *world) cmdSignals(args []string) error {
	if len(args) == 1 && args[0] == "none" {
		w.sigCanary, w.sigStable = nil, nil
		return w.step()
	}
	if len(args) != 2 {
		return fmt.Errorf("usage: signals canary=N/E@L stable=N/E@L | none")
	}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		counts, lat, ok := strings.Cut(v, "@")
		n, e, ok2 := strings.Cut(counts, "/")
		if !ok || !ok2 {
			return fmt.Errorf("%s: want N/E@latency", a)
		}
		reqs, err1 := strconv.ParseUint(n, 10, 64)
		errs, err2 := strconv.ParseUint(e, 10, 64)
		l, err3 := time.ParseDuration(lat)
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		smp := &analysis.Sample{Requests: reqs, Errors: errs}
		for i := uint64(0); i < reqs; i++ {
			smp.Latency.Add(l + time.Duration(float64(l)*float64(i)/float64(reqs)))
		}
		switch k {
		case "canary":
			w.sigCanary = smp
		case "stable":
			w.sigStable = smp
		default:
			return fmt.Errorf("%s: want canary= or stable=", a)
		}
	}
	return w.step()
}

func (w *world) cmdRestart(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: restart <id|vN> [reason...]")
	}
	var targets []*Instance
	if in, ok := w.instances[args[0]]; ok {
		targets = append(targets, in)
	} else if rel, err := parseRelease(args[0]); err == nil {
		for _, in := range w.instances {
			if in.Release == rel {
				targets = append(targets, in)
			}
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("no instance %q", args[0])
	}
	for _, in := range targets {
		in.Restarts++
		in.Health, in.Since, in.Reason = HealthStarting, w.now, strings.Join(args[1:], " ")
	}
	return w.step()
}

func (w *world) observe() Observation {
	obs := Observation{Now: w.now, AckedGeneration: w.acked, Commands: slices.Clone(w.cmds)}
	if (w.sigCanary != nil || len(w.gates) > 0) && w.state != nil {
		if from, to, ok := AnalysisWindow(w.current(), w.now); ok {
			obs.Signals = &Signals{From: from, To: to, Gates: slices.Clone(w.gates)}
			if w.sigCanary != nil {
				obs.Signals.Canary, obs.Signals.Stable = *w.sigCanary, *w.sigStable
			}
		}
	}
	if w.state != nil {
		if call, ok := DueHooks(w.current(), w.now); ok {
			ans := &HookAnswer{Key: call.Key}
			for _, h := range call.Hooks {
				if pass, ok := w.hookAnswers[h.Name]; ok {
					ans.Results = append(ans.Results, HookResult{Name: h.Name, Passed: pass, Detail: map[bool]string{true: "answered 200", false: "answered 500"}[pass]})
				}
			}
			if len(ans.Results) == len(call.Hooks) {
				obs.Hook = ans
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(w.instances)) {
		obs.Instances = append(obs.Instances, *w.instances[id])
	}
	for _, id := range slices.Sorted(maps.Keys(w.unowned)) {
		obs.Unowned = append(obs.Unowned, *w.unowned[id])
	}
	return obs
}

func (w *world) step() error {
	if !w.started {
		return fmt.Errorf("no rollout: deploy first")
	}
	s := w.current()
	obs := w.observe()
	next, plan := Step(s, obs)

	// Contract: deterministic, and the same from the committed JSON as from
	// the in-memory value.
	var mem State
	if err := json.Unmarshal(w.state, &mem); err != nil {
		return err
	}
	next2, plan2 := Step(mem, w.observe())
	if a, b := mustJSON(next, plan), mustJSON(next2, plan2); !bytes.Equal(a, b) {
		return fmt.Errorf("Step is not deterministic:\n%s\n%s", a, b)
	}
	// Contract: a fixed point; stepping again with the same observation
	// decides nothing, so nothing is started or stopped twice.
	if _, again := Step(next, obs); !again.Empty() {
		return fmt.Errorf("Step is not a fixed point: second run decided %+v", again)
	}
	// Contract: AwaitingPromote is exactly a pause that is not an
	// operator's, and it changes only with an event, so the leader (which
	// commits only plans that are not empty) always records the change.
	if want := next.Phase == phasePaused && !next.OperatorPaused; next.AwaitingPromote != want {
		return fmt.Errorf("AwaitingPromote is %v in phase %s (operator paused: %v)", next.AwaitingPromote, phaseName(next.Phase), next.OperatorPaused)
	}
	if next.AwaitingPromote != s.AwaitingPromote && len(plan.Events) == 0 {
		return fmt.Errorf("AwaitingPromote changed to %v without an event", next.AwaitingPromote)
	}
	// Contract: a rollout that ends, or rolls back, in this Step starts
	// nothing it would then leave running: only a rollback restoring the
	// stable release places instances.
	for _, pl := range plan.Place {
		if Terminal(next.Phase) || (next.Stage == StageRestore && pl.Release != next.From) {
			return fmt.Errorf("placed v%d x%d in a Step that ends %s in stage %s", pl.Release, pl.Count, phaseName(next.Phase), next.Stage)
		}
	}
	if err := w.commit(next, plan); err != nil {
		return err
	}
	// Contract: the restore of a rolling update that rolls back never has
	// more than count + max_parallel (max_surge: the update itself may have
	// placed that many) instances of its two releases serving (a drained
	// one serves until the edges acknowledge a generation without it).
	if next.Stage == StageRestore {
		n := 0
		for id, in := range w.instances {
			if (in.Release == next.From || in.Release == next.To) && !w.drainAcked(id) {
				n++
			}
		}
		surge, _ := next.Config.Bounds(next.Count)
		if limit := max(next.Count, next.FromCount) + max(surge, 1); n > limit {
			return fmt.Errorf("%d instances of v%d and v%d serve, more than count + max_parallel (or max_surge) = %d (stage %s)", n, next.From, next.To, limit, next.Stage)
		}
	}
	// Contract of Wake: with nothing else changing, Step decides nothing
	// before the wake time (or ever, without one).
	wake, ok := Wake(next, obs)
	quiet := obs
	quiet.Now = obs.Now.Add(100 * time.Hour)
	if ok {
		if !wake.After(obs.Now) {
			return fmt.Errorf("wake %s is not after now %s", wake, obs.Now)
		}
		quiet.Now = wake.Add(-time.Nanosecond)
	}
	if _, early := Step(next, quiet); !early.Empty() {
		return fmt.Errorf("Step decides %+v at %s, before the wake time (%v, %v)", early, quiet.Now.Sub(obs.Now), wake.Sub(obs.Now), ok)
	}
	return nil
}

func mustJSON(v ...any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// commit stores the state as the leader would and acts on the plan.
func (w *world) commit(next State, plan Plan) error {
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	w.state = b
	w.last = plan
	for _, e := range plan.Events {
		w.t.Logf("  %-10s %s", e.Kind, e.Message)
	}
	if tr := plan.Traffic; tr != nil {
		if tr.Generation != w.gen+1 {
			return fmt.Errorf("traffic generation %d after %d", tr.Generation, w.gen)
		}
		sum := 0
		for _, v := range tr.Weights {
			if v <= 0 || v > 100 {
				return fmt.Errorf("weight %d out of range in %v", v, tr.Weights)
			}
			sum += v
		}
		if len(tr.Weights) > 0 && sum != 100 {
			return fmt.Errorf("weights %v sum to %d", tr.Weights, sum)
		}
		w.gen = tr.Generation
		w.weights = maps.Clone(tr.Weights)
		w.issued[tr.Generation] = tr
	}
	clear(w.lastPlace)
	for _, p := range plan.Place {
		if p.Count <= 0 {
			return fmt.Errorf("placement of %d instances", p.Count)
		}
		w.lastPlace[p.Release] = p.Track
		for range p.Count {
			w.counter[p.Release]++
			id := fmt.Sprintf("v%d-%d", p.Release, w.counter[p.Release])
			w.instances[id] = &Instance{ID: id, Release: p.Release, Health: HealthStarting, Since: w.now, CreatedAt: w.now}
		}
	}
	for _, id := range plan.Stop {
		if _, ok := w.instances[id]; !ok {
			return fmt.Errorf("stop of %s, which is not running (stopped twice?)", id)
		}
		barrier := false
		for g, tr := range w.issued {
			if g <= w.acked && slices.Contains(tr.Drain, id) {
				barrier = true
			}
		}
		if !barrier {
			return fmt.Errorf("stop of %s before the edges acknowledged a generation without it (acked %d)", id, w.acked)
		}
		delete(w.instances, id)
	}
	if tr := plan.Traffic; tr != nil {
		for _, id := range tr.Drain {
			if in, ok := w.instances[id]; ok && in.Health != HealthPassing && in.Release == next.From {
				w.sickDrained[id] = true
			}
		}
	}
	if err := w.checkBounds(next); err != nil {
		return err
	}
	if err := w.checkStrays(next, plan); err != nil {
		return err
	}
	if next.Phase == phaseSucceeded {
		w.stable = next.To
	}
	return nil
}

// drainAcked reports whether the edges acknowledged a generation that
// drains instance id.
func (w *world) drainAcked(id string) bool {
	for g, tr := range w.issued {
		if g <= w.acked && slices.Contains(tr.Drain, id) {
			return true
		}
	}
	return false
}

func (w *world) expect(what string, args []string) error {
	s := w.current()
	p := w.last
	none := len(args) == 1 && args[0] == "none"
	switch what {
	case "state":
		if len(args) != 1 || phaseName(s.Phase) != args[0] {
			return fmt.Errorf("state is %s (%s), want %v", phaseName(s.Phase), s.Message, args)
		}
	case "stage":
		if len(args) != 1 || string(s.Stage) != args[0] {
			return fmt.Errorf("stage is %s, want %v", s.Stage, args)
		}
	case "step":
		if len(args) != 1 || strconv.Itoa(s.Step) != args[0] {
			return fmt.Errorf("step is %d, want %v", s.Step, args)
		}
	case "remembered":
		// The stopped instances the state still lists: only those still
		// observed, not every one ever stopped.
		want := strings.Join(args, " ")
		if none {
			want = ""
		}
		if got := strings.Join(s.StoppedIDs, " "); got != want {
			return fmt.Errorf("state remembers stopped %q, want %v", got, args)
		}
	case "gen":
		if len(args) != 1 || strconv.FormatUint(s.Generation, 10) != args[0] {
			return fmt.Errorf("generation is %d, want %v", s.Generation, args)
		}
	case "weights":
		want := "none"
		if !none {
			want = strings.Join(args, " ")
		}
		if got := formatWeights(s.Weights); got != want {
			return fmt.Errorf("weights are %s, want %s", got, want)
		}
	case "pins":
		var got []string
		for _, pin := range s.Pins {
			got = append(got, fmt.Sprintf("%s=v%d", pin.match(), pin.Release))
		}
		if none && len(got) == 0 {
			return nil
		}
		if !slices.Equal(got, args) {
			return fmt.Errorf("pins are %v, want %v", got, args)
		}
	case "place":
		total := map[uint64]int{}
		for _, pl := range p.Place {
			total[pl.Release] += pl.Count
		}
		if none {
			if len(total) != 0 {
				return fmt.Errorf("placed %v, want none", p.Place)
			}
			return nil
		}
		if len(args) < 2 {
			return fmt.Errorf("usage: expect place vN xK [track=T]")
		}
		rel, err := parseRelease(args[0])
		if err != nil {
			return err
		}
		if got := fmt.Sprintf("x%d", total[rel]); got != args[1] || len(total) != 1 {
			return fmt.Errorf("placed %+v, want v%d %s only", p.Place, rel, args[1])
		}
		if len(args) > 2 {
			if tr := strings.TrimPrefix(args[2], "track="); w.lastPlace[rel] != tr {
				return fmt.Errorf("placed on track %q, want %q", w.lastPlace[rel], tr)
			}
		}
	case "stop":
		if (none && len(p.Stop) != 0) || (!none && !slices.Equal(p.Stop, args)) {
			return fmt.Errorf("stopped %v, want %v", p.Stop, args)
		}
	case "drain":
		var got []string
		if p.Traffic != nil {
			got = p.Traffic.Drain
		}
		if (none && len(got) != 0) || (!none && !slices.Equal(got, args)) {
			return fmt.Errorf("drained %v, want %v", got, args)
		}
	case "pending":
		var got []string
		for _, ps := range s.PendingStops {
			got = append(got, ps.ID)
		}
		if (none && len(got) != 0) || (!none && !slices.Equal(got, args)) {
			return fmt.Errorf("pending stops %v, want %v", got, args)
		}
	case "traffic":
		if !none {
			return fmt.Errorf("usage: expect traffic none")
		}
		if p.Traffic != nil {
			return fmt.Errorf("traffic changed to generation %d %v", p.Traffic.Generation, p.Traffic.Weights)
		}
	case "wake":
		wake, ok := Wake(s, w.observe())
		got := "none"
		if ok {
			got = wake.Sub(w.now).String()
		}
		if len(args) != 1 || got != args[0] {
			return fmt.Errorf("wake in %s, want %v", got, args)
		}
	case "done":
		want := len(args) == 1 && args[0] == "yes"
		if len(args) != 1 || (args[0] != "yes" && args[0] != "no") {
			return fmt.Errorf("usage: expect done yes|no")
		}
		if Done(s) != want {
			return fmt.Errorf("Done is %v (phase %s, %d pending stops), want %v", Done(s), phaseName(s.Phase), len(s.PendingStops), want)
		}
	case "idle":
		if !p.Empty() {
			return fmt.Errorf("plan is not empty: %+v", p)
		}
	case "event":
		if len(args) == 0 {
			return fmt.Errorf("usage: expect event <kind> [text]")
		}
		text := strings.Join(args[1:], " ")
		for _, e := range p.Events {
			if e.Kind == args[0] && strings.Contains(e.Message, text) {
				return nil
			}
		}
		return fmt.Errorf("no %s event containing %q in %+v", args[0], text, p.Events)
	case "told":
		if len(args) != 1 {
			return fmt.Errorf("usage: expect told <point> | none")
		}
		var told []string
		for _, c := range p.Hooks {
			told = append(told, string(c.Point))
		}
		if got := strings.Join(told, ","); (none && got != "") || (!none && got != args[0]) {
			return fmt.Errorf("told %q, want %s", got, args[0])
		}
	case "asking":
		call, ok := DueHooks(s, w.now)
		if none && ok {
			return fmt.Errorf("asking %s (%s), want none", call.Point, call.Key)
		}
		if !none && (!ok || string(call.Point) != args[0]) {
			return fmt.Errorf("asking %v %q, want %s", ok, call.Point, args[0])
		}
	case "awaiting":
		if len(args) != 1 || (args[0] != "yes" && args[0] != "no") {
			return fmt.Errorf("usage: expect awaiting yes|no")
		}
		if want := args[0] == "yes"; s.AwaitingPromote != want {
			return fmt.Errorf("AwaitingPromote is %v (phase %s: %s), want %v", s.AwaitingPromote, phaseName(s.Phase), s.Message, want)
		}
	case "message":
		if text := strings.Join(args, " "); !strings.Contains(s.Message, text) {
			return fmt.Errorf("message is %q, want it to contain %q", s.Message, text)
		}
	case "live":
		got := map[uint64]int{}
		for _, in := range w.instances {
			got[in.Release]++
		}
		want := map[uint64]int{}
		for _, a := range args {
			k, v, _ := strings.Cut(a, "=")
			rel, err := parseRelease(k)
			if err != nil {
				return err
			}
			if want[rel], err = strconv.Atoi(v); err != nil {
				return err
			}
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("live instances %s, want %s", formatWeights(got), formatWeights(want))
		}
	default:
		return fmt.Errorf("unknown expectation %q", what)
	}
	return nil
}

// checkStrays is the contract of a superseding rollout: the instances a
// superseded rollout left (of releases other than From and To, and the ones
// it had drained, Spec.Draining) serve until
// the edges acknowledge a generation without them, and while any does the
// rollout places nothing: its first batch beside them would have more than
// count + max_parallel instances serving. For a rolling update, the
// instances that exist after a Step that places, the strays still routed
// included, stay within the update's ceiling. A stray whose check does not
// pass is routed by no edge.
func (w *world) checkStrays(s State, plan Plan) error {
	if err := w.checkUnowned(s, plan); err != nil {
		return err
	}
	placedTo := 0
	for _, p := range plan.Place {
		if p.Release == s.To {
			placedTo += p.Count
		}
	}
	// Checked for the first batch (a stray not passing then, which comes
	// back to passing later, does not hold the later ones) and for every
	// batch of a restore.
	if len(plan.Place) == 0 || s.Stage != StageRestore && placedTo < s.Ordered[s.To] {
		return nil
	}
	var strays []string
	for id, in := range w.instances {
		stray := in.Release != s.From && in.Release != s.To ||
			slices.ContainsFunc(s.PendingStops, func(p PendingStop) bool { return p.ID == id && p.Stray })
		if stray && in.Health == HealthPassing && !w.drainAcked(id) {
			strays = append(strays, id)
		}
	}
	if len(strays) > 0 {
		slices.Sort(strays)
		return fmt.Errorf("placed %v while %s of a superseded rollout still serve (not drained, or the edges have not acknowledged it)", plan.Place, strings.Join(strays, " "))
	}
	return nil
}

// checkUnowned is the contract for unowned instances that may serve
// (passing): a Step that places while any does keeps a rolling update
// bounded by max_surge within count + max_surge with them counted (the
// instances of its two releases that exist, as in checkBounds, plus
// them), and any other rollout places nothing beside them.
func (w *world) checkUnowned(s State, plan Plan) error {
	var serving []string
	for id, in := range w.unowned {
		if in.Health == HealthPassing {
			serving = append(serving, id)
		}
	}
	if len(plan.Place) == 0 || len(serving) == 0 {
		return nil
	}
	slices.Sort(serving)
	if s.Config.Strategy == deployv1.Strategy_STRATEGY_ROLLING && s.Config.surgeMode() && s.Stage == StageDeploy && s.From != 0 {
		total := len(serving)
		for _, in := range w.instances {
			if in.Release != s.From && in.Release != s.To {
				continue
			}
			if slices.ContainsFunc(s.PendingStops, func(p PendingStop) bool { return p.ID == in.ID && p.Stray }) {
				continue
			}
			total++
		}
		if surge, _ := s.Config.Bounds(s.Count); total > s.Count+surge {
			return fmt.Errorf("placed %v: %d instances exist with the unowned %s serving, more than %d + max_surge %d",
				plan.Place, total, strings.Join(serving, " "), s.Count, surge)
		}
		return nil
	}
	return fmt.Errorf("placed %v while the unowned %s may still serve", plan.Place, strings.Join(serving, " "))
}

// checkBounds is the contract of a rolling update: after every commit, at
// most count+max_surge instances of the two releases exist (max_parallel
// batches: the larger of count and the old count, + max_parallel) (ordered,
// serving, or drained and not stopped yet), and while every old instance
// passes its check (and none was lost, and no new one failed or
// restarted) at least count-max_unavailable passing instances stay
// routed (not drained). The ceiling applies when the update starts at or
// below it, the floor when it starts from at least count old instances.
func (w *world) checkBounds(s State) error {
	if s.Config.Strategy != deployv1.Strategy_STRATEGY_ROLLING || s.From == 0 || s.Stage != StageDeploy && s.Phase != phaseSucceeded {
		return nil
	}
	surge, unavailable := s.Config.Bounds(s.Count)
	total, routed, oldOK := 0, 0, true
	for _, in := range w.instances {
		if in.Release != s.From && in.Release != s.To {
			continue
		}
		if slices.ContainsFunc(s.PendingStops, func(p PendingStop) bool { return p.ID == in.ID && p.Stray }) {
			continue // a superseded rollout's: checkStrays
		}
		total++
		if (in.Release == s.From && in.Health != HealthPassing) || in.Health == HealthCritical || in.Health == HealthDead {
			oldOK = false
		}
		drained := slices.ContainsFunc(s.PendingStops, func(p PendingStop) bool { return p.ID == in.ID })
		if in.Health == HealthPassing && !drained {
			routed++
		}
	}
	old := 0
	for _, in := range w.instances {
		if in.Release == s.From && !slices.ContainsFunc(s.PendingStops, func(p PendingStop) bool { return p.ID == in.ID && p.Stray }) {
			old++
		}
	}
	if old+s.Stopped[s.From] < s.FromCount {
		oldOK = false // an old instance was lost
	}
	for _, id := range s.Healthy {
		if in, ok := w.instances[id]; !ok || in.Health != HealthPassing {
			oldOK = false // a new instance was lost or restarted
		}
	}
	if s.FromCount < s.Count {
		oldOK = false // a scale-up starts below the floor
	}
	ceiling := s.Count
	if !s.Config.surgeMode() {
		ceiling = max(s.Count, s.FromCount) // max_parallel batches place first
	}
	if total > ceiling+surge && s.FromCount <= ceiling+surge {
		return fmt.Errorf("%d instances exist, more than %d + max_surge %d", total, ceiling, surge)
	}
	// Old instances drained while failing their check served nothing.
	sick := 0
	for id := range w.sickDrained {
		if strings.HasPrefix(id, fmt.Sprintf("v%d-", s.From)) {
			sick++
		}
	}
	if oldOK && routed < s.Count-unavailable-sick {
		return fmt.Errorf("%d passing instances routed, fewer than count %d - max_unavailable %d - %d drained failing", routed, s.Count, unavailable, sick)
	}
	return nil
}
