package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/heartbeat"
	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/coordinator/state"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

type harness struct {
	t      testing.TB
	clock  *clock
	fsm    *state.FSM
	raft   *fakeRaft
	nodes  *fakeNodes
	routes *fakeRoutes
	agents *fakeAgents
	eng    *engine.Engine
	// gateAllow is the next leader's -analysis-gate-allow.
	gateAllow analysis.Allowlist
	// signals is the next leader's signals store (nil: none).
	signals engine.Signals
	// hb is the next leader's heartbeat view (nil: none).
	hb *heartbeat.View
}

func newHarness(t testing.TB, nodes ...string) *harness {
	h := &harness{t: t, clock: &clock{now: t0}, fsm: state.New(), nodes: &fakeNodes{}, routes: &fakeRoutes{}}
	h.raft = &fakeRaft{fsm: h.fsm, clock: h.clock, term: 1}
	h.agents = newAgents(h.fsm, h.clock)
	var ns []engine.Node
	for _, id := range nodes {
		ns = append(ns, engine.Node{ID: id, Addr: id + ":7410", CPU: 4000, MemoryMB: 4096, Driver: "process"})
	}
	h.nodes.set(ns...)
	h.newLeader()
	t.Cleanup(func() { h.eng.Stop(); h.agents.check(t) })
	return h
}

// newLeader replaces the engine with a fresh one, as a new leader would
// start, in a higher term.
func (h *harness) newLeader() {
	h.raft.mu.Lock()
	h.raft.term++
	h.raft.mu.Unlock()
	if h.eng != nil {
		h.eng.Stop() // the old leader sends nothing more
	}
	h.eng = engine.New(engine.Config{Raft: h.raft, FSM: h.fsm, Nodes: h.nodes, Routes: h.routes, Agents: h.agents,
		Now: h.clock.Now, NodeGrace: 5 * time.Second, Logger: slog.New(slog.DiscardHandler), SyncWait: time.Minute, GateAllow: h.gateAllow, Signals: h.signals, Heartbeats: h.hb})
}

func (h *harness) pass() {
	h.t.Helper()
	if _, err := h.eng.Pass(context.Background()); err != nil {
		h.t.Fatalf("pass: %v", err)
	}
}

// run passes, advancing the clock by step each time, until cond holds.
func (h *harness) run(step time.Duration, what string, cond func() bool) {
	h.t.Helper()
	for range 200 {
		h.pass()
		if cond() {
			return
		}
		h.clock.Add(step)
	}
	ro := h.fsm.Rollouts("", false, 1)
	h.t.Fatalf("never reached: %s (latest rollout %v)", what, ro)
}

func (h *harness) deploy(s *deployv1.ServiceSpec) string {
	h.t.Helper()
	res, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{Spec: s, RequestId: s.GetName() + "/" + s.GetImage(), Supersede: true}}})
	if err != nil {
		h.t.Fatal(err)
	}
	return res.(state.DeployResult).Rollout.GetId()
}

func (h *harness) command(id string, kind deployv1.CommandKind) {
	h.t.Helper()
	if _, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_Operator{Operator: &statev1.OperatorOp{RolloutId: id, Kind: kind, By: "op"}}}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) rollout(id string) *deployv1.Rollout {
	h.t.Helper()
	ro, err := h.fsm.Rollout(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return ro
}

func (h *harness) phase(id string, want deployv1.RolloutState) func() bool {
	return func() bool { return h.rollout(id).GetState() == want }
}

func (h *harness) allocs(release uint64) []*agentv1.Allocation {
	var out []*agentv1.Allocation
	for _, sa := range h.fsm.AllAllocations() {
		if sa.Allocation.GetRelease() == release {
			out = append(out, sa.Allocation)
		}
	}
	return out
}

func webSpec(image string, count int32, u *deployv1.UpdateStrategy) *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{Name: "web", Image: image, Count: count, Port: 8080,
		Resources: &deployv1.Resources{CpuMhz: 100, MemoryMb: 64},
		Check:     &deployv1.HealthCheck{Http: "/healthz"},
		Route:     &deployv1.Route{Host: "web.test", Path: "/"}, Update: u}
}

