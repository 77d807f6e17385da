package engine

// The decide stage.
//
// Contract: decide does no I/O. From the Observation and the committed
// state (the FSM, read in memory) it returns a Plan: the typed raft entries
// to commit, in order. It is made of pure parts: package migrate (what
// becomes of the allocations of lost and drained nodes), package rollout
// (each rollout's machine) and package placement (which node gets a new
// allocation). Decisions are taken in a fixed order (the migrations, then
// the rollouts oldest first) and each one is committed before the next is
// decided, so that each decides from the state the previous one left, as
// one leader deciding alone must.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/migrate"
	"slipway.dev/coordinator/placement"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/coordinator/state"
	pspec "slipway.dev/platform/spec"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// Plan is one decision: the entries to commit, in order, and what to log.
type Plan struct {
	// Entries are committed one by one, in order.
	Entries []*statev1.RolloutStepOp
	// Rollout is the rollout the plan steps ("" for migrations).
	Rollout string
	// Next is the machine state the rollout moves to (when it has
	// entries).
	Next rollout.State
	// Rejected is why the machine cannot run the rollout's spec (nil
	// when it can).
	Rejected error
	// Stuck is why the rollout cannot start yet (e.g. its release is not
	// readable); nothing is committed.
	Stuck error
	// Done says the rollout is final and done: it is never stepped again.
	Done bool
	// PlacementFailed is why new allocations could not be placed ("" when
	// they were): the entry only records the reason.
	PlacementFailed string
	// Placed says the step's new allocations were all placed.
	Placed bool
	// Tell are the hooks told of the rollout's end once Entries are
	// committed.
	Tell []rollout.HookCall
}

// decideMigrations is the migrate stage of decide: the moves off lost and
// drained nodes, one entry per service.
func (e *Engine) decideMigrations(obs Observation) (Plan, []migrate.Failure, error) {
	in := migrate.Input{Now: obs.Now, Lost: obs.Lost, Draining: map[string]bool{}, DrainDeadline: e.cfg.DrainDeadline}
	for _, n := range e.nodeRecords() {
		if n.GetDraining() {
			in.Draining[n.GetId()] = true
		}
	}
	e.fenceDue = nil
	if len(in.Lost) == 0 && len(in.Draining) == 0 {
		return Plan{}, nil, nil
	}
	in.Routed, in.Bounds, in.Strays = obs.Routed, map[string]int{}, map[string]int{}
	v := e.allocs()
	for _, sa := range v.all {
		in.Allocations = append(in.Allocations, migrate.Alloc{Allocation: sa.Allocation, Replaces: sa.Replaces,
			CreatedAt: createdAt(sa), Health: Instance(sa, obs.Statuses[sa.Allocation.GetId()]).Health})
	}
	// Bounds and strays of the services with something to move only.
	for _, a := range in.Allocations {
		svc := a.Allocation.GetService()
		if _, ok := in.Bounds[svc]; ok || !in.Lost[a.Allocation.GetNodeId()] && !in.Draining[a.Allocation.GetNodeId()] {
			continue
		}
		if b, ok := e.servingBound(svc); ok {
			in.Bounds[svc] = b
		}
		for _, u := range Unowned(svc, obs.Unowned, func(id string) bool { return v.held[id] }) {
			if u.Health == rollout.HealthPassing {
				in.Strays[svc]++
			}
		}
	}
	in.Cluster = e.placementState(obs)
	in.Base = e.cfg.FSM.LastIndex()
	mp, err := migrate.Decide(in)
	if err != nil {
		return Plan{}, nil, fmt.Errorf("engine: %w", err)
	}
	e.fenceDue = mp.Fence
	var p Plan
	for _, mv := range mp.Moves {
		op := &statev1.RolloutStepOp{Service: mv.Service, Replaces: mv.Replaces, Stop: mv.Stop, Place: mv.Place}
		for _, ev := range mv.Events {
			op.Events = append(op.Events, &statev1.StepEvent{Kind: ev.Kind, Message: ev.Message})
		}
		p.Entries = append(p.Entries, op)
	}
	return p, mp.Failures, nil
}

