// Package state is the coordinator's replicated state: a deterministic raft
// FSM holding services, releases, rollouts, nodes, allocations, the
// idempotency index, rollout events, the audit log and the ACL tokens.
//
// Apply must be deterministic: it depends only on the entry, the state
// before it and the FSM's Retention (never on a clock, randomness or map
// order), so every replica that applies the same log with the same Retention
// reaches the same state, byte for byte.
package state

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/rollout"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// CurrentVersion is the newest schema version of log entries and snapshots
// this code understands and writes. Version 2 added the leader engine's
// rollout step entry and snapshot fields (machines, allocation records,
// intents), version 3 the ACL token entries and snapshot fields, version 4
// starts a deploy's or rollback's rollout from the release that serves (the
// one carrying most of the traffic intent in force) instead of the stable
// release, version 5 the secret entries and snapshot field, version 6 the
// batched node entry (upsert_nodes), version 7 secret scopes (checked at
// deploy and rollback), mounts pinned when a deploy is applied and a
// deploy's expected_release, version 8 the pruning of old secret versions
// (see SecretVersionsKept); older entries and snapshots are still read, and
// replay as they did.
const CurrentVersion = 8

// nodesVersion is the first schema version with the upsert_nodes entry.
const nodesVersion = 6

// versionFromServing is the first entry version whose deploys and rollbacks
// start their rollout from the serving release (see rollout.Serving).
const versionFromServing = 4

// DeployResult is the Apply response of a deploy or rollback entry.
type DeployResult struct {
	// Release is the release created, or found again on a replay. A
	// created release is the state's own (releases never change once
	// made): read it, do not modify it.
	Release *deployv1.Release
	// Rollout is the rollout to it.
	Rollout *deployv1.Rollout
	// Replayed is true when the request_id had been seen and nothing changed.
	Replayed bool
}

// RolloutResult is the Apply response of an operator command.
type RolloutResult struct {
	// Rollout is the rollout after the command was recorded.
	Rollout *deployv1.Rollout
	// Replayed is true when the command's request_id was already recorded
	// on the rollout and nothing changed.
	Replayed bool
}

// commandVerb names an operator command for messages.
func commandVerb(k deployv1.CommandKind, full bool) string {
	switch k {
	case deployv1.CommandKind_COMMAND_KIND_PROMOTE:
		if full {
			return "promote (full)"
		}
		return "promote"
	case deployv1.CommandKind_COMMAND_KIND_PAUSE:
		return "pause"
	case deployv1.CommandKind_COMMAND_KIND_RESUME:
		return "resume"
	case deployv1.CommandKind_COMMAND_KIND_ABORT:
		return "abort"
	}
	return k.String()
}

// NodeResult is the Apply response of a node entry.
type NodeResult struct {
	// Node is the node after the change.
	Node *clusterv1.Node
}

// IndexResult is the Apply response of entries that return nothing else.
type IndexResult struct {
	// Index is the raft index of the entry.
	Index uint64
}

// Default retention limits (see Retention).
const (
	// DefaultKeepEventRollouts is how many of each service's newest rollouts
	// keep their events.
	DefaultKeepEventRollouts = 50
	// DefaultKeepAudit is how many of each service's newest audit entries
	// are kept.
	DefaultKeepAudit = 1000
)

// Retention bounds the rollout events and the audit log. It is applied
// inside Apply, by counts only, so it is part of the replicated state
// machine: every coordinator of a cluster must run with the same Retention,
// or their states diverge. Releases and rollouts (with their step history)
// are always kept.
type Retention struct {
	// EventRollouts is how many of each service's newest rollouts keep their
	// events; the events of older rollouts are dropped once they are final
	// (an active rollout always keeps its events). Zero or less means
	// DefaultKeepEventRollouts.
	EventRollouts int
	// Audit is how many of each service's newest audit entries are kept
	// (entries about no service, such as node drains, count as one more
	// service); the oldest goes when a new one is appended. Zero or less
	// means DefaultKeepAudit.
	Audit int
}

func (r Retention) withDefaults() Retention {
	if r.EventRollouts <= 0 {
		r.EventRollouts = DefaultKeepEventRollouts
	}
	if r.Audit <= 0 {
		r.Audit = DefaultKeepAudit
	}
	return r
}

// Option configures an FSM.
type Option func(*FSM)

// WithEventObserver has observe called for every rollout event applied
// (with the verdict an analysis event counted, else unspecified), under
// the state's lock: it must be quick (a metric's Inc). It changes nothing
// the state holds.
func WithEventObserver(observe func(service, kind string, counted deployv1.AnalysisResult)) Option {
	return func(f *FSM) { f.observe = observe }
}

// observed tells the event observer, if any, of an applied event.
func (f *FSM) observed(service, kind string, a *deployv1.AnalysisVerdict) {
	if f.observe != nil {
		f.observe(service, kind, a.GetCounted())
	}
}