func fast(u *deployv1.UpdateStrategy) *deployv1.UpdateStrategy {
	u.MinHealthyTime = durationpb.New(time.Second)
	u.HealthyDeadline = durationpb.New(10 * time.Second)
	return u
}

func TestFirstDeployPlacesSpreadsAndRoutes(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	id := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))

	as := h.allocs(1)
	if len(as) != 2 || as[0].GetNodeId() == as[1].GetNodeId() {
		t.Fatalf("allocations = %v, want 2 on distinct nodes", as)
	}
	if as[0].GetImage() != "slipway/demo:v1" || as[0].GetCheck().GetHttp() != "/healthz" || as[0].GetTrack() != rollout.TrackStable {
		t.Errorf("allocation spec = %v", as[0])
	}
	in := h.routes.last("web")
	if in.GetWeights()["1"] != 100 || len(in.GetWeights()) != 1 || in.GetHost() != "web.test" || in.GetGeneration() == 0 {
		t.Errorf("intent = %v, want 100%% to release 1 on web.test", in)
	}
	if svc, _ := h.fsm.Service("web"); svc.GetStableRelease() != 1 {
		t.Errorf("stable release = %d, want 1", svc.GetStableRelease())
	}
	// Events carry weights and healthy counts for WatchRollout.
	ev, _ := h.fsm.EventsAfter(id, 0)
	last := ev.Events[len(ev.Events)-1]
	if last.GetHealthy()["1"] != 2 || last.GetWeights()["1"] != 100 {
		t.Errorf("last event = %v, want healthy 2 and weight 100 for release 1", last)
	}
	// Nodes were recorded.
	if ns := h.fsm.Nodes(); len(ns) != 2 || ns[0].GetAddress() != "n1:7410" {
		t.Errorf("nodes = %v", ns)
	}
}

func TestNoNodeViewNoDecision(t *testing.T) {
	h := newHarness(t, "n1")
	h.nodes.err = errConsulDown
	h.deploy(webSpec("slipway/demo:v1", 1, nil))
	before := len(h.raft.steps())
	if _, err := h.eng.Pass(context.Background()); !errors.Is(err, errConsulDown) {
		t.Fatalf("pass err = %v, want consul down", err)
	}
	if len(h.raft.steps()) != before || len(h.agents.calls) != 0 {
		t.Fatal("decided or acted without a view of the nodes")
	}
}

func TestNotLeaderStopsThePass(t *testing.T) {
	h := newHarness(t, "n1")
	h.deploy(webSpec("slipway/demo:v1", 1, nil))
	h.raft.notLead = true
	if _, err := h.eng.Pass(context.Background()); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("pass err = %v, want ErrNotLeader", err)
	}
	if len(h.agents.calls) != 0 {
		t.Fatal("acted on a decision that was not committed")
	}
}

func canary() *deployv1.UpdateStrategy {
	return fast(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
		{Weight: 25, Manual: true}, {Weight: 50, Pause: durationpb.New(2 * time.Second)}, {Weight: 100}}}})
}