// servingBound is the serving bound of a service (rollout.Config.
// ServingBound) by the spec of its newest release; false when it has none
// the machine could run.
func (e *Engine) servingBound(service string) (int, bool) {
	rels, _, err := e.cfg.FSM.Releases(service, 1)
	if err != nil || len(rels) == 0 {
		return 0, false
	}
	spec := rels[0].GetSpec()
	cfg, err := rollout.ConfigFromSpec(spec.GetUpdate())
	if err != nil {
		return 0, false
	}
	return cfg.ServingBound(int(spec.GetCount())), true
}

func createdAt(sa state.StoredAllocation) (t time.Time) {
	if sa.CreatedAt != nil {
		t = sa.CreatedAt.AsTime()
	}
	return t
}

// rolloutsToStep returns the rollouts to consider, oldest first.
func (e *Engine) rolloutsToStep() []*deployv1.Rollout {
	all := e.cfg.FSM.Rollouts("", false, 0) // newest first
	out := make([]*deployv1.Rollout, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		if !e.done[all[i].GetId()] {
			out = append(out, all[i])
		}
	}
	return out
}

// decideRollout steps one rollout's machine and returns its plan (with
// no entries when there is nothing to commit) and the time the machine
// wants to be stepped again (zero for none). An error fails the pass.
func (e *Engine) decideRollout(ro *deployv1.Rollout, obs Observation) (Plan, time.Time, error) {
	p := Plan{Rollout: ro.GetId()}
	st, ok, err := e.machine(ro)
	if errors.Is(err, rollout.ErrInvalidSpec) {
		// The machine cannot run this spec: the rollout fails at once,
		// naming the field, and nothing is placed.
		op, err2 := rejectEntry(ro, err)
		if err2 != nil {
			return Plan{}, time.Time{}, err2
		}
		p.Rejected, p.Entries = err, []*statev1.RolloutStepOp{op}
		return p, time.Time{}, nil
	}
	if err != nil {
		p.Stuck = err
		return p, time.Time{}, nil
	}
	if !ok {
		return p, time.Time{}, nil
	}
	if rollout.Done(st) {
		p.Done = rollout.Terminal(ro.GetState()) // nothing will change it again
		return p, time.Time{}, nil
	}
	if ro.GetState() == deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED && !rollout.Terminal(st.Phase) {
		by, _ := e.cfg.FSM.SupersededBy(ro.GetId())
		next, plan := rollout.Supersede(st, by)
		p, err := e.stepPlan(ro, st, next, plan, nil, obs)
		return p, time.Time{}, err
	}
	mobs := e.observation(ro, st, obs)
	next, plan := rollout.Step(st, mobs)
	var wake time.Time
	if w, ok := rollout.Wake(next, mobs); ok {
		wake = w
	}
	// A machine state committed before AwaitingPromote existed may wait
	// without the flag: its first Step sets it, with nothing else to
	// commit.
	if plan.Empty() && next.AwaitingPromote == ro.GetAwaitingPromote() {
		return p, wake, nil
	}
	p, err = e.stepPlan(ro, st, next, plan, mobs.Instances, obs)
	return p, wake, err
}

// rejectEntry is the failed verdict for a rollout the machine cannot run.
func rejectEntry(ro *deployv1.Rollout, cause error) (*statev1.RolloutStepOp, error) {
	msg := "rejected: " + cause.Error()
	st := rollout.State{Service: ro.GetService(), From: ro.GetFromRelease(), To: ro.GetToRelease(),
		Phase: deployv1.RolloutState_ROLLOUT_STATE_FAILED, Stage: rollout.StageDone, Message: msg}
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("engine: encode machine of %s: %w", ro.GetId(), err)
	}
	return &statev1.RolloutStepOp{
		Service: ro.GetService(), RolloutId: ro.GetId(), Machine: raw, Phase: st.Phase, Message: msg, Weights: ro.GetWeights(),
		Events: []*statev1.StepEvent{{Kind: "failed", Message: msg}},
	}, nil
}