// WithRetention sets how much of the rollout events and the audit log the
// FSM keeps; zero fields keep their defaults.
func WithRetention(r Retention) Option {
	return func(f *FSM) { f.retention = r.withDefaults() }
}

type serviceRecord struct {
	svc      *deployv1.Service
	releases []*deployv1.Release // releases[i].Number == i+1
}

// FSM is the coordinator's state machine. It implements raft.FSM; its read
// methods are safe to call concurrently with Apply and return copies.
type FSM struct {
	mu           sync.RWMutex
	retention    Retention
	lastIndex    uint64
	services     map[string]*serviceRecord
	rollouts     map[string]*deployv1.Rollout
	rolloutOrder []string
	nodes        map[string]*clusterv1.Node
	allocations  map[string][]*agentv1.Allocation // by node id, sorted by id; stored allocations are never modified (replaced instead)
	allocIndex   map[string]uint64                // node id -> index of the last entry that changed its allocations (not replicated: derived)
	requests     map[string]*statev1.RequestRecord
	events       map[string][]*deployv1.RolloutEvent // rollout id -> its events, oldest first
	eventRolls   map[string][]string                 // service -> ids of its rollouts that hold events
	lastEvent    uint64                              // index of the last event issued (it may be trimmed)
	// term is the raft term of the last entry applied through Apply and
	// termFirstEvent the first event its term's entries recorded (0: none
	// yet). Not replicated state: only the notifier reads them, to send the
	// events of its own term (TermEventCursor).
	term, termFirstEvent uint64
	audit                map[string][]*deployv1.AuditEvent // service -> its audit trail, oldest first
	peers                map[string]*statev1.PeerAddress
	machines             map[string][]byte                 // rollout id -> rollout machine State JSON
	supersededBy         map[string]string                 // superseded rollout id -> the rollout that superseded it
	allocCreated         map[string]*timestamppb.Timestamp // allocation id -> commit time
	replaces             map[string]string                 // allocation id -> the draining-node allocation it replaces
	intents              map[string]*edgev1.TrafficIntent  // service -> traffic intent
	tokens               map[string]*statev1.TokenRecord   // accessor id -> token
	tokenHashes          map[[32]byte]string               // secret SHA-256 -> accessor id
	revoked              map[[32]byte]bool                 // secret SHA-256 of revoked tokens
	aclBooted            bool                              // the ACL bootstrap entry was applied
	secrets              map[string]*statev1.SecretRecord  // "<kind>/<name>" -> secret (ciphertext only)
	changed              chan struct{}                     // closed and replaced after every Apply/Restore
	observe              func(service, kind string, counted deployv1.AnalysisResult)
}

// Interface guards.
var _ raft.FSM = (*FSM)(nil)

// New returns an empty FSM with the default Retention unless an option
// sets one.
func New(opts ...Option) *FSM {
	f := &FSM{changed: make(chan struct{}), retention: Retention{}.withDefaults()}
	for _, o := range opts {
		o(f)
	}
	f.reset()
	return f
}

func (f *FSM) reset() {
	f.lastIndex = 0
	f.services = map[string]*serviceRecord{}
	f.rollouts = map[string]*deployv1.Rollout{}
	f.rolloutOrder = nil
	f.nodes = map[string]*clusterv1.Node{}
	f.allocations = map[string][]*agentv1.Allocation{}
	f.allocIndex = map[string]uint64{}
	f.requests = map[string]*statev1.RequestRecord{}
	f.events = map[string][]*deployv1.RolloutEvent{}
	f.eventRolls = map[string][]string{}
	f.lastEvent = 0
	f.audit = map[string][]*deployv1.AuditEvent{}
	f.peers = map[string]*statev1.PeerAddress{}
	f.machines = map[string][]byte{}
	f.supersededBy = map[string]string{}
	f.allocCreated = map[string]*timestamppb.Timestamp{}
	f.replaces = map[string]string{}
	f.intents = map[string]*edgev1.TrafficIntent{}
	f.tokens = map[string]*statev1.TokenRecord{}
	f.tokenHashes = map[[32]byte]string{}
	f.revoked = map[[32]byte]bool{}
	f.aclBooted = false
	f.secrets = map[string]*statev1.SecretRecord{}
}

// EncodeCommand marshals a log entry deterministically.
func EncodeCommand(cmd *statev1.Command) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("state: encode command: %w", err)
	}
	return b, nil
}