func TestCanaryResumesOnNewLeaderWithoutReplacing(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, canary()))
	h.run(500*time.Millisecond, "canary at 25%", func() bool { return h.routes.last("web").GetWeights()["2"] == 25 })
	h.pass()
	if ro := h.rollout(v2); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_PAUSED || !ro.GetAwaitingPromote() {
		t.Fatalf("at a manual step the rollout is %v (awaiting promote %v), want PAUSED awaiting promote", ro.GetState(), ro.GetAwaitingPromote())
	}
	if evs, _ := h.fsm.EventsAfter(v2, 0); !evs.Events[len(evs.Events)-1].GetAwaitingPromote() {
		t.Fatalf("last event %v does not say it awaits promote", evs.Events[len(evs.Events)-1])
	}
	placed := len(h.allocs(2))
	gen := h.routes.last("web").GetGeneration()
	syncs := len(h.agents.calls)

	// The leader dies; a new one re-acts the committed state (every node,
	// same allocations, same intent) and decides nothing new.
	h.newLeader()
	h.clock.Add(time.Second)
	steps := len(h.raft.steps())
	h.pass()
	if len(h.raft.steps()) != steps {
		t.Errorf("new leader committed %d steps at a manual pause, want none", len(h.raft.steps())-steps)
	}
	if got := len(h.agents.calls) - syncs; got != 2 {
		t.Errorf("new leader synced %d nodes, want both", got)
	}
	if h.routes.last("web").GetGeneration() != gen || len(h.routes.intents) < 2 {
		t.Errorf("new leader did not re-write intent generation %d", gen)
	}
	if len(h.allocs(2)) != placed {
		t.Fatalf("new leader placed again: %d allocations of v2, had %d", len(h.allocs(2)), placed)
	}

	// Pause and promote act on the new leader.
	h.command(v2, deployv1.CommandKind_COMMAND_KIND_PROMOTE)
	h.run(500*time.Millisecond, "canary at 50%", func() bool { return h.routes.last("web").GetWeights()["2"] == 50 })
	if h.rollout(v2).GetAwaitingPromote() {
		t.Fatal("promoted rollout still awaits promote")
	}
	h.command(v2, deployv1.CommandKind_COMMAND_KIND_PAUSE)
	h.pass()
	if ro := h.rollout(v2); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_PAUSED || ro.GetAwaitingPromote() {
		t.Fatalf("operator-paused rollout is %v, awaiting promote %v; want PAUSED, not awaiting promote", ro.GetState(), ro.GetAwaitingPromote())
	}
	h.clock.Add(10 * time.Second) // beyond the step's pause
	h.pass()
	if w := h.routes.last("web").GetWeights()["2"]; w != 50 {
		t.Fatalf("paused rollout moved traffic to %d%%", w)
	}
	h.command(v2, deployv1.CommandKind_COMMAND_KIND_RESUME)
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	if in := h.routes.last("web"); in.GetWeights()["2"] != 100 || len(in.GetWeights()) != 1 {
		t.Errorf("final intent = %v", in)
	}
	h.run(500*time.Millisecond, "v1 stopped", func() bool { return len(h.allocs(1)) == 0 })
	if n := h.agents.ever(2); n != 2 {
		t.Errorf("%d allocations of v2 were ever started, want 2", n)
	}
	if got := h.agents.running(); len(got) != 2 {
		t.Errorf("running = %v, want the 2 v2 instances", got)
	}
	ro := h.rollout(v2)
	for _, c := range ro.GetCommands() {
		if !c.GetApplied() {
			t.Errorf("command %v not marked applied", c)
		}
	}
}

// TestAwaitingPromoteSetForAnOlderMachineState: a rollout left waiting by a
// coordinator that did not record awaiting_promote gets it on the next pass,
// in a step of its own, and only once.
func TestAwaitingPromoteSetForAnOlderMachineState(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, canary()))
	h.run(500*time.Millisecond, "manual step", func() bool { return h.rollout(v2).GetAwaitingPromote() })

	// Rewrite the committed step as an older coordinator wrote it.
	raw, _ := h.fsm.Machine(v2)
	var st rollout.State
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	st.AwaitingPromote = false
	old, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	ro := h.rollout(v2)
	if _, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_RolloutStep{RolloutStep: &statev1.RolloutStepOp{
		Service: "web", RolloutId: v2, Machine: old, Phase: ro.GetState(), Step: ro.GetStep(), Message: ro.GetMessage(),
		Weights: ro.GetWeights(), LastCommand: st.LastCommand}}}); err != nil {
		t.Fatal(err)
	}
	if h.rollout(v2).GetAwaitingPromote() {
		t.Fatal("setup: the rewritten step still records awaiting promote")
	}
	steps := len(h.raft.steps())
	h.pass()
	if !h.rollout(v2).GetAwaitingPromote() {
		t.Fatal("the next pass did not record awaiting promote")
	}
	h.pass()
	if got := len(h.raft.steps()) - steps; got != 1 {
		t.Errorf("committed %d steps for the flag, want 1", got)
	}
}

