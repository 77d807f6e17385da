package state

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/rollout"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// EngineActor is the actor recorded in the audit log for the leader engine's
// verdicts.
const EngineActor = "engine"

// StepResult is the Apply response of a rollout step entry.
type StepResult struct {
	// Index is the raft index of the entry (the decision's fencing index).
	Index uint64
	// Rollout is the rollout after the step, nil for a replacement only.
	Rollout *deployv1.Rollout
}

// validateStep checks a step entry against the state without changing it, so
// that a bad entry leaves no partial state.
func (f *FSM) validateStep(op *statev1.RolloutStepOp) error {
	if op.GetService() == "" {
		return fmt.Errorf("rollout step: service is empty: %w", ErrInvalid)
	}
	if id := op.GetRolloutId(); id != "" {
		ro := f.rollouts[id]
		if ro == nil {
			return fmt.Errorf("rollout step: rollout %q: %w", id, ErrNotFound)
		}
		if ro.GetService() != op.GetService() {
			return fmt.Errorf("rollout step: rollout %q belongs to %q, not %q: %w", id, ro.GetService(), op.GetService(), ErrInvalid)
		}
		if len(op.GetMachine()) == 0 {
			return fmt.Errorf("rollout step %s: machine is empty: %w", id, ErrInvalid)
		}
		if lc := op.GetLastCommand(); lc > uint64(len(ro.GetCommands())) {
			return fmt.Errorf("rollout step %s: last_command %d but only %d commands recorded: %w", id, lc, len(ro.GetCommands()), ErrInvalid)
		}
	}
	seen := map[string]bool{}
	for i, a := range op.GetPlace() {
		switch {
		case a.GetId() == "":
			return fmt.Errorf("rollout step: place[%d].id is empty: %w", i, ErrInvalid)
		case a.GetNodeId() == "":
			return fmt.Errorf("rollout step: place[%d].node_id is empty: %w", i, ErrInvalid)
		case a.GetService() != op.GetService():
			return fmt.Errorf("rollout step: place[%d].service is %q, not %q: %w", i, a.GetService(), op.GetService(), ErrInvalid)
		case seen[a.GetId()] || f.allocCreated[a.GetId()] != nil:
			return fmt.Errorf("rollout step: place[%d].id %q is already used: %w", i, a.GetId(), ErrInvalid)
		}
		seen[a.GetId()] = true
	}
	for id, old := range op.GetReplaces() {
		switch {
		case !seen[id]:
			return fmt.Errorf("rollout step: replaces[%q]: not placed by this step: %w", id, ErrInvalid)
		case f.allocCreated[old] == nil && !f.hasAllocation(old):
			return fmt.Errorf("rollout step: replaces[%q] = %q: no such allocation: %w", id, old, ErrInvalid)
		}
	}
	if in := op.GetIntent(); in != nil {
		if in.GetService() != op.GetService() {
			return fmt.Errorf("rollout step: intent.service is %q, not %q: %w", in.GetService(), op.GetService(), ErrInvalid)
		}
		if old := f.intents[op.GetService()]; old != nil && in.GetGeneration() <= old.GetGeneration() {
			return fmt.Errorf("rollout step: intent.generation %d is not above the current %d: %w", in.GetGeneration(), old.GetGeneration(), ErrInvalid)
		}
	}
	return nil
}