// Apply decodes and applies one raft log entry. The response is one of the
// *Result types or an error wrapping one of the package's sentinel errors.
func (f *FSM) Apply(l *raft.Log) any {
	cmd := &statev1.Command{}
	if err := proto.Unmarshal(l.Data, cmd); err != nil {
		f.mu.Lock()
		f.lastIndex = l.Index
		f.mu.Unlock()
		return fmt.Errorf("decode entry %d: %v: %w", l.Index, err, ErrInvalid)
	}
	f.mu.Lock()
	if l.Term != f.term {
		f.term, f.termFirstEvent = l.Term, 0
	}
	f.mu.Unlock()
	return f.applyCommand(l.Index, cmd, true)
}

// ApplyCommand applies a decoded entry committed at index. cmd stays the
// caller's: the state keeps copies of what it needs from it.
func (f *FSM) ApplyCommand(index uint64, cmd *statev1.Command) any {
	return f.applyCommand(index, cmd, false)
}

// applyCommand applies cmd; owned says the state may keep parts of cmd
// itself (Apply decoded it for this call alone).
func (f *FSM) applyCommand(index uint64, cmd *statev1.Command, owned bool) any {
	f.mu.Lock()
	defer func() {
		f.lastIndex = index
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}()
	if cmd.GetVersion() == 0 || cmd.GetVersion() > CurrentVersion {
		return fmt.Errorf("entry %d has version %d, this coordinator reads up to %d: %w", index, cmd.GetVersion(), CurrentVersion, ErrUnsupportedVersion)
	}
	at := cmd.GetAt()
	if at == nil {
		return fmt.Errorf("entry %d has no timestamp: %w", index, ErrInvalid)
	}
	switch op := cmd.GetOp().(type) {
	case *statev1.Command_Deploy:
		return f.applyDeploy(index, uint64(cmd.GetVersion()), at, op.Deploy, owned)
	case *statev1.Command_Rollback:
		return f.applyRollback(index, uint64(cmd.GetVersion()), at, op.Rollback)
	case *statev1.Command_Operator:
		return f.applyOperator(index, at, op.Operator)
	case *statev1.Command_RegisterPeer:
		p := op.RegisterPeer.GetPeer()
		if p.GetId() == "" {
			return fmt.Errorf("register peer: id is empty: %w", ErrInvalid)
		}
		f.peers[p.GetId()] = proto.CloneOf(p)
		return IndexResult{Index: index}
	case *statev1.Command_UpsertNode:
		return f.applyUpsertNode(index, at, op.UpsertNode)
	case *statev1.Command_UpsertNodes:
		if cmd.GetVersion() < nodesVersion {
			return fmt.Errorf("entry %d: an upsert_nodes entry needs schema version %d, it has %d: %w", index, nodesVersion, cmd.GetVersion(), ErrInvalid)
		}
		return f.applyUpsertNodes(index, at, op.UpsertNodes)
	case *statev1.Command_DrainNode:
		return f.applyDrainNode(index, at, op.DrainNode)
	case *statev1.Command_PutAllocations:
		id := op.PutAllocations.GetNodeId()
		if id == "" {
			return fmt.Errorf("put allocations: node_id is empty: %w", ErrInvalid)
		}
		allocs := make([]*agentv1.Allocation, 0, len(op.PutAllocations.GetAllocations()))
		for _, a := range op.PutAllocations.GetAllocations() {
			allocs = append(allocs, proto.CloneOf(a))
		}
		sort.Slice(allocs, func(i, j int) bool { return allocs[i].GetId() < allocs[j].GetId() })
		if len(allocs) == 0 {
			delete(f.allocations, id)
		} else {
			f.allocations[id] = allocs
		}
		f.allocIndex[id] = index
		return IndexResult{Index: index}
	case *statev1.Command_RolloutStep:
		return f.applyRolloutStep(index, at, op.RolloutStep)
	case *statev1.Command_Noop:
		return IndexResult{Index: index}
	case *statev1.Command_AclBootstrap:
		return f.applyACLBootstrap(index, at, op.AclBootstrap)
	case *statev1.Command_CreateToken:
		return f.applyCreateToken(index, at, op.CreateToken)
	case *statev1.Command_RevokeToken:
		return f.applyRevokeToken(index, at, op.RevokeToken)
	case *statev1.Command_PutSecret, *statev1.Command_DeleteSecret, *statev1.Command_RekeySecrets:
		if cmd.GetVersion() < secretsVersion {
			return fmt.Errorf("entry %d: a secret entry needs schema version %d, it has %d: %w", index, secretsVersion, cmd.GetVersion(), ErrInvalid)
		}
		switch op := op.(type) {
		case *statev1.Command_PutSecret:
			return f.applyPutSecret(index, uint64(cmd.GetVersion()), at, op.PutSecret)
		case *statev1.Command_DeleteSecret:
			return f.applyDeleteSecret(index, at, op.DeleteSecret)
		default:
			return f.applyRekeySecrets(op.(*statev1.Command_RekeySecrets).RekeySecrets)
		}
	default:
		return fmt.Errorf("entry %d has no known operation (written by a newer coordinator?): %w", index, ErrInvalid)
	}
}

