package state_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/state"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// log builds raft log entries with increasing indexes and timestamps.
type log struct {
	tb      testing.TB
	entries []*raft.Log
}

func (l *log) add(cmd *statev1.Command) *raft.Log {
	l.tb.Helper()
	n := len(l.entries) + 1
	cmd.Version = state.CurrentVersion
	cmd.At = timestamppb.New(t0.Add(time.Duration(n) * time.Second))
	b, err := state.EncodeCommand(cmd)
	if err != nil {
		l.tb.Fatal(err)
	}
	e := &raft.Log{Index: uint64(n), Term: 1, Type: raft.LogCommand, Data: b}
	l.entries = append(l.entries, e)
	return e
}

func spec(name, image string) *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{Name: name, Image: image, Count: 2, Port: 8080,
		Env:    map[string]string{"A": "1", "B": "2", "C": "3"},
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY}}
}

func deploy(s *deployv1.ServiceSpec, rid string, supersede bool) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{Spec: s, RequestId: rid, Supersede: supersede, CreatedBy: "ci", Reason: "test"}}}
}

func operator(id string, kind deployv1.CommandKind) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_Operator{Operator: &statev1.OperatorOp{RolloutId: id, Kind: kind, By: "alice", Reason: "because"}}}
}

func rollback(svc string, to uint64, rid string, supersede bool) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_Rollback{Rollback: &statev1.RollbackOp{Service: svc, ToRelease: to, RequestId: rid, Supersede: supersede, By: "bob"}}}
}

// apply applies e and fails the test when the response is an error.
func apply(t *testing.T, f *state.FSM, e *raft.Log) any {
	t.Helper()
	res := f.Apply(e)
	if err, ok := res.(error); ok {
		t.Fatalf("apply entry %d: %v", e.Index, err)
	}
	return res
}

// applyErr applies e and returns the error response (nil if none).
func applyErr(f *state.FSM, e *raft.Log) error {
	err, _ := f.Apply(e).(error)
	return err
}

// scenario is a log exercising every kind of entry, failures included.
func scenario(t *testing.T) *log {
	l := &log{tb: t}
	l.add(&statev1.Command{Op: &statev1.Command_RegisterPeer{RegisterPeer: &statev1.RegisterPeerOp{Peer: &statev1.PeerAddress{Id: "c1", RaftAddress: "127.0.0.1:7401", GrpcAddress: "127.0.0.1:7400"}}}})
	l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false))
	l.add(deploy(spec("api", "slipway/demo:v1"), "r2", false))
	l.add(deploy(spec("web", "slipway/demo:v2"), "r3", false)) // refused: active
	l.add(deploy(spec("web", "slipway/demo:v2"), "r3", true))
	l.add(deploy(spec("web", "slipway/demo:v2"), "r3", true)) // replay
	l.add(operator("web-2", deployv1.CommandKind_COMMAND_KIND_PAUSE))
	l.add(operator("web-1", deployv1.CommandKind_COMMAND_KIND_PROMOTE)) // refused: final
	l.add(rollback("web", 0, "r4", true))
	l.add(&statev1.Command{Op: &statev1.Command_UpsertNode{UpsertNode: &statev1.UpsertNodeOp{Node: &clusterv1.Node{Id: "n1", Labels: map[string]string{"zone": "a", "rack": "1"}}}}})
	l.add(&statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{NodeId: "n1", Enable: true, By: "ops"}}})
	l.add(putAllocs("n1", "a2", "a1"))
	l.add(&statev1.Command{Op: &statev1.Command_Noop{Noop: &statev1.NoopOp{Payload: []byte("x")}}})
	l.add(stepCmd("api", "api-1", []string{"api-1-a@n3", "api-1-b@n4"}, nil, nil, 1))
	l.add(bootstrapCmd(tokenRecord("acc-admin", "admin-secret", "bootstrap token", aclv1.Policy_POLICY_ADMIN)))
	l.add(bootstrapCmd(tokenRecord("acc-2", "other", "again", aclv1.Policy_POLICY_ADMIN))) // refused: done
	l.add(createTokenCmd(tokenRecord("acc-ci", "ci-secret", "ci", aclv1.Policy_POLICY_DEPLOY), "acc-admin"))
	l.add(createTokenCmd(tokenRecord("acc-ro", "ro-secret", "ro", aclv1.Policy_POLICY_READ), "acc-admin"))
	l.add(revokeCmd("acc-ro", "acc-admin"))
	return l
}

