package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/placement"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/nodepolicy"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// stepRollouts steps every rollout that is not done, oldest first, and
// commits each non-empty plan.
func (e *Engine) stepRollouts(ctx context.Context, acks []*edgev1.EdgeAck) (time.Time, error) {
	all := e.cfg.FSM.Rollouts("", false, 0) // newest first
	var wake time.Time
	for i := len(all) - 1; i >= 0; i-- {
		ro := all[i]
		if e.done[ro.GetId()] {
			continue
		}
		st, ok, err := e.machine(ro)
		if errors.Is(err, rollout.ErrInvalidSpec) {
			// The machine cannot run this spec: the rollout fails at once,
			// naming the field, and nothing is placed.
			if err := e.reject(ctx, ro, err); err != nil {
				return time.Time{}, err
			}
			continue
		}
		if err != nil {
			if e.failures[ro.GetId()] != err.Error() {
				e.failures[ro.GetId()] = err.Error()
				e.log.Error("cannot start rollout", "rollout", ro.GetId(), "err", err)
			}
			continue
		}
		if !ok {
			continue
		}
		if rollout.Done(st) {
			if state.IsFinal(ro.GetState()) {
				e.done[ro.GetId()] = true // nothing will change it again
			}
			continue
		}
		if ro.GetState() == deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED && !rollout.Terminal(st.Phase) {
			next, plan := rollout.Supersede(st, strings.TrimPrefix(ro.GetMessage(), "superseded by "))
			if err := e.commit(ctx, ro, st, next, plan, nil); err != nil {
				return time.Time{}, err
			}
			continue
		}
		obs := e.observation(ro, st, acks)
		next, plan := rollout.Step(st, obs)
		// A machine state committed before AwaitingPromote existed may wait
		// without the flag: its first Step sets it, with nothing else to
		// commit.
		if !plan.Empty() || next.AwaitingPromote != ro.GetAwaitingPromote() {
			if err := e.commit(ctx, ro, st, next, plan, obs.Instances); err != nil {
				return time.Time{}, err
			}
		}
		if w, ok := rollout.Wake(next, obs); ok && (wake.IsZero() || w.Before(wake)) {
			wake = w
		}
	}
	return wake, nil
}

// reject commits a failed verdict for a rollout the machine cannot run.
func (e *Engine) reject(ctx context.Context, ro *deployv1.Rollout, cause error) error {
	msg := "rejected: " + cause.Error()
	st := rollout.State{Service: ro.GetService(), From: ro.GetFromRelease(), To: ro.GetToRelease(),
		Phase: deployv1.RolloutState_ROLLOUT_STATE_FAILED, Stage: rollout.StageDone, Message: msg}
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("engine: encode machine of %s: %w", ro.GetId(), err)
	}
	if _, err := e.apply(ctx, &statev1.Command{Op: &statev1.Command_RolloutStep{RolloutStep: &statev1.RolloutStepOp{
		Service: ro.GetService(), RolloutId: ro.GetId(), Machine: raw, Phase: st.Phase, Message: msg, Weights: ro.GetWeights(),
		Events: []*statev1.StepEvent{{Kind: "failed", Message: msg}},
	}}}); err != nil {
		return fmt.Errorf("engine: reject %s: %w", ro.GetId(), err)
	}
	e.log.Warn("rollout rejected", "rollout", ro.GetId(), "err", cause)
	return nil
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
	if state.IsFinal(ro.GetState()) {
		return rollout.State{}, false, nil // superseded before it started
	}
	spec, err := e.releaseSpec(ro.GetService(), ro.GetToRelease())
	if err != nil {
		return rollout.State{}, false, err
	}
	cfg, err := rollout.ConfigFromSpec(spec.GetUpdate())
	if err != nil {
		return rollout.State{}, false, fmt.Errorf("engine: rollout %s: %w", ro.GetId(), err)
	}
	fromCount := 0
	if ro.GetFromRelease() != 0 {
		for _, sa := range e.cfg.FSM.AllAllocations() {
			a := sa.Allocation
			if a.GetService() == ro.GetService() && a.GetRelease() == ro.GetFromRelease() && a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED {
				fromCount++
			}
		}
	}
	sp := rollout.Spec{Service: ro.GetService(), From: ro.GetFromRelease(), FromCount: fromCount, To: ro.GetToRelease(),
		Count: int(spec.GetCount()), Config: cfg}
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
	rels, _, err := e.cfg.FSM.Releases(service, 0)
	if err != nil {
		return nil, fmt.Errorf("engine: releases of %s: %w", service, err)
	}
	for _, r := range rels {
		if r.GetNumber() == number {
			return r.GetSpec(), nil
		}
	}
	return nil, fmt.Errorf("engine: release %d of %s: %w", number, service, state.ErrNotFound)
}