// RolloutID is the id of the rollout to release number of service.
func RolloutID(service string, release uint64) string {
	return service + "-" + strconv.FormatUint(release, 10)
}

func (f *FSM) replay(rid string) (DeployResult, bool) {
	rec, ok := f.requests[rid]
	if !ok {
		return DeployResult{}, false
	}
	sr := f.services[rec.GetService()]
	res := DeployResult{Replayed: true}
	if sr != nil && rec.GetRelease() >= 1 && int(rec.GetRelease()) <= len(sr.releases) {
		res.Release = proto.CloneOf(sr.releases[rec.GetRelease()-1])
	}
	if r := f.rollouts[rec.GetRolloutId()]; r != nil {
		res.Rollout = proto.CloneOf(r)
	}
	return res, true
}

func (f *FSM) applyDeploy(index, version uint64, at *timestamppb.Timestamp, op *statev1.DeployOp, owned bool) any {
	if op.GetRequestId() == "" {
		return fmt.Errorf("deploy: request_id is empty: %w", ErrInvalid)
	}
	if res, ok := f.replayDeploy(op); ok {
		return res
	}
	spec := op.GetSpec()
	if spec.GetName() == "" {
		return fmt.Errorf("deploy: spec.name is empty: %w", ErrInvalid)
	}
	if op.ExpectedRelease != nil {
		var current uint64
		if sr := f.services[spec.GetName()]; sr != nil {
			current = uint64(len(sr.releases))
		}
		if current != op.GetExpectedRelease() {
			return &ReleaseChangedError{Service: spec.GetName(), Expected: op.GetExpectedRelease(), Current: current}
		}
	}
	// Pinned below and kept by release: a caller's message stays as sent.
	if !owned {
		spec = proto.CloneOf(spec)
	}
	pinned, err := f.checkMountsLocked(spec, version)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", spec.GetName(), err)
	}
	res := f.release(index, version, at, spec, 0, op.GetRequestId(), op.GetSupersede(), op.GetCreatedBy(), op.GetAccessorId(), op.GetReason(), "deploy")
	if rec := f.requests[op.GetRequestId()]; rec != nil {
		if _, ok := res.(DeployResult); ok {
			rec.UnpinnedSecrets, rec.UnpinnedConfigs = pinned[0], pinned[1]
		}
	}
	return res
}

func (f *FSM) applyRollback(index, version uint64, at *timestamppb.Timestamp, op *statev1.RollbackOp) any {
	if op.GetRequestId() == "" {
		return fmt.Errorf("rollback: request_id is empty: %w", ErrInvalid)
	}
	if res, ok := f.replayRollback(op); ok {
		return res
	}
	sr := f.services[op.GetService()]
	if sr == nil {
		return fmt.Errorf("service %q: %w", op.GetService(), ErrNotFound)
	}
	latest := uint64(len(sr.releases))
	target := op.GetToRelease()
	if target == 0 {
		if latest < 2 {
			return fmt.Errorf("rollback %s: release %d is its only release: %w", op.GetService(), latest, ErrNoEarlierRelease)
		}
		target = latest - 1
	}
	if target > latest {
		return fmt.Errorf("release %d of service %q (latest is %d): %w", target, op.GetService(), latest, ErrNotFound)
	}
	spec := proto.CloneOf(sr.releases[target-1].GetSpec())
	if _, err := f.checkMountsLocked(spec, version); err != nil {
		return fmt.Errorf("rollback %s to release %d: %w", op.GetService(), target, err)
	}
	reason := op.GetReason()
	if reason == "" {
		reason = fmt.Sprintf("rollback to release %d", target)
	}
	return f.release(index, version, at, spec, target, op.GetRequestId(), op.GetSupersede(), op.GetBy(), op.GetAccessorId(), reason, "rollback")
}