func (f *FSM) applyRolloutStep(index uint64, at *timestamppb.Timestamp, op *statev1.RolloutStepOp) any {
	if err := f.validateStep(op); err != nil {
		return err
	}
	// Allocations: place, drain, stop.
	touched := map[string]bool{}
	for _, a := range op.GetPlace() {
		a = proto.CloneOf(a)
		if a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_UNSPECIFIED {
			a.DesiredState = agentv1.DesiredState_DESIRED_STATE_RUNNING
		}
		f.allocations[a.GetNodeId()] = append(f.allocations[a.GetNodeId()], a)
		f.allocCreated[a.GetId()] = at
		if old := op.GetReplaces()[a.GetId()]; old != "" {
			f.replaces[a.GetId()] = old
		}
		touched[a.GetNodeId()] = true
	}
	drain := toSet(op.GetDrain())
	stop := toSet(op.GetStop())
	// An allocation still waiting for its replacement to be healthy leaves
	// with it: the rollout that drains or stops the new one means the old
	// one too.
	for changed := true; changed; { // to a fixed point: replacements may chain
		changed = false
		for id, old := range f.replaces {
			if stop[id] && !stop[old] {
				stop[old], changed = true, true
			}
			if drain[id] && !drain[old] {
				drain[old], changed = true, true
			}
		}
	}
	for id, old := range f.replaces {
		if stop[old] { // the old one is gone: the link has done its work
			delete(f.replaces, id)
		}
	}
	// Only the nodes whose allocations change are rewritten and re-sorted
	// (their lists are kept sorted by id, so the others need nothing).
	if len(drain)+len(stop) > 0 {
		for node, allocs := range f.allocations {
			changed := false
			for _, a := range allocs {
				if stop[a.GetId()] || drain[a.GetId()] && a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED {
					changed = true
					break
				}
			}
			if !changed {
				continue
			}
			kept := make([]*agentv1.Allocation, 0, len(allocs))
			for _, a := range allocs {
				if stop[a.GetId()] {
					delete(f.allocCreated, a.GetId())
					delete(f.replaces, a.GetId())
					continue
				}
				if drain[a.GetId()] && a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED {
					// Readers share stored allocations: replace, never modify.
					a = proto.CloneOf(a)
					a.DesiredState = agentv1.DesiredState_DESIRED_STATE_STOPPED
				}
				kept = append(kept, a)
			}
			if len(kept) == 0 {
				delete(f.allocations, node)
			} else {
				f.allocations[node] = kept
			}
			touched[node] = true
		}
	}
	for node := range touched {
		allocs := f.allocations[node]
		sort.Slice(allocs, func(i, j int) bool { return allocs[i].GetId() < allocs[j].GetId() })
		f.allocIndex[node] = index
	}
	if in := op.GetIntent(); in != nil {
		f.intents[op.GetService()] = proto.CloneOf(in)
	}
	id := op.GetRolloutId()
	if id == "" {
		for _, ev := range op.GetEvents() {
			f.addAudit(index, at, EngineActor, "", ev.GetKind(), op.GetService(), ev.GetMessage())
		}
		return StepResult{Index: index}
	}
	f.machines[id] = append([]byte(nil), op.GetMachine()...)
	ro := f.rollouts[id]
	prevState, prevStep := ro.GetState(), ro.GetStep()
	// A rollout superseded by a Deploy keeps its SUPERSEDED state: the
	// machine only catches up with it.
	if ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED {
		ro.State = op.GetPhase()
	}
	ro.Step = op.GetStep()
	ro.Message = op.GetMessage()
	ro.AwaitingPromote = op.GetAwaitingPromote() && !rollout.Terminal(ro.GetState())
	ro.Weights = cloneWeights(op.GetWeights())
	ro.UpdatedAt = at
	for i := 0; i < len(ro.GetCommands()) && uint64(i) < op.GetLastCommand(); i++ {
		ro.Commands[i].Applied = true
	}
	if ro.GetState() != prevState || ro.GetStep() != prevStep {
		ro.History = append(ro.History, &deployv1.RolloutStep{
			Index: ro.GetStep(), Description: ro.GetMessage(), At: at, Weights: cloneWeights(ro.GetWeights()), State: ro.GetState(),
		})
	}
	for _, ev := range op.GetEvents() {
		if ev.GetAnalysis().GetCounted() == deployv1.AnalysisResult_ANALYSIS_RESULT_FAIL {
			// A failed verdict is audited with its evidence (every verdict
			// is in the rollout's events).
			f.addAudit(index, at, EngineActor, "", "analysis failed", ro.GetService(), ro.GetId()+": "+ev.GetMessage())
		}
		f.observed(ro.GetService(), ev.GetKind(), ev.GetAnalysis())
		if e := f.addEvent(ro, at, ev.GetKind(), ev.GetMessage()); e != nil {
			e.Healthy = cloneWeights(op.GetHealthy())
			if a := ev.GetAnalysis(); a != nil {
				e.Analysis = proto.CloneOf(a)
			}
		}
	}
	if sr := f.services[ro.GetService()]; sr != nil && ro.GetState() != prevState {
		switch ro.GetState() {
		case deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED:
			sr.svc.StableRelease = ro.GetToRelease()
			sr.svc.UpdatedAt = at
		}
		// A rollout that reached a final state is no longer the service's
		// active one (a superseded rollout was replaced there already).
		if rollout.Terminal(ro.GetState()) && sr.svc.GetActiveRollout() == ro.GetId() {
			sr.svc.ActiveRollout = ""
			sr.svc.UpdatedAt = at
		}
		if rollout.Terminal(ro.GetState()) && ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED {
			f.addAudit(index, at, EngineActor, "", "rollout "+verdict(ro.GetState()), ro.GetService(), ro.GetId()+": "+ro.GetMessage())
		}
	}
	return StepResult{Index: index, Rollout: proto.CloneOf(ro)}
}