// machine returns the committed machine State of a rollout, or a new one for
// a pending rollout; false when there is nothing to step.
func (e *Engine) machine(ro *deployv1.Rollout) (rollout.State, bool, error) {
	if raw, ok := e.cfg.FSM.Machine(ro.GetId()); ok {
		var st rollout.State
		if err := json.Unmarshal(raw, &st); err != nil {
			return rollout.State{}, false, fmt.Errorf("engine: decode machine of %s: %w", ro.GetId(), err)
		}
		return st, true, nil
	}
	if rollout.Terminal(ro.GetState()) {
		return rollout.State{}, false, nil // superseded before it started
	}
	rel, err := e.release(ro.GetService(), ro.GetToRelease())
	if err != nil {
		return rollout.State{}, false, err
	}
	spec := rel.GetSpec()
	cfg, err := rollout.ConfigFromSpec(spec.GetUpdate())
	if err != nil {
		return rollout.State{}, false, fmt.Errorf("engine: rollout %s: %w", ro.GetId(), err)
	}
	fromCount := 0
	var draining []rollout.PendingStop
	v := e.allocs()
	leaving := v.leaving // replaced on a draining node: migrate's
	for _, sa := range v.byService[ro.GetService()] {
		a := sa.Allocation
		switch {
		case a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED:
			if leaving[a.GetId()] {
				continue // invisible to the machine (observation)
			}
			// Drained (by a superseded or ended rollout) and not stopped
			// yet: still routed until the edges acknowledge its drain.
			draining = append(draining, rollout.PendingStop{ID: a.GetId(), Release: a.GetRelease()})
		case ro.GetFromRelease() != 0 && a.GetRelease() == ro.GetFromRelease():
			fromCount++
		}
	}
	sp := rollout.Spec{Service: ro.GetService(), From: ro.GetFromRelease(), FromCount: fromCount, To: ro.GetToRelease(),
		Count: int(spec.GetCount()), Config: cfg, Draining: draining,
		FastRollback: FastRollback(rel.GetNumber(), rel.GetRollbackOf(), pspec.RollbackWindow(spec.GetUpdate()))}
	if in := e.cfg.FSM.Intent(ro.GetService()); in != nil {
		sp.Generation = in.GetGeneration()
		sp.Weights, sp.Pins = fromIntent(in)
	}
	st, err := rollout.New(sp)
	if err != nil {
		return rollout.State{}, false, fmt.Errorf("engine: rollout %s: %w", ro.GetId(), err)
	}
	return st, true, nil
}

func (e *Engine) releaseSpec(service string, number uint64) (*deployv1.ServiceSpec, error) {
	rel, err := e.release(service, number)
	return rel.GetSpec(), err
}

func (e *Engine) release(service string, number uint64) (*deployv1.Release, error) {
	rels, _, err := e.cfg.FSM.Releases(service, 0)
	if err != nil {
		return nil, fmt.Errorf("engine: releases of %s: %w", service, err)
	}
	for _, r := range rels {
		if r.GetNumber() == number {
			return r, nil
		}
	}
	return nil, fmt.Errorf("engine: release %d of %s: %w", number, service, state.ErrNotFound)
}

// FastRollback is why release number, a rollback to release rollbackOf,
// skips its canary steps, preview and analysis (rollout.Spec.FastRollback):
// the target is one of the window latest releases before it (with window
// 3, release 8 returning to 5, 6 or 7). Empty for a release that is no
// rollback, or one to an older release, or when window is 0.
func FastRollback(number, rollbackOf uint64, window int) string {
	if rollbackOf == 0 || window <= 0 || rollbackOf >= number || number-rollbackOf > uint64(window) {
		return ""
	}
	return fmt.Sprintf("rollback to #%d within rollback_window %d", rollbackOf, window)
}

// observation builds what the machine sees of a rollout's service.
func (e *Engine) observation(ro *deployv1.Rollout, st rollout.State, obs Observation) rollout.Observation {
	mobs := rollout.Observation{Now: obs.Now}
	v := e.allocs()
	leaving := v.leaving          // on a draining node, replaced: invisible to the machine
	var moving []rollout.Instance // leaving, and may still serve: strays to the machine
	for _, sa := range v.byService[ro.GetService()] {
		in := Instance(sa, obs.Statuses[sa.Allocation.GetId()])
		if leaving[sa.Allocation.GetId()] {
			if _, live := obs.Nodes[sa.Allocation.GetNodeId()]; live && in.Health == rollout.HealthPassing || !live && obs.Routed[in.ID] {
				in.Health = rollout.HealthPassing
				moving = append(moving, in)
			}
			continue
		}
		mobs.Instances = append(mobs.Instances, in)
	}
	mobs.Unowned = append(Unowned(ro.GetService(), obs.Unowned, func(id string) bool { return v.held[id] }), moving...)
	gen := st.Generation
	in := e.cfg.FSM.Intent(ro.GetService())
	if in != nil && in.GetGeneration() > gen {
		gen = in.GetGeneration()
	}
	mobs.AckedGeneration = AckedGeneration(ro.GetService(), obs.Acks, gen)
	if in != nil && in.GetHost() == "" {
		// Not exposed at the edges (the release has no route host): no
		// edge routes to it or acknowledges it, so nothing waits for them.
		mobs.AckedGeneration = gen
	}
	mobs.Commands = Commands(ro)
	mobs.Signals = obs.Signals[ro.GetId()]
	mobs.Hook = obs.Hooks[ro.GetId()]
	return mobs
}