// release creates release latest+1 of spec and a pending rollout to it. It
// keeps spec: the caller passes a copy of its own.
// The rollout starts from the stable release, or (entries of version
// versionFromServing on) from the release that serves.
func (f *FSM) release(index, version uint64, at *timestamppb.Timestamp, spec *deployv1.ServiceSpec, rollbackOf uint64, rid string, supersede bool, by, accessor, reason, action string) any {
	name := spec.GetName()
	sr := f.services[name]
	if sr != nil && sr.svc.GetActiveRollout() != "" {
		active := f.rollouts[sr.svc.GetActiveRollout()]
		if active != nil && !rollout.Terminal(active.GetState()) {
			if !supersede {
				return fmt.Errorf("service %q has active rollout %s (%s); retry with supersede to replace it: %w",
					name, active.GetId(), active.GetState(), ErrActiveRollout)
			}
		}
	}
	if sr == nil {
		sr = &serviceRecord{svc: &deployv1.Service{Name: name}}
		f.services[name] = sr
	}
	number := uint64(len(sr.releases)) + 1
	newID := RolloutID(name, number)
	if active := f.rollouts[sr.svc.GetActiveRollout()]; active != nil && !rollout.Terminal(active.GetState()) {
		active.State = deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED
		active.AwaitingPromote = false
		active.Message = "superseded by " + newID
		active.UpdatedAt = at
		active.History = append(active.History, &deployv1.RolloutStep{
			Index: active.GetStep(), Description: "superseded by " + newID, At: at,
			Weights: cloneWeights(active.GetWeights()), State: active.GetState(),
		})
		f.addEvent(active, at, "superseded", "superseded by "+newID)
		f.observed(active.GetService(), "superseded", nil)
		f.supersededBy[active.GetId()] = newID
	}
	rel := &deployv1.Release{
		Service: name, Number: number, Spec: spec, CreatedAt: at,
		CreatedBy: by, Reason: reason, RequestId: rid, RollbackOf: rollbackOf, AccessorId: accessor,
	}
	sr.releases = append(sr.releases, rel)
	from := sr.svc.GetStableRelease()
	if version >= versionFromServing {
		from = f.servingRelease(name, from)
	}
	weights := map[string]int32{}
	if from != 0 {
		weights[strconv.FormatUint(from, 10)] = 100
	}
	desc := fmt.Sprintf("created release %d", number)
	if rollbackOf != 0 {
		desc = fmt.Sprintf("created release %d as a rollback to release %d", number, rollbackOf)
	}
	ro := &deployv1.Rollout{
		Id: newID, Service: name, FromRelease: from, ToRelease: number,
		Strategy: spec.GetUpdate().GetStrategy(), State: deployv1.RolloutState_ROLLOUT_STATE_PENDING,
		Weights: weights, CreatedAt: at, UpdatedAt: at, CreatedBy: by,
		History: []*deployv1.RolloutStep{{Index: 0, Description: desc, At: at, Weights: cloneWeights(weights), State: deployv1.RolloutState_ROLLOUT_STATE_PENDING}},
	}
	f.rollouts[newID] = ro
	f.rolloutOrder = append(f.rolloutOrder, newID)
	f.addEvent(ro, at, "created", desc)
	f.observed(ro.GetService(), "created", nil)
	f.trimEvents(name)
	sr.svc.LatestRelease = number
	sr.svc.ActiveRollout = newID
	sr.svc.Spec = rel.Spec
	sr.svc.UpdatedAt = at
	f.requests[rid] = &statev1.RequestRecord{RequestId: rid, Service: name, Release: number, RolloutId: newID}
	detail := desc
	if reason != "" {
		detail += ": " + reason
	}
	f.addAudit(index, at, by, accessor, action, name, detail)
	return DeployResult{Release: rel, Rollout: proto.CloneOf(ro)}
}

// servingRelease is the release a new rollout of service starts from (see
// rollout.Serving): of the releases its committed traffic intent routes to,
// and stable, the one with the most allocations not drained. A superseded
// rolling update may have drained every instance of the stable release.
func (f *FSM) servingRelease(service string, stable uint64) uint64 {
	w := map[uint64]int{}
	for k, v := range f.intents[service].GetWeights() {
		if n, err := strconv.ParseUint(k, 10, 64); err == nil {
			w[n] = int(v)
		}
	}
	running := map[uint64]int{}
	for _, allocs := range f.allocations {
		for _, a := range allocs {
			if a.GetService() == service && a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED {
				running[a.GetRelease()]++
			}
		}
	}
	return rollout.Serving(w, running, stable)
}

