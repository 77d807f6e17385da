package state_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/state"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// stepCmd builds a rollout step entry; place items are "id@node"; gen > 0
// sets an intent of that generation with 100% to release 1.
func stepCmd(svc, rollout string, place, drain, stop []string, gen uint64) *statev1.Command {
	op := &statev1.RolloutStepOp{Service: svc, RolloutId: rollout, Drain: drain, Stop: stop,
		Phase: deployv1.RolloutState_ROLLOUT_STATE_RUNNING, Step: 1, Message: "step",
		Weights: map[string]int32{"1": 100}, Healthy: map[string]int32{"1": int32(len(place))},
		Events: []*statev1.StepEvent{{Kind: "placed", Message: "placed"}}}
	if rollout != "" {
		op.Machine = []byte(`{"Service":"` + svc + `"}`)
	}
	for _, p := range place {
		id, node, _ := strings.Cut(p, "@")
		op.Place = append(op.Place, &agentv1.Allocation{Id: id, NodeId: node, Service: svc, Release: 1, Track: "stable"})
	}
	if gen > 0 {
		op.Intent = &edgev1.TrafficIntent{Service: svc, Generation: gen, Weights: map[string]int32{"1": 100}}
	}
	return &statev1.Command{Op: &statev1.Command_RolloutStep{RolloutStep: op}}
}

func TestRolloutStepPlacesDrainsStops(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false)))
	res := apply(t, f, l.add(stepCmd("web", "web-1", []string{"a@n1", "b@n2", "c@n1"}, nil, nil, 1))).(state.StepResult)
	if res.Index != 2 || res.Rollout.GetState() != deployv1.RolloutState_ROLLOUT_STATE_RUNNING || res.Rollout.GetStep() != 1 {
		t.Fatalf("step result = %+v", res)
	}
	if got := f.Allocations("n1"); len(got) != 2 || got[0].GetId() != "a" || got[1].GetId() != "c" ||
		got[0].GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_RUNNING {
		t.Fatalf("n1 allocations = %v", got)
	}
	all := f.AllAllocations()
	if len(all) != 3 || all[0].CreatedAt.AsTime() != t0.Add(2e9) {
		t.Fatalf("AllAllocations = %v", all)
	}
	if in := f.Intent("web"); in.GetGeneration() != 1 || in.GetWeights()["1"] != 100 {
		t.Fatalf("intent = %v", in)
	}
	if m, ok := f.Machine("web-1"); !ok || !strings.Contains(string(m), "web") {
		t.Fatalf("machine = %q, %v", m, ok)
	}
	ev, _ := f.EventsAfter("web-1", 0)
	last := ev.Events[len(ev.Events)-1]
	if last.GetKind() != "placed" || last.GetHealthy()["1"] != 3 || last.GetWeights()["1"] != 100 {
		t.Fatalf("last event = %v", last)
	}

	// Drain marks desired STOPPED; stop removes.
	apply(t, f, l.add(stepCmd("web", "web-1", nil, []string{"a"}, []string{"b"}, 2)))
	if got := f.Allocations("n1"); got[0].GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED || got[1].GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_RUNNING {
		t.Fatalf("n1 after drain = %v", got)
	}
	if got := f.Allocations("n2"); len(got) != 0 {
		t.Fatalf("n2 after stop = %v", got)
	}

	// A verdict makes the release stable and is audited.
	cmd := stepCmd("web", "web-1", nil, nil, nil, 0)
	cmd.GetRolloutStep().Phase = deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED
	apply(t, f, l.add(cmd))
	svc, _ := f.Service("web")
	if svc.GetStableRelease() != 1 {
		t.Fatalf("stable = %d", svc.GetStableRelease())
	}
	_, audit, _ := f.Releases("web", 0)
	if audit[0].GetActor() != state.EngineActor || !strings.Contains(audit[0].GetAction(), "succeeded") {
		t.Fatalf("audit = %v", audit[0])
	}
}