// observation builds what the machine sees of a rollout's service.
func (e *Engine) observation(ro *deployv1.Rollout, st rollout.State, acks []*edgev1.EdgeAck) rollout.Observation {
	obs := rollout.Observation{Now: e.cfg.Now()}
	all := e.cfg.FSM.AllAllocations()
	leaving := map[string]bool{} // on a draining node, replaced: invisible to the machine
	for _, sa := range all {
		if sa.Replaces != "" {
			leaving[sa.Replaces] = true
		}
	}
	for _, sa := range all {
		if sa.Allocation.GetService() != ro.GetService() || leaving[sa.Allocation.GetId()] {
			continue
		}
		obs.Instances = append(obs.Instances, Instance(sa, e.statuses[sa.Allocation.GetId()]))
	}
	gen := st.Generation
	in := e.cfg.FSM.Intent(ro.GetService())
	if in != nil && in.GetGeneration() > gen {
		gen = in.GetGeneration()
	}
	obs.AckedGeneration = AckedGeneration(ro.GetService(), acks, gen)
	if in != nil && in.GetHost() == "" {
		// Not exposed at the edges (the release has no route host): no
		// edge routes to it or acknowledges it, so nothing waits for them.
		obs.AckedGeneration = gen
	}
	obs.Commands = Commands(ro)
	return obs
}

// Instance turns a stored allocation and its agent status (nil when the
// agent has not reported it) into what the rollout machine observes.
func Instance(sa state.StoredAllocation, st *agentv1.AllocationStatus) rollout.Instance {
	a := sa.Allocation
	in := rollout.Instance{ID: a.GetId(), Release: a.GetRelease(), Health: rollout.HealthStarting}
	if sa.CreatedAt != nil {
		in.CreatedAt = sa.CreatedAt.AsTime()
	}
	in.Since = in.CreatedAt
	if st == nil {
		return in
	}
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
	}
	if in.Since.Before(in.CreatedAt) {
		in.Since = in.CreatedAt
	}
	return in
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
		pins = append(pins, rollout.Pin{Header: p.GetHeader(), Release: p.GetRelease()})
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