func (f *FSM) applyOperator(index uint64, at *timestamppb.Timestamp, op *statev1.OperatorOp) any {
	ro := f.rollouts[op.GetRolloutId()]
	if ro == nil {
		return fmt.Errorf("rollout %q: %w", op.GetRolloutId(), ErrNotFound)
	}
	switch op.GetKind() {
	case deployv1.CommandKind_COMMAND_KIND_PROMOTE, deployv1.CommandKind_COMMAND_KIND_PAUSE,
		deployv1.CommandKind_COMMAND_KIND_RESUME, deployv1.CommandKind_COMMAND_KIND_ABORT:
	default:
		return fmt.Errorf("operator command on %s: kind %v: %w", ro.GetId(), op.GetKind(), ErrInvalid)
	}
	verb := commandVerb(op.GetKind(), op.GetFull())
	if rid := op.GetRequestId(); rid != "" {
		// A retry (after an unknown outcome) finds its command recorded,
		// even when the rollout has finished since.
		for _, c := range ro.GetCommands() {
			if c.GetRequestId() != rid {
				continue
			}
			if c.GetKind() != op.GetKind() || c.GetFull() != op.GetFull() {
				return fmt.Errorf("request_id %q was used for another command (%s) on rollout %s; use a new request_id: %w", rid, commandVerb(c.GetKind(), c.GetFull()), ro.GetId(), ErrRequestReused)
			}
			return RolloutResult{Rollout: proto.CloneOf(ro), Replayed: true}
		}
	}
	if rollout.Terminal(ro.GetState()) {
		return fmt.Errorf("cannot %s rollout %s: it is %s: %w", verb, ro.GetId(), ro.GetState(), ErrRolloutFinal)
	}
	ro.Commands = append(ro.Commands, &deployv1.OperatorCommand{
		Kind: op.GetKind(), By: op.GetBy(), Reason: op.GetReason(), At: at, Full: op.GetFull(), AccessorId: op.GetAccessorId(),
		RequestId: op.GetRequestId(),
	})
	ro.UpdatedAt = at
	msg := verb + " requested"
	if op.GetBy() != "" {
		msg += " by " + op.GetBy()
	}
	if op.GetReason() != "" {
		msg += ": " + op.GetReason()
	}
	f.addEvent(ro, at, "command", msg)
	f.observed(ro.GetService(), "command", nil)
	f.addAudit(index, at, op.GetBy(), op.GetAccessorId(), verb, ro.GetService(), fmt.Sprintf("%s %s", verb, ro.GetId()))
	return RolloutResult{Rollout: proto.CloneOf(ro)}
}

func (f *FSM) applyUpsertNode(index uint64, at *timestamppb.Timestamp, op *statev1.UpsertNodeOp) any {
	n := op.GetNode()
	if n.GetId() == "" {
		return fmt.Errorf("upsert node: id is empty: %w", ErrInvalid)
	}
	nn := proto.CloneOf(n)
	if old := f.nodes[n.GetId()]; old != nil {
		nn.Draining = old.GetDraining()
	}
	if nn.LastSeen == nil {
		nn.LastSeen = at
	}
	f.nodes[n.GetId()] = nn
	return NodeResult{Node: proto.CloneOf(nn)}
}

// applyUpsertNodes records every node of op as applyUpsertNode would, or
// none when one is invalid (an empty or repeated id).
func (f *FSM) applyUpsertNodes(index uint64, at *timestamppb.Timestamp, op *statev1.UpsertNodesOp) any {
	seen := map[string]bool{}
	for i, n := range op.GetNodes() {
		if n.GetId() == "" {
			return fmt.Errorf("upsert nodes: nodes[%d]: id is empty: %w", i, ErrInvalid)
		}
		if seen[n.GetId()] {
			return fmt.Errorf("upsert nodes: nodes[%d]: node %s is named twice: %w", i, n.GetId(), ErrInvalid)
		}
		seen[n.GetId()] = true
	}
	for _, n := range op.GetNodes() {
		f.applyUpsertNode(index, at, &statev1.UpsertNodeOp{Node: n})
	}
	return IndexResult{Index: index}
}

func (f *FSM) applyDrainNode(index uint64, at *timestamppb.Timestamp, op *statev1.DrainNodeOp) any {
	n := f.nodes[op.GetNodeId()]
	if n == nil {
		return fmt.Errorf("node %q: %w", op.GetNodeId(), ErrNotFound)
	}
	n.Draining = op.GetEnable()
	action := "drain"
	if !op.GetEnable() {
		action = "undrain"
	}
	f.addAudit(index, at, op.GetBy(), op.GetAccessorId(), action, "", action+" node "+n.GetId())
	return NodeResult{Node: proto.CloneOf(n)}
}

// addEvent records an event of ro as it is now and returns it, or returns
// nil when retention drops it at once: ro is final and no longer one of its
// service's newest Retention.EventRollouts rollouts (its events are gone).
func (f *FSM) addEvent(ro *deployv1.Rollout, at *timestamppb.Timestamp, kind, msg string) *deployv1.RolloutEvent {
	if rollout.Terminal(ro.GetState()) && ro.GetToRelease() <= f.eventCutoff(ro.GetService()) {
		return nil
	}
	f.lastEvent++
	if f.termFirstEvent == 0 {
		f.termFirstEvent = f.lastEvent
	}
	ev := &deployv1.RolloutEvent{
		Index: f.lastEvent, RolloutId: ro.GetId(), At: at, Kind: kind, Message: msg,
		State: ro.GetState(), Step: ro.GetStep(), Weights: cloneWeights(ro.GetWeights()),
		AwaitingPromote: ro.GetAwaitingPromote(),
	}
	id := ro.GetId()
	if len(f.events[id]) == 0 {
		f.eventRolls[ro.GetService()] = append(f.eventRolls[ro.GetService()], id)
	}
	f.events[id] = append(f.events[id], ev)
	return ev
}