func TestRolloutStepRejectsBadEntriesWithoutPartialState(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false)))
	apply(t, f, l.add(stepCmd("web", "web-1", []string{"a@n1"}, nil, nil, 5)))
	before, _ := f.MarshalSnapshot()
	for name, c := range map[string]*statev1.Command{
		"duplicate id":     stepCmd("web", "web-1", []string{"b@n1", "a@n2"}, nil, nil, 6),
		"stale generation": stepCmd("web", "web-1", []string{"b@n1"}, nil, nil, 5),
		"unknown rollout":  stepCmd("web", "web-9", []string{"b@n1"}, nil, nil, 0),
		"no node":          stepCmd("web", "web-1", []string{"b@"}, nil, nil, 0),
		"no service":       stepCmd("", "", []string{"b@n1"}, nil, nil, 0),
		"other service":    stepCmd("api", "web-1", nil, nil, nil, 0),
		"command not issued": func() *statev1.Command {
			c := stepCmd("web", "web-1", nil, nil, nil, 0)
			c.GetRolloutStep().LastCommand = 1
			return c
		}(),
	} {
		err := applyErr(f, l.add(c))
		if !errors.Is(err, state.ErrInvalid) && !errors.Is(err, state.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrInvalid or ErrNotFound", name, err)
		}
		after, _ := f.MarshalSnapshot()
		// Only the last index moves.
		if len(after) != len(before) {
			t.Errorf("%s: state changed", name)
		}
	}
	if got := f.Allocations("n1"); len(got) != 1 {
		t.Fatalf("allocations = %v", got)
	}
}

func TestSupersededRolloutKeepsItsState(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false)))
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "r2", true)))
	cmd := stepCmd("web", "web-1", nil, nil, nil, 0)
	cmd.GetRolloutStep().Phase = deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED
	apply(t, f, l.add(cmd))
	ro, _ := f.Rollout("web-1")
	if ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED {
		t.Fatalf("state = %v", ro.GetState())
	}
}

func TestVersionOneEntriesStillApply(t *testing.T) {
	l := &log{tb: t}
	e := l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false))
	cmd := &statev1.Command{}
	if err := proto.Unmarshal(e.Data, cmd); err != nil {
		t.Fatal(err)
	}
	cmd.Version = 1 // written by a coordinator before the engine existed
	b, err := state.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	e.Data = b
	f := state.New()
	if _, ok := apply(t, f, e).(state.DeployResult); !ok {
		t.Fatal("version 1 deploy entry not applied")
	}
}

// TestFinalRolloutIsNoLongerActive: every final verdict the engine commits
// clears the service's active rollout (and only when it is that rollout).
func TestFinalRolloutIsNoLongerActive(t *testing.T) {
	for _, phase := range []deployv1.RolloutState{
		deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED,
		deployv1.RolloutState_ROLLOUT_STATE_FAILED,
		deployv1.RolloutState_ROLLOUT_STATE_REVERTED,
		deployv1.RolloutState_ROLLOUT_STATE_ABORTED,
	} {
		t.Run(phase.String(), func(t *testing.T) {
			l := &log{tb: t}
			f := state.New()
			apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false)))
			apply(t, f, l.add(stepCmd("web", "web-1", []string{"a@n1"}, nil, nil, 1)))
			if svc, _ := f.Service("web"); svc.GetActiveRollout() != "web-1" {
				t.Fatalf("running: active rollout = %q, want web-1", svc.GetActiveRollout())
			}
			if phase == deployv1.RolloutState_ROLLOUT_STATE_ABORTED {
				apply(t, f, l.add(operator("web-1", deployv1.CommandKind_COMMAND_KIND_ABORT)))
			}
			cmd := stepCmd("web", "web-1", nil, nil, nil, 0)
			cmd.GetRolloutStep().Phase = phase
			apply(t, f, l.add(cmd))
			svc, _ := f.Service("web")
			if svc.GetActiveRollout() != "" {
				t.Fatalf("after %v: active rollout = %q, want none", phase, svc.GetActiveRollout())
			}
			if want := t0.Add(time.Duration(len(l.entries)) * time.Second); !svc.GetUpdatedAt().AsTime().Equal(want) {
				t.Errorf("updated_at = %v, not moved by the verdict", svc.GetUpdatedAt().AsTime())
			}
			// A snapshot round trip keeps it cleared, and a new deploy
			// needs no supersede.
			b, _ := f.MarshalSnapshot()
			g := state.New()
			if err := g.RestoreBytes(b); err != nil {
				t.Fatal(err)
			}
			if svc, _ := g.Service("web"); svc.GetActiveRollout() != "" {
				t.Fatalf("restored: active rollout = %q", svc.GetActiveRollout())
			}
			res := apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "r2", false))).(state.DeployResult)
			if svc, _ := f.Service("web"); svc.GetActiveRollout() != res.Rollout.GetId() {
				t.Fatalf("after a new deploy: active rollout = %q, want %s", svc.GetActiveRollout(), res.Rollout.GetId())
			}
		})
	}
}