func putAllocs(node string, ids ...string) *statev1.Command {
	op := &statev1.PutAllocationsOp{NodeId: node}
	for _, id := range ids {
		op.Allocations = append(op.Allocations, &agentv1.Allocation{Id: id, NodeId: node, Service: "web", Release: 1, Env: map[string]string{"X": id}})
	}
	return &statev1.Command{Op: &statev1.Command_PutAllocations{PutAllocations: op}}
}

func TestAllocationsStored(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(putAllocs("n1", "b", "a")))
	apply(t, f, l.add(putAllocs("n2", "c")))
	got := f.Allocations("n1")
	if len(got) != 2 || got[0].GetId() != "a" || got[1].GetId() != "b" {
		t.Errorf("allocations of n1 = %v, want a, b", got)
	}
	apply(t, f, l.add(putAllocs("n1")))
	if got := f.Allocations("n1"); len(got) != 0 {
		t.Errorf("allocations of n1 after clearing = %v", got)
	}
	if got := f.Allocations("n2"); len(got) != 1 {
		t.Errorf("allocations of n2 = %v, want c", got)
	}
	if err := applyErr(f, l.add(putAllocs(""))); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("allocations without node: err = %v, want ErrInvalid", err)
	}
}

func TestDeterminism(t *testing.T) {
	l := scenario(t)
	var snaps [][]byte
	for range 3 {
		f := state.New()
		for _, e := range l.entries {
			f.Apply(e)
		}
		b, err := f.MarshalSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, b)
	}
	for i := 1; i < len(snaps); i++ {
		if !bytes.Equal(snaps[0], snaps[i]) {
			t.Fatalf("replay %d of the same log gave a different snapshot", i)
		}
	}
	// The state does reflect the log (a broken Apply would also be
	// deterministic if it did nothing).
	f := state.New()
	for _, e := range l.entries {
		f.Apply(e)
	}
	if got := len(f.Services()); got != 2 {
		t.Errorf("services = %d, want 2", got)
	}
	if f.LastIndex() != uint64(len(l.entries)) {
		t.Errorf("LastIndex = %d, want %d", f.LastIndex(), len(l.entries))
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	l := scenario(t)
	f := state.New()
	for _, e := range l.entries {
		f.Apply(e)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed {
		t.Fatal("Persist did not close the sink")
	}
	g := state.New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	a, _ := f.MarshalSnapshot()
	b, _ := g.MarshalSnapshot()
	if !bytes.Equal(a, b) {
		t.Fatal("restored state marshals differently from the original")
	}
	opts := protocmp.Transform()
	if d := cmp.Diff(f.Services(), g.Services(), opts); d != "" {
		t.Errorf("services differ (-orig +restored):\n%s", d)
	}
	if d := cmp.Diff(f.Rollouts("", false, 0), g.Rollouts("", false, 0), opts); d != "" {
		t.Errorf("rollouts differ (-orig +restored):\n%s", d)
	}
	if d := cmp.Diff(f.Allocations("n1"), g.Allocations("n1"), opts); d != "" || len(g.Allocations("n1")) != 2 {
		t.Errorf("allocations differ (-orig +restored):\n%s", d)
	}
	// The restored FSM keeps working: the next entry gets the next release
	// and event index, exactly as on the original.
	next := l.add(deploy(spec("web", "slipway/demo:v3"), "r9", true))
	rf := apply(t, f, next).(state.DeployResult)
	rg := apply(t, g, next).(state.DeployResult)
	if d := cmp.Diff(rf, rg, opts); d != "" {
		t.Errorf("apply after restore differs:\n%s", d)
	}
	evf, _ := f.EventsAfter("web-4", 0)
	evg, _ := g.EventsAfter("web-4", 0)
	if d := cmp.Diff(evf.Events, evg.Events, opts); d != "" {
		t.Errorf("events after restore differ:\n%s", d)
	}
}

func TestRestoreRejectsGarbageAndKeepsState(t *testing.T) {
	l := scenario(t)
	f := state.New()
	for _, e := range l.entries {
		f.Apply(e)
	}
	before, _ := f.MarshalSnapshot()
	if err := f.RestoreBytes([]byte{0xff, 0xff, 0xff}); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("restore garbage: err = %v, want ErrInvalid", err)
	}
	future, _ := state.EncodeCommand(&statev1.Command{}) // reuse: empty message = version 0
	if err := f.RestoreBytes(future); !errors.Is(err, state.ErrUnsupportedVersion) {
		t.Fatalf("restore version 0: err = %v, want ErrUnsupportedVersion", err)
	}
	after, _ := f.MarshalSnapshot()
	if !bytes.Equal(before, after) {
		t.Fatal("a failed restore changed the state")
	}
}