// eventCutoff is the newest release of service whose rollout is too old to
// keep events: zero while the service has at most Retention.EventRollouts
// releases.
func (f *FSM) eventCutoff(service string) uint64 {
	sr := f.services[service]
	if sr == nil {
		return 0
	}
	n, keep := uint64(len(sr.releases)), uint64(f.retention.EventRollouts)
	if n <= keep {
		return 0
	}
	return n - keep
}

// trimEvents drops the events of the service's final rollouts older than its
// newest Retention.EventRollouts. It looks only at the service's rollouts
// that still hold events (about Retention.EventRollouts of them), so a
// Deploy costs the same however long the history.
func (f *FSM) trimEvents(service string) {
	cutoff := f.eventCutoff(service)
	if cutoff == 0 {
		return
	}
	// The ids are in release order (a rollout's first event is made with
	// it), so only a prefix can be at or below the cutoff.
	ids := f.eventRolls[service]
	kept := ids[:0]
	for i, id := range ids {
		ro := f.rollouts[id]
		if ro.GetToRelease() > cutoff {
			kept = append(kept, ids[i:]...)
			break
		}
		// never the events of an active rollout
		if rollout.Terminal(ro.GetState()) {
			delete(f.events, id)
			continue
		}
		kept = append(kept, id)
	}
	clear(ids[len(kept):])
	f.eventRolls[service] = kept
}

// addAudit appends an audit entry, then drops the service's oldest entries
// beyond Retention.Audit. accessor is the accessor id of the token that
// asked (empty for the engine's own entries and with ACLs disabled).
func (f *FSM) addAudit(index uint64, at *timestamppb.Timestamp, actor, accessor, action, service, detail string) {
	trail := append(f.audit[service], &deployv1.AuditEvent{
		Index: index, At: at, Actor: actor, Action: action, Service: service, Detail: detail, AccessorId: accessor,
	})
	if excess := len(trail) - f.retention.Audit; excess > 0 {
		clear(trail[:excess])  // let the dropped entries be collected
		trail = trail[excess:] // append reallocates once the front is used up
	}
	f.audit[service] = trail
}

func cloneWeights(w map[string]int32) map[string]int32 {
	if w == nil {
		return nil
	}
	out := make(map[string]int32, len(w))
	for k, v := range w {
		out[k] = v
	}
	return out
}

// Snapshot captures the state for raft; Persist writes it as a
// statev1.Snapshot.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.MarshalSnapshot()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// MarshalSnapshot returns the state as a deterministic statev1.Snapshot
// encoding: equal states give equal bytes.
func (f *FSM) MarshalSnapshot() ([]byte, error) {
	f.mu.RLock()
	s := f.snapshotLocked()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	f.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("state: encode snapshot: %w", err)
	}
	return b, nil
}

func (f *FSM) snapshotLocked() *statev1.Snapshot {
	s := &statev1.Snapshot{Version: CurrentVersion, LastIndex: f.lastIndex}
	for _, name := range sortedKeys(f.services) {
		sr := f.services[name]
		s.Services = append(s.Services, &statev1.ServiceRecord{Service: sr.svc, Releases: sr.releases})
	}
	for _, id := range f.rolloutOrder {
		s.Rollouts = append(s.Rollouts, f.rollouts[id])
	}
	for _, id := range sortedKeys(f.nodes) {
		s.Nodes = append(s.Nodes, f.nodes[id])
	}
	for _, id := range sortedKeys(f.allocations) {
		s.Allocations = append(s.Allocations, f.allocations[id]...)
	}
	for _, id := range sortedKeys(f.requests) {
		s.Requests = append(s.Requests, f.requests[id])
	}
	// Events and audit entries in the order they were written (indexes
	// increase; entries of one raft entry keep their order).
	for _, id := range sortedKeys(f.events) {
		s.Events = append(s.Events, f.events[id]...)
	}
	slices.SortStableFunc(s.Events, func(a, b *deployv1.RolloutEvent) int { return cmp.Compare(a.GetIndex(), b.GetIndex()) })
	s.LastEventIndex = f.lastEvent
	for _, svc := range sortedKeys(f.audit) {
		s.Audit = append(s.Audit, f.audit[svc]...)
	}
	slices.SortStableFunc(s.Audit, func(a, b *deployv1.AuditEvent) int { return cmp.Compare(a.GetIndex(), b.GetIndex()) })
	for _, id := range sortedKeys(f.peers) {
		s.Peers = append(s.Peers, f.peers[id])
	}
	for _, id := range sortedKeys(f.machines) {
		s.Machines = append(s.Machines, &statev1.MachineRecord{RolloutId: id, State: f.machines[id]})
	}
	for _, id := range sortedKeys(f.supersededBy) {
		s.Supersessions = append(s.Supersessions, &statev1.SupersedeRecord{RolloutId: id, SupersededBy: f.supersededBy[id]})
	}
	for _, id := range sortedKeys(f.allocCreated) {
		s.AllocationRecords = append(s.AllocationRecords, &statev1.AllocationRecord{Id: id, CreatedAt: f.allocCreated[id], Replaces: f.replaces[id]})
	}
	for _, svc := range sortedKeys(f.intents) {
		s.Intents = append(s.Intents, f.intents[svc])
	}
	for _, id := range sortedKeys(f.tokens) {
		s.Tokens = append(s.Tokens, f.tokens[id])
	}
	s.AclBootstrapped = f.aclBooted
	for h := range f.revoked {
		s.RevokedSecretSha256 = append(s.RevokedSecretSha256, h[:])
	}
	slices.SortFunc(s.RevokedSecretSha256, bytes.Compare)
	for _, key := range sortedKeys(f.secrets) {
		s.Secrets = append(s.Secrets, f.secrets[key])
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Restore replaces the state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("state: read snapshot: %w", err)
	}
	return f.RestoreBytes(b)
}