func TestRouteBarrierHoldsStops(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	h.routes.acks = []*edgev1.EdgeAck{{EdgeId: "e1"}, {EdgeId: "e2"}}
	ack := func(gen uint64) {
		h.routes.mu.Lock()
		h.routes.acks[0].Generations = map[string]uint64{"web": gen}
		h.routes.acks[1].Generations = map[string]uint64{"web": gen}
		h.routes.mu.Unlock()
	}
	v1 := h.deploy(webSpec("slipway/demo:v1", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	ack(h.routes.last("web").GetGeneration())
	v2 := h.deploy(webSpec("slipway/demo:v2", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 drained", func() bool {
		as := h.allocs(1)
		return len(as) == 1 && as[0].GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED
	})
	gen := h.routes.last("web").GetGeneration()
	for range 5 {
		h.clock.Add(time.Second)
		h.pass()
	}
	if len(h.allocs(1)) != 1 {
		t.Fatal("v1 instance removed before the edges acknowledged the generation without it")
	}
	// One edge acks; the other lags: still held.
	h.routes.mu.Lock()
	h.routes.acks[0].Generations = map[string]uint64{"web": gen}
	h.routes.mu.Unlock()
	h.pass()
	if len(h.allocs(1)) != 1 {
		t.Fatal("v1 instance removed while one edge had not acknowledged")
	}
	ack(gen)
	h.run(500*time.Millisecond, "v1 stopped after the barrier", func() bool { return len(h.allocs(1)) == 0 })
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
}

func TestLostNodeAllocationsReplaced(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	h.nodes.set(engine.Node{ID: "n1", Addr: "n1:7410", CPU: 4000, MemoryMB: 4096})
	h.pass()
	if len(h.allocs(1)) != 2 || h.allocs(1)[0].GetNodeId() == h.allocs(1)[1].GetNodeId() {
		t.Fatal("allocations moved before the node's grace period")
	}
	if ns := h.fsm.Nodes(); ns[1].GetStatus().String() != "NODE_STATUS_READY" {
		t.Errorf("n2 = %v, want READY within its grace period", ns[1])
	}
	h.clock.Add(6 * time.Second)
	h.pass()
	if ns := h.fsm.Nodes(); ns[1].GetStatus().String() != "NODE_STATUS_DOWN" {
		t.Errorf("n2 = %v, want DOWN after its grace period", ns[1])
	}
	as := h.allocs(1)
	if len(as) != 2 || as[0].GetNodeId() != "n1" || as[1].GetNodeId() != "n1" {
		t.Fatalf("after grace: %v, want both on n1", as)
	}
	if got := h.agents.running(); len(got) < 2 {
		t.Errorf("n1 runs %v", got)
	}
}

// TestNodesNotMarkedDownFromOneEmptyView: a new leader's first view of the
// nodes can be empty (agents prove themselves to it in the background), and
// a leader that cannot commit (a full disk) sees the same nodes go unrecorded
// for a while; neither marks a node down before it has been missing for the
// node grace.
func TestNodesNotMarkedDownFromOneEmptyView(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	all := h.nodes.get()
	ready := func(when string) {
		t.Helper()
		for _, n := range h.fsm.Nodes() {
			if n.GetStatus() != clusterv1.NodeStatus_NODE_STATUS_READY {
				t.Fatalf("%s: node %s is %v, want READY", when, n.GetId(), n.GetStatus())
			}
		}
	}
	// A new leader whose agents have not proved themselves yet.
	h.newLeader()
	h.nodes.set()
	for range 3 {
		h.pass()
		h.clock.Add(time.Second)
	}
	ready("new leader, no node proven yet")
	h.nodes.set(all...)
	h.pass()
	ready("new leader, nodes proven")
	// A leader whose writes fail while its view blinks.
	h.raft.setFail(errors.New("fake: write /data/raft.db: no space left on device"))
	h.nodes.set()
	for range 3 {
		_, _ = h.eng.Pass(context.Background())
		h.clock.Add(time.Second)
	}
	h.raft.setFail(nil)
	h.nodes.set(all...)
	h.pass()
	ready("after the failed writes")
	if got := len(h.allocs(1)); got != 2 {
		t.Fatalf("%d instances of v1, want 2: nothing moved", got)
	}
}

func TestAutoRevertReturnsTrafficToStable(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	h.agents.critical[2] = true
	u := canary()
	u.AutoRevert = true
	u.Canary.Steps[0].Manual = false
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, u))
	h.run(time.Second, "v2 reverted", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_REVERTED))
	if in := h.routes.last("web"); in.GetWeights()["1"] != 100 || len(in.GetWeights()) != 1 {
		t.Errorf("intent after revert = %v, want 100%% v1", in)
	}
	h.run(500*time.Millisecond, "v2 stopped", func() bool { return len(h.allocs(2)) == 0 })
	if svc, _ := h.fsm.Service("web"); svc.GetStableRelease() != 1 {
		t.Errorf("stable = %d, want 1", svc.GetStableRelease())
	}
}