// Instance turns a stored allocation and its agent status (nil when the
// agent has not reported it: rollout.HealthUnknown) into what the rollout
// machine observes.
func Instance(sa state.StoredAllocation, st *agentv1.AllocationStatus) rollout.Instance {
	a := sa.Allocation
	in := rollout.Instance{ID: a.GetId(), Release: a.GetRelease(), Health: rollout.HealthUnknown}
	if sa.CreatedAt != nil {
		in.CreatedAt = sa.CreatedAt.AsTime()
	}
	in.Since = in.CreatedAt
	if st == nil {
		return in
	}
	in.Health = rollout.HealthStarting
	switch {
	case st.GetState() == agentv1.AllocationState_ALLOCATION_STATE_FAILED:
		in.Health = rollout.HealthDead
		in.Since = st.GetUpdatedAt().AsTime()
		in.Reason = st.GetError() // the agent's words: image missing, port taken, exit code
	case st.GetState() == agentv1.AllocationState_ALLOCATION_STATE_RUNNING && st.GetHealth() == agentv1.Health_HEALTH_PASSING:
		in.Health = rollout.HealthPassing
		in.Since = st.GetHealthySince().AsTime()
		if st.GetHealthySince() == nil {
			in.Since = st.GetUpdatedAt().AsTime()
		}
	case st.GetState() == agentv1.AllocationState_ALLOCATION_STATE_RUNNING && st.GetHealth() == agentv1.Health_HEALTH_CRITICAL:
		in.Health = rollout.HealthCritical
		in.Since = st.GetUpdatedAt().AsTime()
	case st.GetError() != "":
		// Starting again after an exit, or a start being retried: not
		// healthy since the agent said so, and why.
		in.Since = st.GetUpdatedAt().AsTime()
		in.Reason = st.GetError()
	}
	in.Restarts = int(st.GetRestarts())
	in.Progress = st.GetProgress()
	if in.Since.Before(in.CreatedAt) {
		in.Since = in.CreatedAt
	}
	return in
}

// Unowned is what the rollout machine sees of the unowned instances of a
// service (Observation.Unowned, by node): the ones their agent reports
// running (registered), with their health, nodes in id order; the ones it
// reports draining (deregistered), stopped, failed or not started yet
// cannot serve and are left out, as is any the state holds again by the
// time of the decision (held).
func Unowned(service string, byNode map[string][]*agentv1.AllocationStatus, held func(id string) bool) []rollout.Instance {
	var out []rollout.Instance
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		for _, st := range byNode[node] {
			if st.GetService() != service || st.GetState() != agentv1.AllocationState_ALLOCATION_STATE_RUNNING || held(st.GetAllocationId()) {
				continue
			}
			in := rollout.Instance{ID: st.GetAllocationId(), Release: st.GetRelease(), Health: rollout.HealthCritical, Since: st.GetUpdatedAt().AsTime()}
			if st.GetHealth() == agentv1.Health_HEALTH_PASSING {
				in.Health = rollout.HealthPassing
				if st.GetHealthySince() != nil {
					in.Since = st.GetHealthySince().AsTime()
				}
			}
			out = append(out, in)
		}
	}
	return out
}

// AckedGeneration is the route barrier for a service: the lowest generation
// acknowledged by every live edge. With no edge at all nothing can route to
// a drained instance, so current (the generation last issued) counts as
// acknowledged.
func AckedGeneration(service string, acks []*edgev1.EdgeAck, current uint64) uint64 {
	if len(acks) == 0 {
		return current
	}
	var lowest uint64
	for i, a := range acks {
		g := a.GetGenerations()[service]
		if i == 0 || g < lowest {
			lowest = g
		}
	}
	return lowest
}