// commit turns a plan into a step entry (placing its allocations) and
// commits it; nothing is acted on here.
func (e *Engine) commit(ctx context.Context, ro *deployv1.Rollout, prev, next rollout.State, plan rollout.Plan, seen []rollout.Instance) error {
	raw, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("engine: encode machine of %s: %w", ro.GetId(), err)
	}
	op := &statev1.RolloutStepOp{
		Service: ro.GetService(), RolloutId: ro.GetId(), Machine: raw,
		Phase: next.Phase, Step: int32(next.Step), Message: next.Message,
		Weights: weightsProto(next.Weights), LastCommand: next.LastCommand,
		Stop: plan.Stop, Healthy: healthyCounts(seen), AwaitingPromote: next.AwaitingPromote,
	}
	for _, ev := range plan.Events {
		op.Events = append(op.Events, &statev1.StepEvent{Kind: ev.Kind, Message: ev.Message})
	}
	if op.Message == "" && len(plan.Events) > 0 {
		op.Message = plan.Events[len(plan.Events)-1].Message
	}
	if len(plan.Place) > 0 {
		allocs, reason, err := e.place(ro.GetService(), plan.Place)
		if err != nil {
			return err
		}
		if reason != "" {
			// Not committed: the machine asks again on a later pass (e.g.
			// when a node joins). Report each distinct reason once.
			if e.failures[ro.GetId()] == reason {
				return nil
			}
			e.failures[ro.GetId()] = reason
			e.log.Warn("placement failed", "rollout", ro.GetId(), "reason", reason)
			// Record the reason for WatchRollout with the state before the
			// step (which still decides the same placement later).
			old, err := json.Marshal(prev)
			if err != nil {
				return fmt.Errorf("engine: encode machine of %s: %w", ro.GetId(), err)
			}
			if _, err := e.apply(ctx, &statev1.Command{Op: &statev1.Command_RolloutStep{RolloutStep: &statev1.RolloutStepOp{
				Service: ro.GetService(), RolloutId: ro.GetId(), Machine: old, Phase: ro.GetState(), Step: ro.GetStep(),
				Message: "waiting for placement: " + reason, Weights: ro.GetWeights(), LastCommand: prev.LastCommand,
				AwaitingPromote: prev.AwaitingPromote, Events: []*statev1.StepEvent{{Kind: "placement_failed", Message: reason}},
			}}}); err != nil {
				return fmt.Errorf("engine: record placement failure of %s: %w", ro.GetId(), err)
			}
			return nil
		}
		delete(e.failures, ro.GetId())
		op.Place = allocs
	}
	if t := plan.Traffic; t != nil {
		spec, err := e.releaseSpec(ro.GetService(), ro.GetToRelease())
		if err != nil {
			return err
		}
		op.Intent = Intent(ro.GetService(), spec, *t)
		op.Drain = t.Drain
	}
	if _, err := e.apply(ctx, &statev1.Command{Op: &statev1.Command_RolloutStep{RolloutStep: op}}); err != nil {
		return fmt.Errorf("engine: commit step of %s: %w", ro.GetId(), err)
	}
	e.log.Info("rollout step committed", "rollout", ro.GetId(), "phase", next.Phase, "step", next.Step,
		"placed", len(op.Place), "drain", len(op.Drain), "stop", len(op.Stop), "generation", op.GetIntent().GetGeneration(), "message", next.Message)
	return nil
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
func (e *Engine) placementState() placement.Snapshot {
	var snap placement.Snapshot
	draining := map[string]bool{}
	for _, n := range e.cfg.FSM.Nodes() {
		draining[n.GetId()] = n.GetDraining()
	}
	for _, n := range e.nodes {
		snap.NodeList = append(snap.NodeList, placement.Node{ID: n.ID, Ready: true, Draining: draining[n.ID], Labels: n.Labels,
			Attributes: map[string]string{"node.driver": n.Driver}, CPU: n.CPU, MemoryMB: n.MemoryMB, Policy: n.Security})
	}
	for _, sa := range e.cfg.FSM.AllAllocations() {
		a := sa.Allocation
		pa := placement.Allocation{ID: a.GetId(), Service: a.GetService(), NodeID: a.GetNodeId(), CPU: int(a.GetCpuMhz()), MemoryMB: int(a.GetMemoryMb())}
		if a.GetHostPort() != 0 {
			pa.HostPorts = []int{int(a.GetHostPort())}
		}
		snap.AllocList = append(snap.AllocList, pa)
	}
	return snap
}

// place makes placements concrete: allocation ids (unique: they carry the
// raft index the decision is based on) and nodes. A non-empty reason means
// some could not be placed and nothing should be committed.
func (e *Engine) place(service string, asks []rollout.Placement) ([]*agentv1.Allocation, string, error) {
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
		ask := placement.Ask{Service: service, Release: p.Release, CPU: int(tmpl.GetCpuMhz()), MemoryMB: int(tmpl.GetMemoryMb()), Security: securityAsk(tmpl)}
		for _, c := range spec.GetConstraints() {
			ask.Constraints = append(ask.Constraints, placement.Constraint{Attribute: c.GetAttribute(), Operator: c.GetOperator(), Value: c.GetValue()})
		}
		for range p.Count {
			id := fmt.Sprintf("%s-v%d-%d-%d", service, p.Release, base, k)
			k++
			ask.IDs = append(ask.IDs, id)
			templates[id] = tmpl
		}
		pasks = append(pasks, ask)
	}
	plan, err := placement.Place(e.placementState(), pasks, base)
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
		in.Pins = append(in.Pins, &edgev1.Pin{Header: p.Header, Release: p.Release})
	}
	return in
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
		a.Check = &agentv1.Check{Http: c.GetHttp(), Tcp: c.GetTcp(), Interval: c.GetInterval(), Timeout: c.GetTimeout()}
	}
	if sec := spec.GetSecurity(); sec != nil {
		a.Privileged, a.CapAdd = sec.GetPrivileged(), sec.GetCapAdd()
		for _, m := range sec.GetHostMounts() {
			a.Mounts = append(a.Mounts, &agentv1.Mount{HostPath: m.GetHostPath(), ContainerPath: m.GetContainerPath(), ReadOnly: m.GetReadOnly()})
		}
	}
	return proto.CloneOf(a)
}