func TestSupersededRolloutHandsOver(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	v2 := h.deploy(webSpec("slipway/demo:v2", 1, canary()))
	h.run(500*time.Millisecond, "v2 at 25%", func() bool { return h.routes.last("web").GetWeights()["2"] == 25 })
	v3 := h.deploy(webSpec("slipway/demo:v3", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v3 succeeded", h.phase(v3, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	h.run(500*time.Millisecond, "v1 and v2 stopped", func() bool { return len(h.allocs(1))+len(h.allocs(2)) == 0 })
	if ro := h.rollout(v2); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED {
		t.Errorf("v2 = %v", ro.GetState())
	}
	if in := h.routes.last("web"); in.GetWeights()["3"] != 100 {
		t.Errorf("intent = %v", in)
	}
}

// A superseding rollout takes over what the superseded one drained (the
// allocations desired stopped, not removed yet) instead of counting them as
// serving instances of its base release: they are stopped behind the route
// barrier, nothing is left running, and at no pass do more than count +
// max_parallel allocations serve (the fake agent reports a drained one
// DRAINING: deregistered, so routed by no edge, and the machine does not
// wait for the barrier to place beside it).
func TestSupersedingRolloutHandsOverDrainedInstances(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	rolling := func() *deployv1.UpdateStrategy { return fast(&deployv1.UpdateStrategy{MaxParallel: 1}) }
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, rolling()))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	h.routes.acks = []*edgev1.EdgeAck{{EdgeId: "e1"}}
	ack := func() {
		gen := h.routes.last("web").GetGeneration()
		h.routes.mu.Lock()
		h.routes.acks[0].Generations = map[string]uint64{"web": gen}
		h.routes.mu.Unlock()
	}
	ack()
	serving := func() int {
		n := 0
		for _, sa := range h.fsm.AllAllocations() {
			if sa.Allocation.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED {
				n++
			}
		}
		return n
	}
	bounded := func(what string, cond func() bool) func() bool {
		return func() bool {
			if n := serving(); n > 3 {
				t.Fatalf("%s: %d allocations serve, more than count 2 + max_parallel 1", what, n)
			}
			return cond()
		}
	}
	h.deploy(webSpec("slipway/demo:v2", 2, rolling()))
	h.run(500*time.Millisecond, "v2's first batch drained one v1", bounded("v2", func() bool {
		for _, a := range h.allocs(1) {
			if a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED {
				return true
			}
		}
		return false
	}))
	v3 := h.deploy(webSpec("slipway/demo:v3", 2, rolling()))
	h.run(500*time.Millisecond, "v3 succeeded", bounded("v3", func() bool {
		ack()
		return h.rollout(v3).GetState() == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED
	}))
	h.run(500*time.Millisecond, "v1 and v2 stopped", bounded("after v3", func() bool {
		ack()
		return len(h.allocs(1))+len(h.allocs(2)) == 0 && len(h.allocs(3)) == 2
	}))
}

func TestAckedGeneration(t *testing.T) {
	if g := engine.AckedGeneration("web", nil, 7); g != 7 {
		t.Errorf("no edges: %d, want 7 (treated as acknowledged)", g)
	}
	acks := []*edgev1.EdgeAck{{Generations: map[string]uint64{"web": 5}}, {Generations: map[string]uint64{"web": 3, "api": 9}}}
	if g := engine.AckedGeneration("web", acks, 7); g != 3 {
		t.Errorf("min over edges = %d, want 3", g)
	}
	if g := engine.AckedGeneration("api", acks, 9); g != 0 {
		t.Errorf("an edge without the service = %d, want 0", g)
	}
}

