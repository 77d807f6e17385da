package migrate

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"slipway.dev/coordinator/placement"
	"slipway.dev/coordinator/rollout"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// The scripts in testdata/*.txt drive Decide the way the leader's pass
// does: they build a cluster, lose or drain nodes, let time pass, decide
// and commit, and assert on the plan. One command per line; '#' starts a
// comment. After every decide the runner checks the contracts: Decide is
// deterministic, placed ids are new and unique, nothing lands on a lost or
// draining node, every Replaces link names an allocation placed by the
// same move, and every stop names a stored allocation.
//
// World commands:
//
//	node <id> [cpu=N] [mem=N]              a live node (default 4000 MHz, 4096 MiB)
//	alloc <id> <service> vN <node> [cpu=N] [mem=N] [port=N] [stopped]
//	      [replaces=<id>] [health=<starting|passing|critical|dead>]
//	lose <node>                            the node is gone past its grace period
//	drain <node>                           an operator drains the node
//	report <id> <starting|passing|critical|dead>
//	tick <duration>
//	deadline <duration>                    the drain deadline (default 5m)
//	base <n>                               the raft index decisions are based on
//	route <id>... | unroute <id>...        an edge routes the allocation (or no edge does)
//	edges                                  the edges apply the last plan's fence: nothing on
//	                                       a fenced node is routed any more
//	bound <service> <n>                    the service's serving bound (count + surge)
//	stray <service> <n>                    instances no allocation holds that still serve
//	decide                                 Decide once
//	commit                                 apply the last plan's moves to the world,
//	                                       one raft index each
//
// Assertions (on the last plan):
//
//	expect moves <n>                       expect nothing (no move, no failure)
//	expect place <service> <id> on <node> [replaces <old>]
//	expect stop <service> <ids...> | none  the move's stops, in order
//	expect event <service> <kind> <text>   the move's event message, exactly
//	expect failure <id> [text]             the allocation stays, text in its reason
//	expect fence <nodes...> | none         the plan's fenced nodes, in order
//
// The bound contract: for a bounded service, the instances that may serve
// once the plan is committed (every allocation not on a lost node, the
// routed ones on lost nodes, the strays) are at most its bound, or at most
// as many as before when it was already exceeded.
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
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := newWorld().run(f, string(raw)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRunnerRejectsUnknownCommands(t *testing.T) {
	for _, s := range []string{"fly", "expect colour blue", "node", "alloc a web v1", "tick soon", "report x passing"} {
		if err := newWorld().run("t", s); err == nil {
			t.Errorf("%q: accepted", s)
		}
	}
}

func TestRunnerFailsOnWrongExpectation(t *testing.T) {
	script := "node n1\nnode n2\nalloc a web v1 n1\nlose n1\ndecide\nexpect place web web-v1-1-0 on n1\n"
	if err := newWorld().run("t", script); err == nil {
		t.Fatal("a wrong expectation passed")
	}
}

type world struct {
	now      time.Time
	nodes    []placement.Node
	lost     map[string]bool
	draining map[string]bool
	allocs   []Alloc
	deadline time.Duration
	base     uint64
	plan     *Plan
	routed   map[string]bool
	bounds   map[string]int
	strays   map[string]int
}

func newWorld() *world {
	return &world{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), lost: map[string]bool{}, draining: map[string]bool{},
		deadline: 5 * time.Minute, base: 1, routed: map[string]bool{}, bounds: map[string]int{}, strays: map[string]int{}}
}

func (w *world) run(name, script string) error {
	sc := bufio.NewScanner(strings.NewReader(script))
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.Index(text, "#"); i >= 0 {
			text = text[:i]
		}
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		if err := w.exec(f); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", name, line, strings.TrimSpace(text), err)
		}
	}
	return sc.Err()
}

func (w *world) input() Input {
	in := Input{Now: w.now, Lost: map[string]bool{}, Draining: map[string]bool{}, DrainDeadline: w.deadline, Base: w.base,
		Routed: maps.Clone(w.routed), Bounds: maps.Clone(w.bounds), Strays: maps.Clone(w.strays)}
	for k, v := range w.lost {
		in.Lost[k] = v
	}
	for k, v := range w.draining {
		in.Draining[k] = v
	}
	for _, n := range w.nodes {
		if w.lost[n.ID] {
			continue // a lost node is not live
		}
		n.Draining = w.draining[n.ID]
		in.Cluster.NodeList = append(in.Cluster.NodeList, n)
	}
	for _, a := range w.allocs {
		in.Allocations = append(in.Allocations, a)
		in.Cluster.AllocList = append(in.Cluster.AllocList, ClusterAlloc(a.Allocation))
	}
	return in
}

