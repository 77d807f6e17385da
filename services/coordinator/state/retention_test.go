package state_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"slipway.dev/coordinator/state"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// retentionLog deploys web n times (each superseding the last, with one
// step entry per rollout) and api once, and drains a node: many events and
// audit entries over three audit groups (web, api and none).
func retentionLog(t *testing.T, n int) *log {
	l := &log{tb: t}
	l.add(deploy(spec("api", "slipway/demo:v1"), "api-r1", false))
	l.add(&statev1.Command{Op: &statev1.Command_UpsertNode{UpsertNode: &statev1.UpsertNodeOp{Node: &clusterv1.Node{Id: "n1"}}}})
	for i := 1; i <= n; i++ {
		l.add(deploy(spec("web", fmt.Sprintf("slipway/demo:v%d", i)), fmt.Sprintf("web-r%d", i), true))
		l.add(stepCmd("web", fmt.Sprintf("web-%d", i), []string{fmt.Sprintf("w%d@n1", i)}, nil, nil, uint64(i)))
		l.add(operator(fmt.Sprintf("web-%d", i), deployv1.CommandKind_COMMAND_KIND_PAUSE))
	}
	l.add(&statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{NodeId: "n1", Enable: true, By: "ops"}}})
	return l
}

func applyAll(t *testing.T, f *state.FSM, entries []*raft.Log) {
	t.Helper()
	for _, e := range entries {
		f.Apply(e)
	}
}

func audit(t *testing.T, f *state.FSM, service string) []*deployv1.AuditEvent {
	t.Helper()
	_, a, err := f.Releases(service, 0)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func indexes[T interface{ GetIndex() uint64 }](xs []T) []uint64 {
	out := make([]uint64, 0, len(xs))
	for _, x := range xs {
		out = append(out, x.GetIndex())
	}
	return out
}

func TestAuditKeepsNewestEntriesPerService(t *testing.T) {
	l := retentionLog(t, 4)
	full := state.New()
	applyAll(t, full, l.entries)
	f := state.New(state.WithRetention(state.Retention{Audit: 3}))
	applyAll(t, f, l.entries)

	// web has 8 entries (a deploy and a pause per rollout); the newest 3
	// are kept, in the same order, unchanged.
	all := audit(t, full, "web")
	if len(all) != 8 {
		t.Fatalf("untrimmed web audit has %d entries, want 8", len(all))
	}
	if d := cmp.Diff(all[:3], audit(t, f, "web"), protocmp.Transform()); d != "" {
		t.Errorf("trimmed web audit is not the newest 3 (-want +got):\n%s", d)
	}
	// Other services' entries are not pushed out by web's.
	if got := audit(t, f, "api"); len(got) != 1 || got[0].GetAction() != "deploy" {
		t.Errorf("api audit = %v, want its one deploy", got)
	}
	// The drain (no service) is its own group and is kept too.
	b, _ := f.MarshalSnapshot()
	snap := &statev1.Snapshot{}
	if err := proto.Unmarshal(b, snap); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range snap.GetAudit() {
		actions = append(actions, a.GetService()+":"+a.GetAction())
	}
	want := []string{"api:deploy", "web:pause", "web:deploy", "web:pause", ":drain"}
	if d := cmp.Diff(want, actions); d != "" {
		t.Errorf("stored audit (-want +got):\n%s", d)
	}
}

func TestEventsKeepNewestRollouts(t *testing.T) {
	l := retentionLog(t, 5)
	full := state.New()
	applyAll(t, full, l.entries)
	f := state.New(state.WithRetention(state.Retention{EventRollouts: 2}))
	applyAll(t, f, l.entries)

	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("web-%d", i)
		got, err := f.EventsAfter(id, 0)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		want, _ := full.EventsAfter(id, 0)
		if len(want.Events) < 3 {
			t.Fatalf("%s: untrimmed FSM has only %d events", id, len(want.Events))
		}
		if i <= 3 {
			if len(got.Events) != 0 {
				t.Errorf("%s (older than the newest 2, final): %d events kept, want none", id, len(got.Events))
			}
			if !got.Final {
				t.Errorf("%s: not final", id)
			}
		} else if d := cmp.Diff(want.Events, got.Events, protocmp.Transform()); d != "" {
			// Kept events keep their index (positions were renumbered
			// right) and content.
			t.Errorf("%s: kept events differ from the untrimmed ones (-want +got):\n%s", id, d)
		}
		// The rollout itself, its history and every release stay.
		if d := cmp.Diff(want.Rollout, got.Rollout, protocmp.Transform()); d != "" {
			t.Errorf("%s: rollout differs (-want +got):\n%s", id, d)
		}
	}
	rels, _, _ := f.Releases("web", 0)
	if len(rels) != 5 || len(f.Rollouts("web", false, 0)) != 5 {
		t.Errorf("kept %d releases and %d rollouts of web, want 5 and 5", len(rels), len(f.Rollouts("web", false, 0)))
	}
	// api's only rollout is not affected by web's deploys.
	if ev, _ := f.EventsAfter("api-1", 0); len(ev.Events) != 1 {
		t.Errorf("api-1 has %d events, want 1", len(ev.Events))
	}
	// Resuming by index works on kept events; an index inside a trimmed
	// range returns what is kept.
	all, _ := f.EventsAfter("web-5", 0)
	mid := all.Events[0].GetIndex()
	after, _ := f.EventsAfter("web-5", mid)
	if d := cmp.Diff(indexes(all.Events[1:]), indexes(after.Events)); d != "" {
		t.Errorf("resume after %d (-want +got):\n%s", mid, d)
	}
	if got, _ := f.EventsAfter("web-4", 1); len(got.Events) == 0 {
		t.Errorf("web-4 after index 1 (inside the trimmed range) returned nothing")
	}

	// A late event of a trimmed rollout (its machine catching up with the
	// supersede) is not stored, and the next event index is unaffected.
	late := stepCmd("web", "web-2", nil, nil, nil, 0)
	late.GetRolloutStep().Phase = deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED
	e := l.add(late)
	apply(t, f, e)
	if ev, _ := f.EventsAfter("web-2", 0); len(ev.Events) != 0 {
		t.Errorf("late event of trimmed web-2 stored: %v", ev.Events)
	}
	last := all.Events[len(all.Events)-1].GetIndex()
	apply(t, f, l.add(operator("web-5", deployv1.CommandKind_COMMAND_KIND_RESUME)))
	if ev, _ := f.EventsAfter("web-5", last); len(ev.Events) != 1 || ev.Events[0].GetIndex() != last+1 {
		t.Errorf("next event = %v, want one with index %d", ev.Events, last+1)
	}
}