func TestInstanceHealth(t *testing.T) {
	created := timestamppb.New(t0)
	sa := state.StoredAllocation{Allocation: &agentv1.Allocation{Id: "a", Release: 2}, CreatedAt: created}
	if in := engine.Instance(sa, nil); in.Health != rollout.HealthUnknown || !in.Since.Equal(t0) || !in.CreatedAt.Equal(t0) {
		t.Errorf("unreported = %+v", in)
	}
	passing := &agentv1.AllocationStatus{State: agentv1.AllocationState_ALLOCATION_STATE_RUNNING, Health: agentv1.Health_HEALTH_PASSING,
		HealthySince: timestamppb.New(t0.Add(3 * time.Second))}
	if in := engine.Instance(sa, passing); in.Health != rollout.HealthPassing || !in.Since.Equal(t0.Add(3*time.Second)) {
		t.Errorf("passing = %+v", in)
	}
	crit := &agentv1.AllocationStatus{State: agentv1.AllocationState_ALLOCATION_STATE_RUNNING, Health: agentv1.Health_HEALTH_CRITICAL, UpdatedAt: timestamppb.New(t0.Add(time.Second))}
	if in := engine.Instance(sa, crit); in.Health != rollout.HealthCritical || !in.Since.Equal(t0.Add(time.Second)) {
		t.Errorf("critical = %+v", in)
	}
	failed := &agentv1.AllocationStatus{State: agentv1.AllocationState_ALLOCATION_STATE_FAILED, UpdatedAt: timestamppb.New(t0.Add(time.Second))}
	if in := engine.Instance(sa, failed); in.Health != rollout.HealthDead {
		t.Errorf("failed = %+v", in)
	}
}

