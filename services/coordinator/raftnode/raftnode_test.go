package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"slipway.dev/coordinator/state"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

func fast(rc *raft.Config) {
	rc.HeartbeatTimeout = 100 * time.Millisecond
	rc.ElectionTimeout = 100 * time.Millisecond
	rc.LeaderLeaseTimeout = 100 * time.Millisecond
}

func waitLeader(t *testing.T, n *Node) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "single node leader", func() error {
		if !n.IsLeader() {
			return errors.New("not leader")
		}
		return nil
	})
}

func deployCmd(i int) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{
		Spec:      &deployv1.ServiceSpec{Name: fmt.Sprintf("svc%d", i%3), Image: fmt.Sprintf("slipway/demo:v%d", i)},
		RequestId: fmt.Sprintf("r%d", i), Supersede: true,
	}}}
}

// TestDiskStateSurvivesRestart applies entries on a bolt-backed node, takes
// a file snapshot, applies more, restarts from the same directory with a
// fresh FSM and checks the state is rebuilt exactly (snapshot + log tail).
func TestDiskStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	cfg := Config{ID: "a", DataDir: dir, BindAddr: testenv.FreeAddr(t), LogOutput: io.Discard, Tune: fast, Registerer: reg, Creds: testenv.Creds(t, pki.RoleCoordinator, "a")}
	fsm := state.New()
	n, err := New(cfg, fsm)
	if err != nil {
		t.Fatal(err)
	}
	if n.HadState() || n.BootIndex() != 0 || !n.CaughtUp() {
		t.Fatalf("fresh dir: had state %v, boot index %d, caught up %v; want false, 0, true", n.HadState(), n.BootIndex(), n.CaughtUp())
	}
	if err := n.Bootstrap([]Server{{ID: "a", Address: n.Addr(), Voter: true}}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n)
	ctx := context.Background()
	for i := range 10 {
		res, err := n.Apply(ctx, deployCmd(i))
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		if _, ok := res.(state.DeployResult); !ok {
			t.Fatalf("apply %d response %T", i, res)
		}
	}
	// A domain error comes back as the error, not as a response.
	_, err = n.Apply(ctx, &statev1.Command{Op: &statev1.Command_Operator{Operator: &statev1.OperatorOp{RolloutId: "nope-1", Kind: deployv1.CommandKind_COMMAND_KIND_PAUSE}}})
	if !errors.Is(err, state.ErrNotFound) {
		t.Errorf("apply of a refused entry: err = %v, want ErrNotFound", err)
	}
	if got := testutil.ToFloat64(n.applies.WithLabelValues("ok")); got < 10 {
		t.Errorf("applies ok counter = %v, want >= 10", got)
	}
	if got := testutil.ToFloat64(n.applies.WithLabelValues("rejected")); got != 1 {
		t.Errorf("applies rejected counter = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg, "slipway_coordinator_raft_state", "slipway_coordinator_raft_apply_seconds"); err != nil || n != 2 {
		t.Errorf("raft metrics registered = %d, %v; want 2", n, err)
	}
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	for i := 10; i < 15; i++ {
		if _, err := n.Apply(ctx, deployCmd(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.VerifyLeader(ctx); err != nil {
		t.Fatal(err)
	}
	want, _ := fsm.MarshalSnapshot()
	lastIndex := fsm.LastIndex()
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*")); len(snaps) == 0 {
		t.Fatal("no file snapshot written")
	}

	fsm2 := state.New()
	cfg.Registerer = nil
	n2, err := New(cfg, fsm2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n2.Shutdown() })
	if !n2.HadState() {
		t.Fatal("restart did not find the state on disk")
	}
	if n2.BootIndex() < lastIndex {
		t.Errorf("boot index = %d, want at least the last applied index %d", n2.BootIndex(), lastIndex)
	}
	waitLeader(t, n2)
	if err := n2.VerifyLeader(ctx); err != nil { // barrier: the log tail is applied
		t.Fatal(err)
	}
	if !n2.CaughtUp() || n2.AppliedIndex() < lastIndex {
		t.Errorf("after the barrier: caught up %v, applied %d; want true, >= %d", n2.CaughtUp(), n2.AppliedIndex(), lastIndex)
	}
	got, _ := fsm2.MarshalSnapshot()
	if !bytes.Equal(want, got) {
		t.Fatal("state after restart differs from the state before")
	}
}

func TestNotLeader(t *testing.T) {
	_, tr := raft.NewInmemTransport("x")
	n, err := New(Config{ID: "x", Transport: tr, LogOutput: io.Discard, Tune: fast}, state.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	// Never bootstrapped: not a leader, so writes fail with ErrNotLeader.
	if _, err := n.Apply(context.Background(), deployCmd(1)); !errors.Is(err, ErrNotLeader) {
		t.Errorf("apply on a non-leader: err = %v, want ErrNotLeader", err)
	}
	if err := n.VerifyLeader(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Errorf("verify on a non-leader: err = %v, want ErrNotLeader", err)
	}
	if _, err := New(Config{}, state.New()); err == nil {
		t.Error("New without an id did not fail")
	}
}

// TestLeadershipChangesWakeOnElection: a node that wins an election says
// so on LeadershipChanges (the server starts its engine on it rather than
// at its next poll), and Shutdown stops the observer.
func TestLeadershipChangesWakeOnElection(t *testing.T) {
	_, tr := raft.NewInmemTransport("x")
	n, err := New(Config{ID: "x", Transport: tr, LogOutput: io.Discard, Tune: fast}, state.New())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.LeadershipChanges(): // raft's start may report its state: drain it
	default:
	}
	if err := n.Bootstrap([]Server{{ID: "x", Address: string(tr.LocalAddr()), Voter: true}}); err != nil {
		t.Fatal(err)
	}
	// Leadership is looked at only when a change is said: the last one
	// (raft reports a state after it took it) must find the node leading.
	deadline := time.After(10 * time.Second)
	for led := false; !led; {
		select {
		case <-n.LeadershipChanges():
			led = n.IsLeader()
		case <-deadline:
			t.Fatalf("no leadership change said the node leads (leader now: %v)", n.IsLeader())
		}
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
		t.Logf("second shutdown: %v", err) // must not panic on the closed observer
	}
}