func TestActiveRolloutEventsAreNeverTrimmed(t *testing.T) {
	l := &log{tb: t}
	f := state.New(state.WithRetention(state.Retention{EventRollouts: 1}))
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false)))
	for i := 1; i <= 5; i++ {
		apply(t, f, l.add(stepCmd("web", "web-1", []string{fmt.Sprintf("a%d@n1", i)}, nil, nil, uint64(i))))
		// Deploys of another service, each trimming its own older
		// rollouts, leave web's active rollout alone.
		apply(t, f, l.add(deploy(spec("api", fmt.Sprintf("slipway/demo:v%d", i)), fmt.Sprintf("api-r%d", i), true)))
	}
	if ev, _ := f.EventsAfter("web-1", 0); len(ev.Events) != 6 || ev.Final {
		t.Fatalf("active web-1 has %d events (final %v), want all 6", len(ev.Events), ev.Final)
	}
	if ev, _ := f.EventsAfter("api-4", 0); len(ev.Events) != 0 {
		t.Errorf("api-4 (superseded, older than the newest 1) kept %d events", len(ev.Events))
	}
	// A new deploy of web supersedes web-1: now final and older than the
	// newest rollout, its events go, and the new one's stay.
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "r2", true)))
	if ev, _ := f.EventsAfter("web-1", 0); len(ev.Events) != 0 {
		t.Errorf("superseded web-1 kept %d events", len(ev.Events))
	}
	if ev, _ := f.EventsAfter("web-2", 0); len(ev.Events) != 1 || ev.Events[0].GetKind() != "created" {
		t.Errorf("web-2 events = %v, want its created event", ev.Events)
	}
}