// Commands numbers a rollout's recorded operator commands by position
// (Seq = index + 1).
func Commands(ro *deployv1.Rollout) []rollout.Command {
	out := make([]rollout.Command, 0, len(ro.GetCommands()))
	for i, c := range ro.GetCommands() {
		out = append(out, rollout.Command{Seq: uint64(i + 1), Kind: c.GetKind(), Full: c.GetFull(), By: c.GetBy(), Reason: c.GetReason()})
	}
	return out
}

func fromIntent(in *edgev1.TrafficIntent) (map[uint64]int, []rollout.Pin) {
	w := map[uint64]int{}
	for k, v := range in.GetWeights() {
		var n uint64
		if _, err := fmt.Sscan(k, &n); err == nil {
			w[n] = int(v)
		}
	}
	var pins []rollout.Pin
	for _, p := range in.GetPins() {
		pins = append(pins, rollout.Pin{Header: p.GetHeader(), Cookie: p.GetCookie(), Value: p.GetValue(), Release: p.GetRelease()})
	}
	return w, pins
}

func weightsProto(w map[uint64]int) map[string]int32 {
	out := make(map[string]int32, len(w))
	for k, v := range w {
		out[state.WeightKey(k)] = int32(v)
	}
	return out
}

// stepPlan turns the machine's step into its entry, placing its new
// allocations. When they cannot all be placed the entry only records the
// reason with the state before the step (which decides the same placement
// again later, e.g. when a node joins), and no entry at all when that
// reason was already recorded.
func (e *Engine) stepPlan(ro *deployv1.Rollout, prev, next rollout.State, plan rollout.Plan, seen []rollout.Instance, obs Observation) (Plan, error) {
	p := Plan{Rollout: ro.GetId(), Next: next, Tell: plan.Hooks}
	raw, err := json.Marshal(next)
	if err != nil {
		return Plan{}, fmt.Errorf("engine: encode machine of %s: %w", ro.GetId(), err)
	}
	op := &statev1.RolloutStepOp{
		Service: ro.GetService(), RolloutId: ro.GetId(), Machine: raw,
		Phase: next.Phase, Step: int32(next.Step), Message: next.Message,
		Weights: weightsProto(next.Weights), LastCommand: next.LastCommand,
		Stop: plan.Stop, Healthy: healthyCounts(seen), AwaitingPromote: next.AwaitingPromote,
	}
	for _, ev := range plan.Events {
		op.Events = append(op.Events, &statev1.StepEvent{Kind: ev.Kind, Message: ev.Message, Analysis: VerdictProto(ev.Analysis, next.To, next.From)})
	}
	if op.Message == "" && len(plan.Events) > 0 {
		op.Message = plan.Events[len(plan.Events)-1].Message
	}
	if len(plan.Place) > 0 {
		allocs, reason, err := e.place(ro.GetService(), plan.Place, obs)
		if err != nil {
			return Plan{}, err
		}
		if reason != "" {
			p.PlacementFailed = reason
			if e.failures[ro.GetId()] == reason { // each distinct reason once
				return p, nil
			}
			old, err := json.Marshal(prev)
			if err != nil {
				return Plan{}, fmt.Errorf("engine: encode machine of %s: %w", ro.GetId(), err)
			}
			p.Entries = []*statev1.RolloutStepOp{{
				Service: ro.GetService(), RolloutId: ro.GetId(), Machine: old, Phase: ro.GetState(), Step: ro.GetStep(),
				Message: "waiting for placement: " + reason, Weights: ro.GetWeights(), LastCommand: prev.LastCommand,
				AwaitingPromote: prev.AwaitingPromote, Events: []*statev1.StepEvent{{Kind: "placement_failed", Message: reason}},
			}}
			return p, nil
		}
		op.Place, p.Placed = allocs, true
	}
	if t := plan.Traffic; t != nil {
		spec, err := e.releaseSpec(ro.GetService(), ro.GetToRelease())
		if err != nil {
			return Plan{}, err
		}
		op.Intent = Intent(ro.GetService(), spec, *t)
		op.Drain = t.Drain
	}
	p.Entries = []*statev1.RolloutStepOp{op}
	return p, nil
}

func healthyCounts(ins []rollout.Instance) map[string]int32 {
	out := map[string]int32{}
	for _, in := range ins {
		if in.Health == rollout.HealthPassing {
			out[state.WeightKey(in.Release)]++
		}
	}
	return out
}