// TestSupersededVerdictKeepsTheNewActiveRollout: the machine of a superseded
// rollout catching up must not clear the rollout that replaced it.
func TestSupersededVerdictKeepsTheNewActiveRollout(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false)))
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "r2", true)))
	cmd := stepCmd("web", "web-1", nil, nil, nil, 0)
	cmd.GetRolloutStep().Phase = deployv1.RolloutState_ROLLOUT_STATE_REVERTED
	apply(t, f, l.add(cmd))
	if svc, _ := f.Service("web"); svc.GetActiveRollout() != "web-2" {
		t.Fatalf("active rollout = %q, want web-2", svc.GetActiveRollout())
	}
}

// TestAwaitingPromoteRecorded: the step entry's awaiting_promote reaches the
// rollout and the events committed with it, and a supersede or a final
// verdict clears it.
func TestAwaitingPromoteRecorded(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false)))
	wait := stepCmd("web", "web-1", nil, nil, nil, 0)
	wait.GetRolloutStep().Phase = deployv1.RolloutState_ROLLOUT_STATE_PAUSED
	wait.GetRolloutStep().AwaitingPromote = true
	wait.GetRolloutStep().Events = []*statev1.StepEvent{{Kind: "paused", Message: "v1 in preview"}}
	res := apply(t, f, l.add(wait)).(state.StepResult)
	if !res.Rollout.GetAwaitingPromote() {
		t.Fatal("rollout not awaiting promote after a step that waits")
	}
	ev, _ := f.EventsAfter("web-1", 0)
	last := ev.Events[len(ev.Events)-1]
	if last.GetKind() != "paused" || !last.GetAwaitingPromote() || ev.Events[0].GetAwaitingPromote() {
		t.Fatalf("events = %v, want only the paused one awaiting promote", ev.Events)
	}
	// The operator's command is recorded while the rollout still waits.
	apply(t, f, l.add(operator("web-1", deployv1.CommandKind_COMMAND_KIND_PROMOTE)))
	ev, _ = f.EventsAfter("web-1", last.GetIndex())
	if len(ev.Events) != 1 || !ev.Events[0].GetAwaitingPromote() {
		t.Fatalf("command events = %v, want one still awaiting promote", ev.Events)
	}
	// The machine's next step leaves the wait.
	apply(t, f, l.add(stepCmd("web", "web-1", nil, nil, nil, 0)))
	if ro, _ := f.Rollout("web-1"); ro.GetAwaitingPromote() {
		t.Fatal("rollout still awaiting promote after a running step")
	}
	// A supersede clears it at once.
	apply(t, f, l.add(wait))
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "r2", true)))
	ro, _ := f.Rollout("web-1")
	ev, _ = f.EventsAfter("web-1", 0)
	if ro.GetAwaitingPromote() || ev.Events[len(ev.Events)-1].GetAwaitingPromote() {
		t.Fatalf("superseded rollout still awaiting promote: %v", ro)
	}
	// A final verdict never awaits promote.
	final := stepCmd("web", "web-2", nil, nil, nil, 0)
	final.GetRolloutStep().Phase = deployv1.RolloutState_ROLLOUT_STATE_ABORTED
	final.GetRolloutStep().AwaitingPromote = true
	if res := apply(t, f, l.add(final)).(state.StepResult); res.Rollout.GetAwaitingPromote() {
		t.Fatal("aborted rollout awaiting promote")
	}
}