func (w *world) exec(f []string) error {
	cmd, args := f[0], f[1:]
	switch cmd {
	case "node":
		if len(args) < 1 {
			return errors.New("want: node <id> [cpu=N] [mem=N]")
		}
		n := placement.Node{ID: args[0], Ready: true, CPU: 4000, MemoryMB: 4096}
		for _, kv := range args[1:] {
			k, v, _ := strings.Cut(kv, "=")
			x, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s: %w", kv, err)
			}
			switch k {
			case "cpu":
				n.CPU = x
			case "mem":
				n.MemoryMB = x
			default:
				return fmt.Errorf("unknown node option %q", kv)
			}
		}
		w.nodes = append(w.nodes, n)
		return nil
	case "alloc":
		return w.cmdAlloc(args)
	case "lose", "drain":
		if len(args) != 1 {
			return fmt.Errorf("want: %s <node>", cmd)
		}
		if cmd == "lose" {
			w.lost[args[0]] = true
		} else {
			w.draining[args[0]] = true
		}
		return nil
	case "report":
		if len(args) != 2 {
			return errors.New("want: report <id> <health>")
		}
		h, err := parseHealth(args[1])
		if err != nil {
			return err
		}
		for i := range w.allocs {
			if w.allocs[i].Allocation.GetId() == args[0] {
				w.allocs[i].Health = h
				return nil
			}
		}
		return fmt.Errorf("no allocation %q", args[0])
	case "tick", "deadline":
		if len(args) != 1 {
			return fmt.Errorf("want: %s <duration>", cmd)
		}
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return err
		}
		if cmd == "tick" {
			w.now = w.now.Add(d)
		} else {
			w.deadline = d
		}
		return nil
	case "base":
		if len(args) != 1 {
			return errors.New("want: base <n>")
		}
		n, err := strconv.ParseUint(args[0], 10, 64)
		w.base = n
		return err
	case "route", "unroute":
		if len(args) == 0 {
			return fmt.Errorf("want: %s <id>...", cmd)
		}
		for _, id := range args {
			if cmd == "route" {
				w.routed[id] = true
			} else {
				delete(w.routed, id)
			}
		}
		return nil
	case "edges":
		if w.plan == nil {
			return errors.New("edges before decide")
		}
		fenced := map[string]bool{}
		for _, n := range w.plan.Fence {
			fenced[n] = true
		}
		for _, a := range w.allocs {
			if fenced[a.Allocation.GetNodeId()] {
				delete(w.routed, a.Allocation.GetId())
			}
		}
		return nil
	case "bound", "stray":
		if len(args) != 2 {
			return fmt.Errorf("want: %s <service> <n>", cmd)
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		if cmd == "bound" {
			w.bounds[args[0]] = n
		} else {
			w.strays[args[0]] = n
		}
		return nil
	case "decide":
		return w.decide()
	case "commit":
		return w.commit()
	case "expect":
		return w.expect(args)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func parseHealth(s string) (rollout.Health, error) {
	switch s {
	case "starting":
		return rollout.HealthStarting, nil
	case "passing":
		return rollout.HealthPassing, nil
	case "critical":
		return rollout.HealthCritical, nil
	case "dead":
		return rollout.HealthDead, nil
	}
	return "", fmt.Errorf("unknown health %q", s)
}

func parseRelease(s string) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "v"), 10, 64)
	if err != nil || !strings.HasPrefix(s, "v") {
		return 0, fmt.Errorf("want a release vN, not %q", s)
	}
	return n, nil
}