func TestIdempotentRequestID(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	first := apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "req-1", false))).(state.DeployResult)
	if first.Replayed || first.Release.GetNumber() != 1 {
		t.Fatalf("first deploy = %+v", first)
	}
	// A retry of the same request returns the original, whatever its
	// metadata (created_by, reason, supersede).
	retry := deploy(spec("web", "slipway/demo:v1"), "req-1", true)
	retry.GetDeploy().CreatedBy, retry.GetDeploy().Reason = "ci-retry", "retried"
	again := apply(t, f, l.add(retry)).(state.DeployResult)
	if !again.Replayed {
		t.Error("retry not marked replayed")
	}
	if d := cmp.Diff(first.Release, again.Release, protocmp.Transform()); d != "" {
		t.Errorf("retry returned a different release:\n%s", d)
	}
	if again.Rollout.GetId() != "web-1" {
		t.Errorf("retry rollout = %s, want web-1", again.Rollout.GetId())
	}
	rels, _, err := f.Releases("web", 0)
	if err != nil || len(rels) != 1 {
		t.Fatalf("releases = %d (%v), want exactly 1", len(rels), err)
	}
	// Rollbacks are idempotent too.
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "req-2", true)))
	rb := apply(t, f, l.add(rollback("web", 1, "req-3", true))).(state.DeployResult)
	rb2 := apply(t, f, l.add(rollback("web", 1, "req-3", true))).(state.DeployResult)
	if !rb2.Replayed || rb2.Release.GetNumber() != rb.Release.GetNumber() {
		t.Errorf("rollback retry = %+v, want replay of release %d", rb2, rb.Release.GetNumber())
	}
	if svc, _ := f.Service("web"); svc.GetLatestRelease() != 3 {
		t.Errorf("latest release = %d, want 3", svc.GetLatestRelease())
	}
}

func TestOneActiveRolloutPerService(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "a", false)))
	before, _ := f.MarshalSnapshot()
	err := applyErr(f, l.add(deploy(spec("web", "slipway/demo:v2"), "b", false)))
	if !errors.Is(err, state.ErrActiveRollout) {
		t.Fatalf("second deploy: err = %v, want ErrActiveRollout", err)
	}
	if !strings.Contains(err.Error(), "web-1") {
		t.Errorf("error %q does not name the active rollout web-1", err)
	}
	after, _ := f.MarshalSnapshot()
	// Only the last applied index may differ: nothing else was half applied.
	if len(before) != len(after) {
		t.Errorf("refused deploy changed the state")
	}
	if rels, _, _ := f.Releases("web", 0); len(rels) != 1 {
		t.Errorf("refused deploy created a release: %d releases", len(rels))
	}
	// The refused request_id was not recorded: a retry with supersede works.
	res := apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "b", true))).(state.DeployResult)
	if res.Replayed || res.Rollout.GetId() != "web-2" {
		t.Fatalf("superseding deploy = %+v", res)
	}
	old, err := f.Rollout("web-1")
	if err != nil {
		t.Fatal(err)
	}
	if old.GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED {
		t.Errorf("web-1 state = %v, want SUPERSEDED", old.GetState())
	}
	if last := old.GetHistory()[len(old.GetHistory())-1]; last.GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED {
		t.Errorf("web-1 last step = %v", last)
	}
	svc, _ := f.Service("web")
	if svc.GetActiveRollout() != "web-2" || svc.GetSpec().GetImage() != "slipway/demo:v2" {
		t.Errorf("service = %v", svc)
	}
	if act := f.Rollouts("web", true, 0); len(act) != 1 || act[0].GetId() != "web-2" {
		t.Errorf("active rollouts = %v", act)
	}
	// Another service is independent.
	apply(t, f, l.add(deploy(spec("api", "slipway/demo:v1"), "c", false)))
}