// securityAsk is what an allocation asks of a node's policy.
func securityAsk(a *agentv1.Allocation) nodepolicy.Ask {
	ask := nodepolicy.Ask{Image: a.GetImage(), Privileged: a.GetPrivileged(), Caps: a.GetCapAdd()}
	for _, m := range a.GetMounts() {
		ask.Mounts = append(ask.Mounts, nodepolicy.Mount{HostPath: m.GetHostPath(), ContainerPath: m.GetContainerPath(), ReadOnly: m.GetReadOnly()})
	}
	return ask
}

// replaceLost replaces the allocations of nodes missing for longer than
// NodeGrace, and migrates those of nodes an operator drains.
//
// A lost node's allocations are gone: each running one gets a new
// allocation elsewhere, committed in the same entry that removes it. A
// drained node's allocations still serve, so they move in two entries: the
// first places each one's replacement (linked to it), and the old one keeps
// running until its replacement passes its health check (or DrainDeadline
// passes); the second removes it, and its agent drains it (deregistered,
// route barrier, graceful stop). Capacity never dips and traffic moves
// without a failed request. An allocation with nowhere to go stays where
// it is.
func (e *Engine) replaceLost(ctx context.Context) error {
	now := e.cfg.Now()
	lost := map[string]bool{}
	for id, since := range e.lostSince {
		if now.Sub(since) >= e.cfg.NodeGrace {
			lost[id] = true
		}
	}
	drained := map[string]bool{}
	for _, n := range e.cfg.FSM.Nodes() {
		if n.GetDraining() && !lost[n.GetId()] {
			drained[n.GetId()] = true
		}
	}
	if len(lost) == 0 && len(drained) == 0 {
		return nil
	}
	all := e.cfg.FSM.AllAllocations()
	replacement := map[string]state.StoredAllocation{} // old id -> its replacement
	for _, sa := range all {
		if sa.Replaces != "" {
			replacement[sa.Replaces] = sa
		}
	}
	byService := map[string][]*agentv1.Allocation{}
	for _, sa := range all {
		a := sa.Allocation
		onDrained := drained[a.GetNodeId()] && a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED
		if lost[a.GetNodeId()] || onDrained {
			byService[a.GetService()] = append(byService[a.GetService()], a)
		}
	}
	services := make([]string, 0, len(byService))
	for s := range byService {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, svc := range services {
		base := e.cfg.FSM.LastIndex()
		op := &statev1.RolloutStepOp{Service: svc, Replaces: map[string]string{}}
		var asks []placement.Ask
		old := map[string]*agentv1.Allocation{}
		var replaced, migrated []string
		for k, a := range byService[svc] {
			if a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED {
				op.Stop = append(op.Stop, a.GetId()) // draining anyway: gone
				continue
			}
			if r, ok := replacement[a.GetId()]; ok {
				switch {
				case lost[a.GetNodeId()]:
					op.Stop = append(op.Stop, a.GetId())
					replaced = append(replaced, fmt.Sprintf("%s on %s gone with its node; %s on %s replaces it", a.GetId(), a.GetNodeId(),
						r.Allocation.GetId(), r.Allocation.GetNodeId()))
				case e.replacementReady(r, now):
					op.Stop = append(op.Stop, a.GetId())
					migrated = append(migrated, fmt.Sprintf("%s on %s stopped: %s on %s %s", a.GetId(), a.GetNodeId(),
						r.Allocation.GetId(), r.Allocation.GetNodeId(), e.readiness(r, now)))
				}
				continue // its replacement is starting
			}
			id := fmt.Sprintf("%s-v%d-%d-%d", svc, a.GetRelease(), base, k)
			old[id] = a
			asks = append(asks, placement.Ask{Service: svc, Release: a.GetRelease(), IDs: []string{id}, CPU: int(a.GetCpuMhz()), MemoryMB: int(a.GetMemoryMb()),
				Security: securityAsk(a)})
		}
		if len(asks) > 0 {
			plan, err := placement.Place(e.placementState(), asks, base)
			if err != nil {
				return fmt.Errorf("engine: replace allocations of %s: %w", svc, err)
			}
			for _, p := range plan.Placements {
				a := proto.CloneOf(old[p.AllocID])
				was := a.GetId()
				if lost[a.GetNodeId()] {
					replaced = append(replaced, fmt.Sprintf("%s on %s replaced by %s on %s", was, a.GetNodeId(), p.AllocID, p.NodeID))
					op.Stop = append(op.Stop, was)
				} else {
					migrated = append(migrated, fmt.Sprintf("%s on %s: replacement %s placed on %s; it stops once that one is healthy", was, a.GetNodeId(), p.AllocID, p.NodeID))
					op.Replaces[p.AllocID] = was
				}
				a.Id, a.NodeId = p.AllocID, p.NodeID
				op.Place = append(op.Place, a)
			}
			for _, f := range plan.Failures {
				was := old[f.AllocID].GetId()
				if e.failures[was] != f.Reason { // each reason once
					e.failures[was] = f.Reason
					e.log.Warn("cannot move allocation off a lost or drained node yet", "service", svc, "was", was, "reason", f.Reason)
				}
			}
		}
		if len(op.Stop) == 0 && len(op.Place) == 0 {
			continue
		}
		if len(replaced) > 0 {
			op.Events = append(op.Events, &statev1.StepEvent{Kind: "replaced", Message: strings.Join(replaced, "; ")})
		}
		if len(migrated) > 0 {
			op.Events = append(op.Events, &statev1.StepEvent{Kind: "migrated", Message: strings.Join(migrated, "; ")})
		}
		if _, err := e.apply(ctx, &statev1.Command{Op: &statev1.Command_RolloutStep{RolloutStep: op}}); err != nil {
			return fmt.Errorf("engine: commit replacement for %s: %w", svc, err)
		}
		e.log.Info("moved allocations off lost or drained nodes", "service", svc, "placed", len(op.Place), "removed", len(op.Stop))
	}
	return nil
}

// replacementReady reports whether the allocation it replaces may stop:
// the replacement passes its health check, or DrainDeadline has passed
// since it was placed.
func (e *Engine) replacementReady(r state.StoredAllocation, now time.Time) bool {
	in := Instance(r, e.statuses[r.Allocation.GetId()])
	return in.Health == rollout.HealthPassing || r.CreatedAt != nil && now.Sub(in.CreatedAt) >= e.cfg.DrainDeadline
}

// readiness says why a replacement counts as ready, for the audit trail.
func (e *Engine) readiness(r state.StoredAllocation, now time.Time) string {
	if Instance(r, e.statuses[r.Allocation.GetId()]).Health == rollout.HealthPassing {
		return "passes its check"
	}
	return fmt.Sprintf("still not healthy after %s (drain deadline)", now.Sub(r.CreatedAt.AsTime()).Round(time.Second))
}

// act sends every live node whose desired set changed since it was last
// sent its whole set, and writes every changed traffic intent.
func (e *Engine) act(ctx context.Context) error {
	st, err := e.cfg.Raft.Status()
	if err != nil {
		return fmt.Errorf("engine: raft status: %w", err)
	}
	token := &agentv1.FencingToken{Term: st.Term, Index: e.cfg.FSM.LastIndex()}
	desired, held := desiredSets(e.cfg.FSM.AllAllocations(), e.cfg.SyncBudget)
	var errs []error
	for _, h := range held {
		errs = append(errs, h)
	}
	type result struct {
		node, fp string
		err      error
	}
	ch := make(chan result)
	n := 0
	for id, node := range e.nodes {
		fp := fingerprint(desired[id])
		if e.synced[id] == fp && e.cfg.Now().Sub(e.syncedAt[id]) < e.cfg.Resync {
			continue
		}
		n++
		go func() {
			c, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
			defer cancel()
			_, err := e.cfg.Agents.Sync(c, node, token, desired[id])
			ch <- result{id, fp, err}
		}()
	}
	for range n {
		r := <-ch
		if r.err != nil {
			if status.Code(r.err) == codes.FailedPrecondition {
				e.log.Warn("agent refused a stale fencing token", "node", r.node, "token", token, "err", r.err)
			}
			errs = append(errs, fmt.Errorf("engine: sync node %s: %w", r.node, r.err))
			continue
		}
		e.synced[r.node] = r.fp
		e.syncedAt[r.node] = e.cfg.Now()
	}
	errs = append(errs, e.writeIntents(ctx)...)
	return errors.Join(errs...)
}

func fingerprint(allocs []*agentv1.Allocation) string {
	var b strings.Builder
	for _, a := range allocs {
		raw, _ := proto.MarshalOptions{Deterministic: true}.Marshal(a)
		b.Write(raw)
		b.WriteByte(0)
	}
	return b.String()
}