func TestRetentionDeterministicAndSnapshotRoundTrip(t *testing.T) {
	l := retentionLog(t, 6)
	opt := state.WithRetention(state.Retention{EventRollouts: 2, Audit: 3})
	a, b := state.New(opt), state.New(opt)
	applyAll(t, a, l.entries)
	applyAll(t, b, l.entries)
	sa, _ := a.MarshalSnapshot()
	sb, _ := b.MarshalSnapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatal("two FSMs fed the same log give different snapshots")
	}

	// A replica restored from a snapshot taken mid-log, then fed the rest,
	// ends identical to one that applied the whole log.
	half := len(l.entries) / 2
	c := state.New(opt)
	applyAll(t, c, l.entries[:half])
	mid, _ := c.MarshalSnapshot()
	d := state.New(opt)
	if err := d.RestoreBytes(mid); err != nil {
		t.Fatal(err)
	}
	if again, _ := d.MarshalSnapshot(); !bytes.Equal(mid, again) {
		t.Fatal("restore changed the trimmed state")
	}
	applyAll(t, d, l.entries[half:])
	if sd, _ := d.MarshalSnapshot(); !bytes.Equal(sa, sd) {
		t.Fatal("restored-then-applied replica differs from the one that applied the whole log")
	}

	// The snapshot records the last event index issued.
	snap := &statev1.Snapshot{}
	if err := proto.Unmarshal(sa, snap); err != nil {
		t.Fatal(err)
	}
	evs := snap.GetEvents()
	if last := evs[len(evs)-1].GetIndex(); snap.GetLastEventIndex() != last {
		t.Errorf("last_event_index = %d, want %d", snap.GetLastEventIndex(), last)
	}
}

func TestRestoreTrimsNothingUntilTheNextAppend(t *testing.T) {
	l := retentionLog(t, 4)
	big := state.New()
	applyAll(t, big, l.entries)
	b, _ := big.MarshalSnapshot()
	// A coordinator restarted with smaller limits restores everything.
	small := state.New(state.WithRetention(state.Retention{EventRollouts: 1, Audit: 2}))
	if err := small.RestoreBytes(b); err != nil {
		t.Fatal(err)
	}
	if got := len(audit(t, small, "web")); got != 8 {
		t.Fatalf("restored web audit has %d entries, want all 8", got)
	}
	if ev, _ := small.EventsAfter("web-1", 0); len(ev.Events) == 0 {
		t.Fatal("restore trimmed web-1's events")
	}
	// The next entries of web apply its limits.
	apply(t, small, l.add(deploy(spec("web", "slipway/demo:v9"), "r9", true)))
	if got := len(audit(t, small, "web")); got != 2 {
		t.Errorf("web audit after the next deploy has %d entries, want 2", got)
	}
	for i := 1; i <= 4; i++ {
		if ev, _ := small.EventsAfter(fmt.Sprintf("web-%d", i), 0); len(ev.Events) != 0 {
			t.Errorf("web-%d kept %d events after the next deploy", i, len(ev.Events))
		}
	}
	// A snapshot written before last_event_index existed continues after
	// its last event.
	old := &statev1.Snapshot{}
	if err := proto.Unmarshal(b, old); err != nil {
		t.Fatal(err)
	}
	old.LastEventIndex = 0
	ob, _ := proto.Marshal(old)
	g := state.New()
	if err := g.RestoreBytes(ob); err != nil {
		t.Fatal(err)
	}
	last := old.GetEvents()[len(old.GetEvents())-1].GetIndex()
	res := apply(t, g, l.add(deploy(spec("web", "slipway/demo:v10"), "r10", true))).(state.DeployResult)
	if ev, _ := g.EventsAfter(res.Rollout.GetId(), 0); len(ev.Events) != 1 || ev.Events[0].GetIndex() <= last {
		t.Errorf("events after restoring an old snapshot = %v, want one above %d", ev.Events, last)
	}
}