func (w *world) cmdAlloc(args []string) error {
	if len(args) < 4 {
		return errors.New("want: alloc <id> <service> vN <node> [options]")
	}
	rel, err := parseRelease(args[2])
	if err != nil {
		return err
	}
	a := &agentv1.Allocation{Id: args[0], Service: args[1], Release: rel, NodeId: args[3], CpuMhz: 100, MemoryMb: 64,
		Image: "demo:" + args[2], DesiredState: agentv1.DesiredState_DESIRED_STATE_RUNNING}
	sa := Alloc{Allocation: a, CreatedAt: w.now, Health: rollout.HealthPassing}
	for _, kv := range args[4:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "stopped":
			a.DesiredState = agentv1.DesiredState_DESIRED_STATE_STOPPED
		case "replaces":
			sa.Replaces = v
		case "health":
			if sa.Health, err = parseHealth(v); err != nil {
				return err
			}
		case "cpu", "mem", "port":
			x, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s: %w", kv, err)
			}
			switch k {
			case "cpu":
				a.CpuMhz = int32(x)
			case "mem":
				a.MemoryMb = int32(x)
			default:
				a.HostPort = int32(x)
			}
		default:
			return fmt.Errorf("unknown alloc option %q", kv)
		}
	}
	w.allocs = append(w.allocs, sa)
	return nil
}

func (w *world) decide() error {
	in := w.input()
	p, err := Decide(in)
	if err != nil {
		return err
	}
	again, err := Decide(w.input())
	if err != nil || !reflect.DeepEqual(p, again) {
		return fmt.Errorf("contract: Decide is not deterministic (%v)", err)
	}
	if err := w.checkContracts(in, p); err != nil {
		return fmt.Errorf("contract: %w", err)
	}
	w.plan = &p
	return nil
}

func (w *world) checkContracts(in Input, p Plan) error {
	stored := map[string]bool{}
	for _, a := range in.Allocations {
		stored[a.Allocation.GetId()] = true
	}
	placed := map[string]bool{}
	for _, mv := range p.Moves {
		mine := map[string]bool{}
		for _, a := range mv.Place {
			switch {
			case stored[a.GetId()] || placed[a.GetId()]:
				return fmt.Errorf("id %s placed twice", a.GetId())
			case in.Lost[a.GetNodeId()] || in.Draining[a.GetNodeId()]:
				return fmt.Errorf("%s placed on lost or draining node %s", a.GetId(), a.GetNodeId())
			case a.GetService() != mv.Service:
				return fmt.Errorf("%s of %s placed in the move of %s", a.GetId(), a.GetService(), mv.Service)
			}
			placed[a.GetId()], mine[a.GetId()] = true, true
		}
		for id := range mv.Replaces {
			if !mine[id] {
				return fmt.Errorf("replaces names %s, not placed by the move of %s", id, mv.Service)
			}
		}
		for _, id := range mv.Stop {
			if !stored[id] {
				return fmt.Errorf("stop names %s, not stored", id)
			}
		}
	}
	for svc, b := range in.Bounds {
		before, after := w.serving(in, svc, nil), w.serving(in, svc, &p)
		if after > b && after > before {
			return fmt.Errorf("%s: %d instances may serve once the plan is committed, bound %d (%d before)", svc, after, b, before)
		}
	}
	return nil
}

// serving counts the instances of svc that may serve, once p is committed
// when p is not nil (placements serve; stops, and what they replace, do not).
func (w *world) serving(in Input, svc string, p *Plan) int {
	stop := map[string]bool{}
	n := in.Strays[svc]
	if p != nil {
		for _, mv := range p.Moves {
			for _, id := range mv.Stop {
				stop[id] = true
			}
			for _, a := range mv.Place {
				if a.GetService() == svc {
					n++
				}
			}
		}
	}
	for _, a := range in.Allocations {
		if a.Replaces != "" && stop[a.Allocation.GetId()] {
			stop[a.Replaces] = true // it leaves with its replacement
		}
	}
	for _, a := range in.Allocations {
		al := a.Allocation
		if al.GetService() != svc || stop[al.GetId()] {
			continue
		}
		if in.Lost[al.GetNodeId()] {
			if in.Routed[al.GetId()] {
				n++
			}
			continue
		}
		if al.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED || a.Health == rollout.HealthPassing {
			n++
		}
	}
	return n
}

// commit applies the last plan as the state machine does: one raft index a
// move, placements created now, stops removed with what they replace.
func (w *world) commit() error {
	if w.plan == nil {
		return errors.New("commit before decide")
	}
	for _, mv := range w.plan.Moves {
		stop := map[string]bool{}
		for _, id := range mv.Stop {
			stop[id] = true
		}
		for changed := true; changed; {
			changed = false
			for _, a := range w.allocs {
				if stop[a.Allocation.GetId()] && a.Replaces != "" && !stop[a.Replaces] {
					stop[a.Replaces], changed = true, true
				}
			}
		}
		kept := w.allocs[:0]
		for _, a := range w.allocs {
			if !stop[a.Allocation.GetId()] {
				if stop[a.Replaces] {
					a.Replaces = ""
				}
				kept = append(kept, a)
			}
		}
		w.allocs = kept
		for _, a := range mv.Place {
			w.allocs = append(w.allocs, Alloc{Allocation: a, Replaces: mv.Replaces[a.GetId()], CreatedAt: w.now, Health: rollout.HealthStarting})
		}
		w.base++
	}
	w.plan = nil
	return nil
}