func TestPlacementWaitsForANode(t *testing.T) {
	h := newHarness(t)
	id := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.pass()
	h.pass() // the same reason is reported once
	ev, _ := h.fsm.EventsAfter(id, 0)
	n := 0
	for _, e := range ev.Events {
		if e.GetKind() == "placement_failed" {
			n++
		}
	}
	if n != 1 || len(h.allocs(1)) != 0 || len(h.agents.calls) != 0 {
		t.Fatalf("without nodes: %d placement_failed events (want 1), %d allocations, %d syncs", n, len(h.allocs(1)), len(h.agents.calls))
	}
	if ro := h.rollout(id); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_PENDING {
		t.Fatalf("rollout = %v, want PENDING while nothing is placed", ro.GetState())
	}
	h.nodes.set(engine.Node{ID: "n1", Addr: "n1:7410", CPU: 4000, MemoryMB: 4096})
	h.run(500*time.Millisecond, "v1 succeeded once a node joined", h.phase(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	if len(h.allocs(1)) != 2 {
		t.Errorf("allocations = %v", h.allocs(1))
	}
}

func TestUnchangedDesiredSetResentAfterResync(t *testing.T) {
	h := newHarness(t, "n1")
	id := h.deploy(webSpec("slipway/demo:v1", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	calls := len(h.agents.calls)
	h.pass()
	if len(h.agents.calls) != calls {
		t.Fatal("unchanged desired set re-sent at once")
	}
	h.clock.Add(31 * time.Second)
	h.pass()
	if len(h.agents.calls) != calls+1 {
		t.Fatalf("after the resync interval: %d syncs, want %d", len(h.agents.calls), calls+1)
	}
}

func TestBlueGreenPreviewPinThenSwitch(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	u := fast(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN, ScaleDownDelay: durationpb.New(5 * time.Second),
		BlueGreen: &deployv1.BlueGreenStrategy{PreviewHeader: "X-Preview"}})
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, u))
	h.run(500*time.Millisecond, "preview pinned", func() bool {
		in := h.routes.last("web")
		return len(in.GetPins()) == 1 && in.GetPins()[0].GetHeader() == "X-Preview" && in.GetPins()[0].GetRelease() == 2
	})
	if w := h.routes.last("web").GetWeights(); w["1"] != 100 {
		t.Fatalf("weights during preview = %v, want all on v1", w)
	}
	if len(h.allocs(2)) != 2 {
		t.Fatalf("new colour = %d instances, want 2 (full count)", len(h.allocs(2)))
	}
	h.command(v2, deployv1.CommandKind_COMMAND_KIND_PROMOTE)
	h.run(500*time.Millisecond, "switched", func() bool { return h.routes.last("web").GetWeights()["2"] == 100 })
	if len(h.allocs(1)) != 2 {
		t.Fatal("old colour stopped before scale_down_delay")
	}
	h.run(time.Second, "old colour stopped after the delay", func() bool { return len(h.allocs(1)) == 0 })
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
}

func TestRollbackDeploysTheEarlierSpec(t *testing.T) {
	h := newHarness(t, "n1")
	v1 := h.deploy(webSpec("slipway/demo:v1", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	v2 := h.deploy(webSpec("slipway/demo:v2", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v2 succeeded", h.phase(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	res, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_Rollback{Rollback: &statev1.RollbackOp{Service: "web", ToRelease: 1, RequestId: "rb"}}})
	if err != nil {
		t.Fatal(err)
	}
	v3 := res.(state.DeployResult).Rollout.GetId()
	h.run(500*time.Millisecond, "rollback succeeded", h.phase(v3, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	h.run(500*time.Millisecond, "v2 stopped", func() bool { return len(h.allocs(2)) == 0 })
	as := h.allocs(3)
	if len(as) != 1 || as[0].GetImage() != "slipway/demo:v1" {
		t.Fatalf("release 3 allocations = %v, want one running the v1 image", as)
	}
	if w := h.routes.last("web").GetWeights(); w["3"] != 100 {
		t.Errorf("weights = %v", w)
	}
}

func TestNodeBlinkKeepsLastStatus(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	u := canary()
	u.Canary.Steps[0].Manual = false
	u.Canary.Steps[0].Pause = durationpb.New(time.Minute)
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, u))
	h.run(500*time.Millisecond, "canary at 25%", func() bool { return h.routes.last("web").GetWeights()["2"] == 25 })
	all := []engine.Node{{ID: "n1", Addr: "n1:7410", CPU: 4000, MemoryMB: 4096}, {ID: "n2", Addr: "n2:7410", CPU: 4000, MemoryMB: 4096}}
	h.nodes.set(all[0]) // n2 blinks for less than its grace period
	for range 8 {
		h.clock.Add(500 * time.Millisecond)
		h.pass()
	}
	h.nodes.set(all...)
	h.pass()
	if ro := h.rollout(v2); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_RUNNING {
		t.Fatalf("after a blink: %v (%s), want still RUNNING", ro.GetState(), ro.GetMessage())
	}
	if n := len(h.allocs(1)) + len(h.allocs(2)); n != 3 {
		t.Errorf("%d allocations after a blink, want 3 (nothing replaced)", n)
	}
}

func TestAbortReturnsTrafficAtOnce(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	v2 := h.deploy(webSpec("slipway/demo:v2", 2, canary()))
	h.run(500*time.Millisecond, "canary at 25%", func() bool { return h.routes.last("web").GetWeights()["2"] == 25 })
	h.command(v2, deployv1.CommandKind_COMMAND_KIND_ABORT)
	h.pass()
	if ro := h.rollout(v2); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_ABORTED {
		t.Fatalf("after abort: %v", ro.GetState())
	}
	if in := h.routes.last("web"); in.GetWeights()["1"] != 100 || len(in.GetWeights()) != 1 {
		t.Fatalf("intent after abort = %v, want 100%% v1 in the same pass", in)
	}
	h.run(500*time.Millisecond, "v2 stopped", func() bool { return len(h.allocs(2)) == 0 })
	if len(h.allocs(1)) != 2 {
		t.Errorf("v1 instances = %d, want 2 kept", len(h.allocs(1)))
	}
	_, audit, _ := h.fsm.Releases("web", 0)
	found := false
	for _, a := range audit {
		if a.GetActor() == state.EngineActor && a.GetAction() == "rollout aborted" {
			found = true
		}
	}
	if !found {
		t.Errorf("no engine audit entry for the abort: %v", audit)
	}
}

func TestSpecTheMachineCannotRunFailsTheRollout(t *testing.T) {
	h := newHarness(t, "n1")
	u := &deployv1.UpdateStrategy{MinHealthyTime: durationpb.New(time.Minute), HealthyDeadline: durationpb.New(time.Second)}
	id := h.deploy(webSpec("slipway/demo:v1", 1, u))
	h.pass()
	ro := h.rollout(id)
	if ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_FAILED || !strings.Contains(ro.GetMessage(), "min_healthy_time") {
		t.Fatalf("rollout = %v %q, want FAILED naming min_healthy_time", ro.GetState(), ro.GetMessage())
	}
	h.pass()
	if len(h.allocs(1)) != 0 || len(h.raft.steps()) != 1 {
		t.Errorf("placed %d, committed %d steps; want nothing placed and one verdict", len(h.allocs(1)), len(h.raft.steps()))
	}
}

func TestDrainedNodeAllocationsMigrate(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	before := map[string]string{}
	for _, a := range h.allocs(1) {
		before[a.GetId()] = a.GetNodeId()
	}
	if len(before) != 2 {
		t.Fatalf("allocations %v, want 2", before)
	}
	if _, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{NodeId: "n2", Enable: true, By: "ops"}}}); err != nil {
		t.Fatal(err)
	}
	// The replacement on n1 fails its check: the allocation on n2 keeps
	// serving, and the machine never sees it (nor its replacement) twice.
	h.agents.mu.Lock()
	h.agents.sick["n1"] = true
	h.agents.mu.Unlock()
	for range 5 {
		h.pass()
		h.clock.Add(time.Second)
	}
	if as := h.allocs(1); len(as) != 3 {
		t.Fatalf("with the replacement unhealthy: %v, want the old allocation kept beside its replacement", as)
	}
	var onN2 string
	for id, node := range before {
		if node == "n2" {
			onN2 = id
		}
	}
	if !slices.Contains(h.agents.running(), onN2) {
		t.Fatalf("%s on the draining node stopped before its replacement was healthy (running %v)", onN2, h.agents.running())
	}
	h.agents.mu.Lock()
	h.agents.sick["n1"] = false
	h.agents.mu.Unlock()
	h.pass() // sees the replacement passing: the old one goes
	as := h.allocs(1)
	if len(as) != 2 || as[0].GetNodeId() != "n1" || as[1].GetNodeId() != "n1" {
		t.Fatalf("after draining n2: %v, want both on n1", as)
	}
	if slices.Contains(h.agents.running(), onN2) {
		t.Fatalf("%s still running after its replacement passed", onN2)
	}
	for _, a := range as {
		if was, ok := before[a.GetId()]; ok && was != "n1" {
			t.Errorf("allocation %s still on %s", a.GetId(), was)
		}
	}
	// Draining the only other node leaves nowhere to go: nothing moves.
	if _, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{NodeId: "n1", Enable: true, By: "ops"}}}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	if after := h.allocs(1); len(after) != 2 || after[0].GetId() != as[0].GetId() || after[1].GetId() != as[1].GetId() {
		t.Errorf("with every node drained: %v, want the allocations kept %v", after, as)
	}
}