func TestRollbackCopiesEarlierSpec(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "a", false)))
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "b", true)))
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v3"), "c", true)))
	res := apply(t, f, l.add(rollback("web", 0, "d", true))).(state.DeployResult)
	if res.Release.GetNumber() != 4 || res.Release.GetRollbackOf() != 2 {
		t.Fatalf("rollback release = %d of %d, want 4 of 2", res.Release.GetNumber(), res.Release.GetRollbackOf())
	}
	if d := cmp.Diff(spec("web", "slipway/demo:v2"), res.Release.GetSpec(), protocmp.Transform()); d != "" {
		t.Errorf("rollback spec differs from release 2:\n%s", d)
	}
	if res.Rollout.GetToRelease() != 4 || res.Rollout.GetState() != deployv1.RolloutState_ROLLOUT_STATE_PENDING {
		t.Errorf("rollback rollout = %v", res.Rollout)
	}
	res = apply(t, f, l.add(rollback("web", 1, "e", true))).(state.DeployResult)
	if res.Release.GetSpec().GetImage() != "slipway/demo:v1" || res.Release.GetRollbackOf() != 1 {
		t.Errorf("rollback to 1 = %v", res.Release)
	}
	_, audit, _ := f.Releases("web", 0)
	if audit[0].GetAction() != "rollback" || audit[0].GetActor() != "bob" {
		t.Errorf("newest audit = %v, want rollback by bob", audit[0])
	}

	for _, tc := range []struct {
		name string
		cmd  *statev1.Command
		want error
	}{
		{"unknown service", rollback("nope", 0, "x1", true), state.ErrNotFound},
		{"future release", rollback("web", 99, "x2", true), state.ErrNotFound},
		{"active without supersede", rollback("web", 1, "x3", false), state.ErrActiveRollout},
	} {
		if err := applyErr(f, l.add(tc.cmd)); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	g := state.New()
	apply(t, g, l.add(deploy(spec("solo", "slipway/demo:v1"), "s1", false)))
	if err := applyErr(g, l.add(rollback("solo", 0, "s2", true))); !errors.Is(err, state.ErrNoEarlierRelease) {
		t.Errorf("rollback of a single release: err = %v, want ErrNoEarlierRelease", err)
	}
}

func TestOperatorCommandsRecorded(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "a", false)))
	kinds := []deployv1.CommandKind{
		deployv1.CommandKind_COMMAND_KIND_PAUSE, deployv1.CommandKind_COMMAND_KIND_RESUME,
		deployv1.CommandKind_COMMAND_KIND_PROMOTE, deployv1.CommandKind_COMMAND_KIND_ABORT,
	}
	for _, k := range kinds {
		res := apply(t, f, l.add(operator("web-1", k))).(state.RolloutResult)
		cmds := res.Rollout.GetCommands()
		if got := cmds[len(cmds)-1]; got.GetKind() != k || got.GetBy() != "alice" || got.GetReason() != "because" || got.GetAt() == nil {
			t.Errorf("recorded command = %v, want %v by alice", got, k)
		}
	}
	r, _ := f.Rollout("web-1")
	if len(r.GetCommands()) != len(kinds) {
		t.Errorf("commands = %d, want %d", len(r.GetCommands()), len(kinds))
	}
	ev, _ := f.EventsAfter("web-1", 0)
	if len(ev.Events) != 1+len(kinds) || ev.Events[1].GetKind() != "command" {
		t.Errorf("events = %v", ev.Events)
	}
	for i := 1; i < len(ev.Events); i++ {
		if ev.Events[i].GetIndex() <= ev.Events[i-1].GetIndex() {
			t.Errorf("event indexes not increasing: %v", ev.Events)
		}
	}
	// Resume from an index returns only later events.
	later, _ := f.EventsAfter("web-1", ev.Events[2].GetIndex())
	if len(later.Events) != len(kinds)-2 {
		t.Errorf("events after %d = %d, want %d", ev.Events[2].GetIndex(), len(later.Events), len(kinds)-2)
	}

	if err := applyErr(f, l.add(operator("web-9", deployv1.CommandKind_COMMAND_KIND_PAUSE))); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("unknown rollout: err = %v, want ErrNotFound", err)
	}
	if err := applyErr(f, l.add(operator("web-1", deployv1.CommandKind_COMMAND_KIND_UNSPECIFIED))); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("unspecified kind: err = %v, want ErrInvalid", err)
	}
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "b", true)))
	err := applyErr(f, l.add(operator("web-1", deployv1.CommandKind_COMMAND_KIND_PROMOTE)))
	if !errors.Is(err, state.ErrRolloutFinal) || !strings.Contains(err.Error(), "SUPERSEDED") {
		t.Errorf("promote superseded: err = %v, want ErrRolloutFinal naming SUPERSEDED", err)
	}
	final, _ := f.EventsAfter("web-1", 0)
	if !final.Final {
		t.Error("superseded rollout not reported final to watchers")
	}
}