// TestReplacementLinksOldAllocation: a step may place an allocation that
// replaces one on a draining node. The link survives a snapshot; draining
// or stopping the replacement takes the old one with it; a link to an
// unknown allocation, or from one the step does not place, is refused
// and changes nothing.
func TestReplacementLinksOldAllocation(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false)))
	apply(t, f, l.add(stepCmd("web", "", []string{"old@n2"}, nil, nil, 0)))

	bad := stepCmd("web", "", []string{"new@n1"}, nil, nil, 0)
	bad.GetRolloutStep().Replaces = map[string]string{"new": "nope"}
	if err := applyErr(f, l.add(bad)); !errors.Is(err, state.ErrInvalid) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("replacing an unknown allocation: %v, want ErrInvalid naming it", err)
	}
	bad = stepCmd("web", "", []string{"new@n1"}, nil, nil, 0)
	bad.GetRolloutStep().Replaces = map[string]string{"other": "old"}
	if err := applyErr(f, l.add(bad)); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("a link from an allocation not placed: %v, want ErrInvalid", err)
	}
	if got := f.AllAllocations(); len(got) != 1 {
		t.Fatalf("refused steps changed allocations: %v", got)
	}

	ok := stepCmd("web", "", []string{"new@n1"}, nil, nil, 0)
	ok.GetRolloutStep().Replaces = map[string]string{"new": "old"}
	apply(t, f, l.add(ok))
	b, err := f.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := state.New()
	if err := g.RestoreBytes(b); err != nil {
		t.Fatal(err)
	}
	for name, fsm := range map[string]*state.FSM{"applied": f, "restored": g} {
		all := fsm.AllAllocations()
		if len(all) != 2 || all[0].Allocation.GetId() != "new" || all[0].Replaces != "old" || all[1].Replaces != "" {
			t.Fatalf("%s: allocations %v, want new replacing old", name, all)
		}
	}

	// Draining the replacement drains the old one; stopping it stops both
	// and drops the link.
	apply(t, f, l.add(stepCmd("web", "", nil, []string{"new"}, nil, 0)))
	for _, sa := range f.AllAllocations() {
		if sa.Allocation.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED {
			t.Fatalf("%s still wanted running after its replacement was drained", sa.Allocation.GetId())
		}
	}
	apply(t, f, l.add(stepCmd("web", "", nil, nil, []string{"new"}, 0)))
	if got := f.AllAllocations(); len(got) != 0 {
		t.Fatalf("after stopping the replacement: %v, want the old one gone too", got)
	}
}

// TestSupersedingDeployStartsFromTheServingRelease: a rolling update that
// drained every instance of the stable release and is superseded hands the
// new rollout the release that serves; entries of an older version replay
// as they did (from the stable release).
func TestSupersedingDeployStartsFromTheServingRelease(t *testing.T) {
	rel := func(cmd *statev1.Command, release uint64) *statev1.Command {
		op := cmd.GetRolloutStep()
		for _, a := range op.Place {
			a.Release = release
		}
		if op.Intent != nil {
			op.Intent.Weights = map[string]int32{state.WeightKey(release): 100}
		}
		return cmd
	}
	for _, c := range []struct {
		version  uint32
		wantFrom uint64
	}{{state.CurrentVersion, 2}, {3, 1}} {
		l := &log{tb: t}
		f := state.New()
		add := func(cmd *statev1.Command) any {
			e := l.add(cmd)
			cmd.Version = c.version
			b, err := state.EncodeCommand(cmd)
			if err != nil {
				t.Fatal(err)
			}
			e.Data = b
			return apply(t, f, e)
		}
		add(deploy(spec("web", "slipway/demo:v1"), "r1", false))
		add(stepCmd("web", "web-1", []string{"a@n1", "b@n2"}, nil, nil, 1))
		done := stepCmd("web", "web-1", nil, nil, nil, 0)
		done.GetRolloutStep().Phase = deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED
		add(done)
		// Release 2 rolls out, count 4: its first batch drains both
		// instances of release 1 and takes all traffic.
		add(deploy(spec("web", "slipway/demo:v2"), "r2", false))
		add(rel(stepCmd("web", "web-2", []string{"c@n1", "d@n2"}, nil, nil, 2), 2))
		add(rel(stepCmd("web", "web-2", nil, []string{"a", "b"}, nil, 3), 2))
		add(rel(stepCmd("web", "web-2", []string{"e@n1", "f@n2"}, nil, []string{"a", "b"}, 0), 2))
		res := add(deploy(spec("web", "slipway/demo:v3"), "r3", true)).(state.DeployResult)
		if got := res.Rollout.GetFromRelease(); got != c.wantFrom {
			t.Errorf("version %d: rollout %s from release %d, want %d", c.version, res.Rollout.GetId(), got, c.wantFrom)
		}
		if svc, _ := f.Service("web"); svc.GetStableRelease() != 1 {
			t.Errorf("version %d: stable release = %d, want 1 (release 2 never succeeded)", c.version, svc.GetStableRelease())
		}
	}
}