// RestoreBytes replaces the state with an encoded statev1.Snapshot. On error
// the state is unchanged.
func (f *FSM) RestoreBytes(b []byte) error {
	s := &statev1.Snapshot{}
	if err := proto.Unmarshal(b, s); err != nil {
		return fmt.Errorf("state: decode snapshot: %v: %w", err, ErrInvalid)
	}
	if s.GetVersion() == 0 || s.GetVersion() > CurrentVersion {
		return fmt.Errorf("state: snapshot version %d, this coordinator reads up to %d: %w", s.GetVersion(), CurrentVersion, ErrUnsupportedVersion)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reset()
	f.lastIndex = s.GetLastIndex()
	for _, sr := range s.GetServices() {
		f.services[sr.GetService().GetName()] = &serviceRecord{svc: sr.GetService(), releases: sr.GetReleases()}
	}
	for _, r := range s.GetRollouts() {
		f.rollouts[r.GetId()] = r
		f.rolloutOrder = append(f.rolloutOrder, r.GetId())
	}
	for _, n := range s.GetNodes() {
		f.nodes[n.GetId()] = n
	}
	for _, a := range s.GetAllocations() {
		f.allocations[a.GetNodeId()] = append(f.allocations[a.GetNodeId()], a)
		f.allocIndex[a.GetNodeId()] = s.GetLastIndex()
	}
	for _, r := range s.GetRequests() {
		f.requests[r.GetRequestId()] = r
	}
	// A snapshot keeps what retention kept when it was taken; restoring it
	// trims nothing (the next Apply trims as it always does).
	f.lastEvent = s.GetLastEventIndex()
	for _, ev := range s.GetEvents() {
		id := ev.GetRolloutId()
		if len(f.events[id]) == 0 {
			svc := f.rollouts[id].GetService()
			f.eventRolls[svc] = append(f.eventRolls[svc], id)
		}
		f.events[id] = append(f.events[id], ev)
		f.lastEvent = max(f.lastEvent, ev.GetIndex()) // snapshots written before last_event_index
	}
	for _, a := range s.GetAudit() {
		f.audit[a.GetService()] = append(f.audit[a.GetService()], a)
	}
	for _, p := range s.GetPeers() {
		f.peers[p.GetId()] = p
	}
	for _, m := range s.GetMachines() {
		f.machines[m.GetRolloutId()] = m.GetState()
	}
	for _, r := range s.GetSupersessions() {
		f.supersededBy[r.GetRolloutId()] = r.GetSupersededBy()
	}
	for _, a := range s.GetAllocationRecords() {
		f.allocCreated[a.GetId()] = a.GetCreatedAt()
		if r := a.GetReplaces(); r != "" {
			f.replaces[a.GetId()] = r
		}
	}
	for _, in := range s.GetIntents() {
		f.intents[in.GetService()] = in
	}
	for _, t := range s.GetTokens() {
		f.putToken(t)
	}
	f.aclBooted = s.GetAclBootstrapped()
	for _, h := range s.GetRevokedSecretSha256() {
		if len(h) == 32 {
			f.revoked[[32]byte(h)] = true
		}
	}
	for _, r := range s.GetSecrets() {
		if s.GetVersion() < scopeVersion {
			// Written before scopes: every service could mount it.
			r.Services = []string{"*"}
		}
		f.secrets[secretKey(NormalKind(r.GetKind()), r.GetName())] = r
	}
	// Snapshots written before final rollouts were cleared from their
	// service may still name one as active.
	for _, sr := range f.services {
		if ro := f.rollouts[sr.svc.GetActiveRollout()]; ro != nil && rollout.Terminal(ro.GetState()) {
			sr.svc.ActiveRollout = ""
		}
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("state: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("state: close snapshot: %w", err)
	}
	return nil
}

func (s snapshot) Release() {}