// placementState is the cluster as placement sees it: live nodes and every
// stored allocation.
func (e *Engine) placementState(obs Observation) placement.Snapshot {
	var snap placement.Snapshot
	draining := map[string]bool{}
	for _, n := range e.nodeRecords() {
		draining[n.GetId()] = n.GetDraining()
	}
	ids := make([]string, 0, len(obs.Nodes))
	for id := range obs.Nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		n := obs.Nodes[id]
		snap.NodeList = append(snap.NodeList, placement.Node{ID: n.ID, Ready: true, Draining: draining[n.ID], Labels: n.Labels,
			Attributes: map[string]string{"node.driver": n.Driver}, CPU: n.CPU, MemoryMB: n.MemoryMB, Policy: n.Security})
	}
	snap.AllocList = e.allocs().cluster // placement only reads it
	return snap
}

// place makes placements concrete: allocation ids (unique: they carry the
// raft index the decision is based on) and nodes. A non-empty reason means
// some could not be placed and nothing should be committed.
func (e *Engine) place(service string, asks []rollout.Placement, obs Observation) ([]*agentv1.Allocation, string, error) {
	base := e.cfg.FSM.LastIndex()
	var pasks []placement.Ask
	templates := map[string]*agentv1.Allocation{}
	k := 0
	for _, p := range asks {
		spec, err := e.releaseSpec(service, p.Release)
		if err != nil {
			return nil, "", err
		}
		tmpl := Template(spec, p.Release, p.Track)
		ask := placement.Ask{Service: service, Release: p.Release, CPU: int(tmpl.GetCpuMhz()), MemoryMB: int(tmpl.GetMemoryMb()),
			HostPorts: migrate.HostPorts(tmpl), Security: migrate.SecurityAsk(tmpl)}
		for _, c := range spec.GetConstraints() {
			ask.Constraints = append(ask.Constraints, placement.Constraint{Attribute: c.GetAttribute(), Operator: c.GetOperator(), Value: c.GetValue()})
		}
		if len(tmpl.GetVolumes()) > 0 {
			var all []*agentv1.Allocation
			for _, sa := range e.allocs().all {
				all = append(all, sa.Allocation)
			}
			ask.Constraints = append(ask.Constraints, VolumeConstraints(service, tmpl.GetVolumes(), all)...)
		}
		for range p.Count {
			id := fmt.Sprintf("%s-v%d-%d-%d", service, p.Release, base, k)
			k++
			ask.IDs = append(ask.IDs, id)
			templates[id] = tmpl
		}
		pasks = append(pasks, ask)
	}
	plan, err := placement.Place(e.placementState(obs), pasks, base)
	if err != nil {
		return nil, "", fmt.Errorf("engine: place %s: %w", service, err)
	}
	if len(plan.Failures) > 0 {
		return nil, plan.Failures[0].Reason, nil
	}
	out := make([]*agentv1.Allocation, 0, len(plan.Placements))
	for _, p := range plan.Placements {
		a := proto.CloneOf(templates[p.AllocID])
		a.Id, a.NodeId = p.AllocID, p.NodeID
		out = append(out, a)
	}
	return out, "", nil
}

// Intent is the traffic intent the edges receive for a service whose
// release spec routes it, with the machine's weights and pins.
func Intent(service string, spec *deployv1.ServiceSpec, t rollout.Traffic) *edgev1.TrafficIntent {
	in := &edgev1.TrafficIntent{Service: service, Generation: t.Generation,
		Host: spec.GetRoute().GetHost(), Path: spec.GetRoute().GetPath(), Weights: weightsProto(t.Weights)}
	for _, p := range t.Pins {
		in.Pins = append(in.Pins, &edgev1.Pin{Header: p.Header, Cookie: p.Cookie, Value: p.Value, Release: p.Release})
	}
	if st := spec.GetUpdate().GetCanary().GetSticky(); st.GetEnabled() && spec.GetUpdate().GetStrategy() == deployv1.Strategy_STRATEGY_CANARY {
		in.Sticky = &edgev1.Sticky{Cookie: pspec.StickyCookie(service, st), MaxAgeSeconds: int64(st.GetMaxAge().AsDuration().Seconds())}
	}
	return in
}