func TestBadEntriesNeverPanicOrChangeState(t *testing.T) {
	f := state.New()
	l := &log{tb: t}
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "a", false)))
	before := f.Services()
	cases := map[string]*raft.Log{
		"garbage":       {Index: 10, Type: raft.LogCommand, Data: []byte{0xff, 0x01}},
		"no op":         l.add(&statev1.Command{}),
		"no name":       l.add(deploy(&deployv1.ServiceSpec{}, "z", false)),
		"no request id": l.add(deploy(spec("x", "i"), "", false)),
		"drain unknown": l.add(&statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{NodeId: "n9"}}}),
	}
	future := &statev1.Command{Op: &statev1.Command_Noop{Noop: &statev1.NoopOp{}}}
	e := l.add(future)
	future.Version = state.CurrentVersion + 1
	e.Data, _ = state.EncodeCommand(future)
	cases["future version"] = e
	for name, e := range cases {
		if err := applyErr(f, e); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if d := cmp.Diff(before, f.Services(), protocmp.Transform()); d != "" {
		t.Errorf("bad entries changed services:\n%s", d)
	}
}

type memSink struct {
	buf    bytes.Buffer
	closed bool
}

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { s.closed = true; return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { return nil }

// EventsSince merges every rollout's events in index order, filters by
// service, pages by limit, and agrees after a snapshot restore.
func TestEventsSince(t *testing.T) {
	l := scenario(t)
	f := state.New()
	for _, e := range l.entries {
		f.Apply(e)
	}
	all := f.EventsSince("", 0, 0)
	if len(all.Events) < 4 || all.More {
		t.Fatalf("EventsSince all = %d events, more %v", len(all.Events), all.More)
	}
	services := map[string]bool{}
	for i, se := range all.Events {
		services[se.Service] = true
		if i > 0 && se.Event.GetIndex() <= all.Events[i-1].Event.GetIndex() {
			t.Fatalf("event %d index %d after %d", i, se.Event.GetIndex(), all.Events[i-1].Event.GetIndex())
		}
	}
	if !services["web"] || !services["api"] {
		t.Errorf("services seen: %v", services)
	}
	// Paging by limit yields the same sequence.
	var paged []uint64
	for from := uint64(0); ; {
		page := f.EventsSince("", from, 2)
		for _, se := range page.Events {
			paged = append(paged, se.Event.GetIndex())
			from = se.Event.GetIndex()
		}
		if !page.More {
			break
		}
	}
	if len(paged) != len(all.Events) {
		t.Fatalf("paged %v, want %d events", paged, len(all.Events))
	}
	for _, se := range f.EventsSince("api", 0, 0).Events {
		if se.Service != "api" {
			t.Errorf("api filter returned %v", se)
		}
	}
	if got := f.EventsSince("", all.Events[len(all.Events)-1].Event.GetIndex(), 0); len(got.Events) != 0 || got.Changed == nil {
		t.Errorf("after the last event: %v", got.Events)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := state.New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if a, b := len(g.EventsSince("", 0, 0).Events), len(all.Events); a != b {
		t.Errorf("restored copy has %d events, want %d", a, b)
	}
}

// TermEventCursor points before the first event of a term's entries, or at
// the last event when the term has recorded none.
func TestTermEventCursor(t *testing.T) {
	f := state.New()
	l := &log{tb: t}
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "r1", false))) // event 1, term 1
	if got := f.TermEventCursor(2); got != 1 {
		t.Errorf("term 2 before any entry of it: cursor %d, want 1", got)
	}
	e := l.add(operator("web-1", deployv1.CommandKind_COMMAND_KIND_PAUSE)) // event 2
	e.Term = 2
	apply(t, f, e)
	e = l.add(operator("web-1", deployv1.CommandKind_COMMAND_KIND_RESUME)) // event 3
	e.Term = 2
	apply(t, f, e)
	if got := f.TermEventCursor(2); got != 1 {
		t.Errorf("term 2 after two of its events: cursor %d, want 1", got)
	}
	if got := f.TermEventCursor(3); got != 3 {
		t.Errorf("term 3: cursor %d, want 3", got)
	}
}