// TestDrainWaitsForReplacementUntilDeadline: a replacement that never
// passes does not keep a drained node's allocation forever: after
// DrainDeadline it is stopped anyway, and the audit trail says why.
func TestDrainWaitsForReplacementUntilDeadline(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 1, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	as := h.allocs(1)
	if len(as) != 1 {
		t.Fatalf("allocations %v, want 1", as)
	}
	from := as[0].GetNodeId()
	other := map[string]string{"n1": "n2", "n2": "n1"}[from]
	h.agents.mu.Lock()
	h.agents.sick[other] = true
	h.agents.mu.Unlock()
	if _, err := h.raft.Apply(context.Background(), &statev1.Command{Op: &statev1.Command_DrainNode{DrainNode: &statev1.DrainNodeOp{NodeId: from, Enable: true, By: "ops"}}}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	h.clock.Add(4 * time.Minute)
	h.pass()
	if got := h.allocs(1); len(got) != 2 {
		t.Fatalf("before the drain deadline: %v, want the old allocation and its replacement", got)
	}
	h.clock.Add(2 * time.Minute) // past the default 5m
	h.pass()
	got := h.allocs(1)
	if len(got) != 1 || got[0].GetNodeId() != other {
		t.Fatalf("after the drain deadline: %v, want only the replacement on %s", got, other)
	}
	_, audit, err := h.fsm.Releases("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range audit {
		found = found || strings.Contains(a.GetDetail(), "drain deadline")
	}
	if !found {
		t.Errorf("no audit entry names the drain deadline: %v", audit)
	}
}