// VolumeConstraints keep a service with named volumes on the nodes that
// hold them: the docker driver (the one that runs volumes) and, once any
// allocation of the service with one of these volumes was placed (the
// agent created the volume there), only those nodes. A holder node that is
// gone leaves the instance unplaced until it is back: the data lives there.
func VolumeConstraints(service string, vols []*agentv1.Volume, allocs []*agentv1.Allocation) []placement.Constraint {
	out := []placement.Constraint{{Attribute: "node.driver", Operator: "=", Value: "docker"}}
	want := map[string]bool{}
	for _, v := range vols {
		want[v.GetName()] = true
	}
	holders := map[string]bool{}
	for _, a := range allocs {
		if a.GetService() != service || a.GetNodeId() == "" {
			continue
		}
		for _, v := range a.GetVolumes() {
			if want[v.GetName()] {
				holders[a.GetNodeId()] = true
			}
		}
	}
	if len(holders) == 0 {
		return out
	}
	var alts []string
	for _, n := range slices.Sorted(maps.Keys(holders)) {
		alts = append(alts, regexp.QuoteMeta(n))
	}
	return append(out, placement.Constraint{Attribute: "node.id", Operator: "regexp", Value: "^(" + strings.Join(alts, "|") + ")$"})
}

// fileOf is the allocation file of a mount, without its data (the leader
// fills that in for the sync only; see Engine.withData).
func fileOf(kind string, m *deployv1.FileMount) *agentv1.File {
	return &agentv1.File{Kind: kind, Name: m.GetName(), Version: m.GetVersion(), Target: m.GetTarget(), Mode: m.GetMode(), Uid: m.GetUid(), Gid: m.GetGid()}
}

// Template is the allocation of one instance of a release (without id and
// node).
func Template(spec *deployv1.ServiceSpec, release uint64, track string) *agentv1.Allocation {
	a := &agentv1.Allocation{
		Service: spec.GetName(), Release: release, Track: track, Image: spec.GetImage(), Env: spec.GetEnv(),
		Port: spec.GetPort(), CpuMhz: spec.GetResources().GetCpuMhz(), MemoryMb: spec.GetResources().GetMemoryMb(),
		DesiredState: agentv1.DesiredState_DESIRED_STATE_RUNNING, KillTimeout: spec.GetKillTimeout(), Args: spec.GetArgs(),
	}
	if c := spec.GetCheck(); c != nil {
		a.Check = &agentv1.Check{Http: c.GetHttp(), Tcp: c.GetTcp(), Interval: c.GetInterval(), Timeout: c.GetTimeout(), StartPeriod: c.GetStartPeriod()}
	}
	if r := pspec.RoutedPort(spec); r != nil {
		// The routed port stays in port and host_port (what the agent
		// registers in Consul and the edges route to); the others follow.
		a.Port, a.HostPort, a.PortName = r.GetPort(), r.GetHostPort(), r.GetName()
		for _, p := range spec.GetPorts() {
			if p != r {
				a.Ports = append(a.Ports, &agentv1.NamedPort{Name: p.GetName(), Port: p.GetPort(), HostPort: p.GetHostPort()})
			}
		}
		if a.Check != nil && spec.GetCheck().GetPort() != r.GetName() {
			a.Check.Port = spec.GetCheck().GetPort()
		}
	}
	if r := spec.GetRestart(); r != nil {
		a.Restart = &agentv1.RestartPolicy{Attempts: r.Attempts, Interval: r.GetInterval(), Delay: r.GetDelay(),
			Mode: agentv1.RestartMode(r.GetMode())}
	}
	a.StartDeadline = spec.GetUpdate().GetHealthyDeadline()
	for _, v := range spec.GetVolumes() {
		a.Volumes = append(a.Volumes, &agentv1.Volume{Name: v.GetName(), ContainerPath: v.GetTarget(), ReadOnly: v.GetReadOnly()})
	}
	a.Entrypoint, a.Labels, a.StopSignal = spec.GetEntrypoint(), spec.GetLabels(), spec.GetStopSignal()
	for _, m := range spec.GetSecrets() {
		a.Files = append(a.Files, fileOf("secret", m))
	}
	for _, m := range spec.GetConfigs() {
		a.Files = append(a.Files, fileOf("config", m))
	}
	if sec := spec.GetSecurity(); sec != nil {
		a.Privileged, a.CapAdd = sec.GetPrivileged(), sec.GetCapAdd()
		for _, m := range sec.GetHostMounts() {
			a.Mounts = append(a.Mounts, &agentv1.Mount{HostPath: m.GetHostPath(), ContainerPath: m.GetContainerPath(), ReadOnly: m.GetReadOnly()})
		}
	}
	return proto.CloneOf(a)
}