func verdict(s deployv1.RolloutState) string {
	switch s {
	case deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED:
		return "succeeded"
	case deployv1.RolloutState_ROLLOUT_STATE_FAILED:
		return "failed"
	case deployv1.RolloutState_ROLLOUT_STATE_REVERTED:
		return "reverted"
	case deployv1.RolloutState_ROLLOUT_STATE_ABORTED:
		return "aborted"
	}
	return s.String()
}

func toSet(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// Machine returns the committed rollout machine State (JSON) of a rollout,
// false when no step was committed for it yet.
func (f *FSM) Machine(rolloutID string) ([]byte, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, ok := f.machines[rolloutID]
	return append([]byte(nil), b...), ok
}

// SupersededBy returns the id of the rollout that superseded rolloutID,
// false when none did. A rollout restored from a snapshot written before
// the link was recorded has it only in its message ("superseded by <id>").
func (f *FSM) SupersededBy(rolloutID string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if by, ok := f.supersededBy[rolloutID]; ok {
		return by, true
	}
	ro := f.rollouts[rolloutID]
	if ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED {
		return "", false
	}
	by, ok := strings.CutPrefix(ro.GetMessage(), "superseded by ")
	return by, ok
}

// Intent returns a copy of the service's committed traffic intent, nil when
// none was committed.
func (f *FSM) Intent(service string) *edgev1.TrafficIntent {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if in := f.intents[service]; in != nil {
		return proto.CloneOf(in)
	}
	return nil
}

// Intents returns copies of every committed traffic intent, sorted by
// service.
func (f *FSM) Intents() []*edgev1.TrafficIntent {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*edgev1.TrafficIntent, 0, len(f.intents))
	for _, svc := range sortedKeys(f.intents) {
		out = append(out, proto.CloneOf(f.intents[svc]))
	}
	return out
}

// StoredAllocation is an allocation with the time it was committed.
type StoredAllocation struct {
	// Allocation is the allocation as sent to its node.
	Allocation *agentv1.Allocation
	// CreatedAt is when it was committed (zero for allocations written by
	// PutAllocations).
	CreatedAt *timestamppb.Timestamp
	// Replaces is the allocation on a draining node this one replaces,
	// empty for none.
	Replaces string
}

// AllAllocations returns every stored allocation, sorted by node id then
// allocation id. The allocations are shared with the FSM, not copies (a
// pass reads 100,000 of them several times): stored allocations are never
// modified, only replaced, so they are safe to read, but callers must not
// modify them (clone first).
func (f *FSM) AllAllocations() []StoredAllocation {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, allocs := range f.allocations {
		n += len(allocs)
	}
	out := make([]StoredAllocation, 0, n)
	for _, node := range sortedKeys(f.allocations) {
		out = f.appendStored(out, node)
	}
	return out
}

// NodeAllocations returns the stored allocations of one node, sorted by
// id, shared as in AllAllocations (not to be modified), and the index of
// the last entry that changed them: equal indexes mean equal sets.
func (f *FSM) NodeAllocations(node string) ([]StoredAllocation, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.appendStored(nil, node), f.allocIndex[node]
}

// AllocationIndexes returns, per node that ever held allocations, the index
// of the last entry that changed them (a node's desired set is unchanged
// while its index is).
func (f *FSM) AllocationIndexes() map[string]uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]uint64, len(f.allocIndex))
	for n, i := range f.allocIndex {
		out[n] = i
	}
	return out
}

func (f *FSM) appendStored(out []StoredAllocation, node string) []StoredAllocation {
	for _, a := range f.allocations[node] {
		out = append(out, StoredAllocation{Allocation: a, CreatedAt: f.allocCreated[a.GetId()], Replaces: f.replaces[a.GetId()]})
	}
	return out
}

// WeightKey is the string key of a release in weight maps.
func WeightKey(release uint64) string { return strconv.FormatUint(release, 10) }

// hasAllocation reports whether an allocation with id is stored.
func (f *FSM) hasAllocation(id string) bool {
	for _, allocs := range f.allocations {
		for _, a := range allocs {
			if a.GetId() == id {
				return true
			}
		}
	}
	return false
}