func (w *world) move(service string) (*Move, error) {
	for i := range w.plan.Moves {
		if w.plan.Moves[i].Service == service {
			return &w.plan.Moves[i], nil
		}
	}
	return nil, fmt.Errorf("no move for %s in %s", service, w.describe())
}

func (w *world) describe() string {
	var b strings.Builder
	for _, mv := range w.plan.Moves {
		fmt.Fprintf(&b, "[%s:", mv.Service)
		for _, a := range mv.Place {
			fmt.Fprintf(&b, " place %s on %s", a.GetId(), a.GetNodeId())
			if r := mv.Replaces[a.GetId()]; r != "" {
				fmt.Fprintf(&b, " replaces %s", r)
			}
		}
		fmt.Fprintf(&b, " stop %v]", mv.Stop)
	}
	for _, f := range w.plan.Failures {
		fmt.Fprintf(&b, " [failure %s: %s]", f.Allocation, f.Reason)
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return b.String()
}

func (w *world) expect(args []string) error {
	if w.plan == nil {
		return errors.New("expect before decide")
	}
	if len(args) == 0 {
		return errors.New("expect what?")
	}
	what, args := args[0], args[1:]
	switch what {
	case "nothing":
		if len(w.plan.Moves)+len(w.plan.Failures) != 0 {
			return fmt.Errorf("plan: %s", w.describe())
		}
		return nil
	case "moves":
		if len(args) != 1 {
			return errors.New("want: expect moves <n>")
		}
		if got := strconv.Itoa(len(w.plan.Moves)); got != args[0] {
			return fmt.Errorf("%s moves: %s", got, w.describe())
		}
		return nil
	case "place":
		if len(args) != 4 && len(args) != 6 || args[2] != "on" || len(args) == 6 && args[4] != "replaces" {
			return errors.New("want: expect place <service> <id> on <node> [replaces <old>]")
		}
		mv, err := w.move(args[0])
		if err != nil {
			return err
		}
		for _, a := range mv.Place {
			if a.GetId() != args[1] {
				continue
			}
			want := ""
			if len(args) == 6 {
				want = args[5]
			}
			if a.GetNodeId() != args[3] || mv.Replaces[a.GetId()] != want {
				return fmt.Errorf("plan: %s", w.describe())
			}
			return nil
		}
		return fmt.Errorf("%s not placed: %s", args[1], w.describe())
	case "stop":
		if len(args) < 2 {
			return errors.New("want: expect stop <service> <ids...> | none")
		}
		mv, err := w.move(args[0])
		if err != nil {
			return err
		}
		want := args[1:]
		if len(want) == 1 && want[0] == "none" {
			want = nil
		}
		if !slices.Equal(mv.Stop, want) {
			return fmt.Errorf("stop %v: %s", mv.Stop, w.describe())
		}
		return nil
	case "event":
		if len(args) < 3 {
			return errors.New("want: expect event <service> <kind> <text>")
		}
		mv, err := w.move(args[0])
		if err != nil {
			return err
		}
		text := strings.Join(args[2:], " ")
		for _, ev := range mv.Events {
			if ev.Kind == args[1] {
				if ev.Message != text {
					return fmt.Errorf("event %s: %q", ev.Kind, ev.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("no %s event in %v", args[1], mv.Events)
	case "fence":
		want := args
		if len(want) == 1 && want[0] == "none" {
			want = nil
		}
		if !slices.Equal(w.plan.Fence, want) {
			return fmt.Errorf("fence %v, want %v", w.plan.Fence, want)
		}
		return nil
	case "failure":
		if len(args) < 1 {
			return errors.New("want: expect failure <id> [text]")
		}
		text := strings.Join(args[1:], " ")
		for _, f := range w.plan.Failures {
			if f.Allocation == args[0] && strings.Contains(f.Reason, text) {
				return nil
			}
		}
		return fmt.Errorf("no failure for %s with %q: %s", args[0], text, w.describe())
	}
	return fmt.Errorf("unknown expectation %q", what)
}
