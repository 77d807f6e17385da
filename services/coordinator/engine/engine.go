// Package engine is the coordinator leader's engine: it drives every active
// rollout through the pure rollout machine, places new allocations with
// package placement, commits each decision through raft before acting, and
// then acts: it sends each node its desired set with a fencing token, writes
// traffic intents for the edges and feeds the route barrier (edge
// acknowledgements) back to the machine. It also replaces the allocations of
// nodes that went away.
//
// The engine runs only on the leader (the server starts it after a raft
// barrier and stops it when leadership is lost). Acting is declarative and
// idempotent, so a new leader first re-acts what was last committed: every
// node gets its committed desired set and every service its committed
// intent; rollouts resume from their committed machine State.
//
// It talks to the world through small interfaces (NodeSource, Routes,
// Agents, Raft) implemented by the consul, agentclient and raftnode
// adapters.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/nodepolicy"
	"slipway.dev/platform/specrules"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// Node is a workload node as discovered (its agent passing in Consul).
type Node struct {
	// ID is the node id.
	ID string
	// Addr is the agent's gRPC address.
	Addr string
	// Labels are the node's labels.
	Labels map[string]string
	// CPU and MemoryMB are the node's capacity.
	CPU, MemoryMB int
	// Driver is "docker" or "process".
	Driver string
	// Security is what the node's agent allows beyond the hardened
	// container default.
	Security nodepolicy.Policy
}

// NodeSource discovers the live workload nodes.
type NodeSource interface {
	// Nodes returns every node whose agent is alive.
	Nodes(ctx context.Context) ([]Node, error)
}

// Routes is where traffic intents are written and the edges' acknowledgements
// read (the route barrier). When it also has a Changed() <-chan struct{}
// method, Run wakes up as soon as an acknowledgement changes.
type Routes interface {
	// WriteIntent writes a service's traffic intent (idempotent: it
	// overwrites).
	WriteIntent(ctx context.Context, in *edgev1.TrafficIntent) error
	// Intents reads back every intent held now, by service; one that
	// cannot be decoded is present as nil. The engine compares them with
	// raft state on every pass and rewrites what was lost or changed.
	Intents(ctx context.Context) (map[string]*edgev1.TrafficIntent, error)
	// Acks returns the acknowledgements of every live edge.
	Acks(ctx context.Context) ([]*edgev1.EdgeAck, error)
}

// Agents talks to node agents.
type Agents interface {
	// Sync sends a node its whole desired set.
	Sync(ctx context.Context, node Node, token *agentv1.FencingToken, allocs []*agentv1.Allocation) ([]*agentv1.AllocationStatus, error)
	// Status returns the node's allocations as its agent sees them.
	Status(ctx context.Context, node Node) ([]*agentv1.AllocationStatus, error)
}

// Raft commits entries (implemented by *raftnode.Node).
type Raft interface {
	// Apply commits cmd and returns the FSM's response.
	Apply(ctx context.Context, cmd *statev1.Command) (any, error)
	// Status returns the node's raft status (for the term).
	Status() (raftnode.Status, error)
}

// Config configures an Engine.
type Config struct {
	// Raft commits decisions; FSM is the state they are applied to.
	Raft Raft
	// FSM is the replicated state.
	FSM *state.FSM
	// Nodes discovers nodes.
	Nodes NodeSource
	// Routes writes intents and reads acknowledgements.
	Routes Routes
	// Agents talks to node agents.
	Agents Agents
	// Logger receives the engine's logs.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Poll is the longest time between two passes; default 500ms.
	Poll time.Duration
	// NodeGrace is how long a node may be missing before its allocations
	// are replaced; default 10s.
	NodeGrace time.Duration
	// DrainDeadline is how long an allocation on a draining node waits for
	// its replacement to pass its health check before it is stopped anyway;
	// default 5m.
	DrainDeadline time.Duration
	// CallTimeout bounds each call to an agent, Consul or raft; default 30s.
	CallTimeout time.Duration
	// Resync re-sends a node its unchanged desired set after this long
	// (anti-entropy); default 30s.
	Resync time.Duration
	// SyncBudget bounds the bytes of allocations in one node's
	// SyncAllocations request; default specrules.SyncBudgetBytes (the
	// gRPC message limit less room for the envelope). See desiredSets.
	SyncBudget int
}

// Engine is the leader engine. Create it with New and run it with Run; it
// is not safe to Run twice at once.
type Engine struct {
	cfg Config
	log *slog.Logger

	// What was last acted, so that unchanged things are not re-sent. Reset
	// on every Run: a new leader re-acts everything.
	synced    map[string]string    // node id -> fingerprint of the desired set sent
	syncedAt  map[string]time.Time // node id -> when it was sent
	done      map[string]bool      // rollouts final and done: never stepped again
	lastErr   string               // last pass error logged
	written   map[string]uint64    // service -> generation written
	lostSince map[string]time.Time
	failures  map[string]string                    // rollout id -> last placement failure reported
	statuses  map[string]*agentv1.AllocationStatus // last status reported per allocation
	nodes     map[string]Node
}

// New returns an engine; it does nothing until Run.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if cfg.NodeGrace <= 0 {
		cfg.NodeGrace = 10 * time.Second
	}
	if cfg.DrainDeadline <= 0 {
		cfg.DrainDeadline = 5 * time.Minute
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.SyncBudget <= 0 {
		cfg.SyncBudget = specrules.SyncBudgetBytes
	}
	return &Engine{cfg: cfg, log: cfg.Logger.With("component", "engine")}
}

// Run drives rollouts until ctx ends or leadership is lost (then it returns
// an error wrapping raftnode.ErrNotLeader).
func (e *Engine) Run(ctx context.Context) error {
	e.reset()
	e.log.Info("engine started: re-acting the committed state")
	defer e.log.Info("engine stopped")
	notifier, _ := e.cfg.Routes.(interface{ Changed() <-chan struct{} })
	for {
		changed := e.cfg.FSM.Changed()
		var acked <-chan struct{}
		if notifier != nil {
			acked = notifier.Changed()
		}
		wake, err := e.Pass(ctx)
		if errors.Is(err, raftnode.ErrNotLeader) {
			return err
		}
		switch {
		case err != nil && ctx.Err() == nil && err.Error() != e.lastErr:
			e.lastErr = err.Error() // the same error again is not logged again
			e.log.Warn("engine pass", "err", err)
		case err == nil && e.lastErr != "":
			e.lastErr = ""
			e.log.Info("engine pass succeeded again")
		}
		d := e.cfg.Poll
		if !wake.IsZero() {
			if w := wake.Sub(e.cfg.Now()); w < d {
				d = max(w, time.Millisecond)
			}
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-changed:
		case <-acked:
		case <-t.C:
		}
		t.Stop()
	}
}

// Pass runs one pass: observe, decide and commit, act. It returns the
// earliest time a rollout wants to be stepped again (zero for none). Run
// calls it in a loop; tests call it directly.
func (e *Engine) Pass(ctx context.Context) (time.Time, error) {
	if e.synced == nil {
		e.reset()
	}
	nodes, err := e.call(ctx, func(c context.Context) (any, error) { return e.cfg.Nodes.Nodes(c) })
	if err != nil {
		// Without a view of the nodes nothing is decided (a node missing
		// from a failed query is not a node gone).
		return time.Time{}, fmt.Errorf("engine: discover nodes: %w", err)
	}
	e.nodes = map[string]Node{}
	for _, n := range nodes.([]Node) {
		e.nodes[n.ID] = n
	}
	if err := e.upsertNodes(ctx); err != nil {
		return time.Time{}, err
	}
	e.observe(ctx)
	acks, err := e.call(ctx, func(c context.Context) (any, error) { return e.cfg.Routes.Acks(c) })
	if err != nil {
		return time.Time{}, fmt.Errorf("engine: read edge acks: %w", err)
	}
	if err := e.replaceLost(ctx); err != nil {
		return time.Time{}, err
	}
	wake, err := e.stepRollouts(ctx, acks.([]*edgev1.EdgeAck))
	if err != nil {
		return time.Time{}, err
	}
	return wake, e.act(ctx)
}

// reset forgets what was acted: the next pass re-acts everything.
func (e *Engine) reset() {
	e.synced, e.syncedAt, e.written = map[string]string{}, map[string]time.Time{}, map[string]uint64{}
	e.lostSince, e.failures, e.done = map[string]time.Time{}, map[string]string{}, map[string]bool{}
	e.lastErr = ""
	e.statuses = map[string]*agentv1.AllocationStatus{}
}

func (e *Engine) call(ctx context.Context, f func(context.Context) (any, error)) (any, error) {
	c, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	return f(c)
}

func (e *Engine) apply(ctx context.Context, cmd *statev1.Command) (any, error) {
	return e.call(ctx, func(c context.Context) (any, error) { return e.cfg.Raft.Apply(c, cmd) })
}

// upsertNodes records discovered nodes and marks missing ones down.
func (e *Engine) upsertNodes(ctx context.Context) error {
	now := e.cfg.Now()
	known := map[string]*clusterv1.Node{}
	for _, n := range e.cfg.FSM.Nodes() {
		known[n.GetId()] = n
	}
	ids := make([]string, 0, len(e.nodes))
	for id := range e.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		n := e.nodes[id]
		delete(e.lostSince, id)
		want := &clusterv1.Node{Id: n.ID, Address: n.Addr, Labels: n.Labels, CpuMhz: int32(n.CPU), MemoryMb: int32(n.MemoryMB),
			Status: clusterv1.NodeStatus_NODE_STATUS_READY, Driver: n.Driver, Security: securityProto(n.Security)}
		if old := known[id]; old != nil {
			cmp := proto.CloneOf(old)
			cmp.LastSeen, cmp.Draining = nil, false
			if proto.Equal(cmp, want) {
				continue
			}
		}
		if _, err := e.apply(ctx, &statev1.Command{Op: &statev1.Command_UpsertNode{UpsertNode: &statev1.UpsertNodeOp{Node: want}}}); err != nil {
			return fmt.Errorf("engine: record node %s: %w", id, err)
		}
		e.log.Info("node ready", "node", id, "addr", n.Addr)
	}
	for id, old := range known {
		if _, ok := e.nodes[id]; ok {
			continue
		}
		if _, ok := e.lostSince[id]; !ok {
			e.lostSince[id] = now
		}
		if old.GetStatus() == clusterv1.NodeStatus_NODE_STATUS_DOWN {
			continue
		}
		down := proto.CloneOf(old)
		down.Status = clusterv1.NodeStatus_NODE_STATUS_DOWN
		if _, err := e.apply(ctx, &statev1.Command{Op: &statev1.Command_UpsertNode{UpsertNode: &statev1.UpsertNodeOp{Node: down}}}); err != nil {
			return fmt.Errorf("engine: mark node %s down: %w", id, err)
		}
		e.log.Warn("node down", "node", id)
	}
	// Allocations on nodes never recorded (e.g. written before discovery)
	// also start their grace period.
	for _, sa := range e.cfg.FSM.AllAllocations() {
		id := sa.Allocation.GetNodeId()
		if _, ok := e.nodes[id]; ok {
			continue
		}
		if _, ok := e.lostSince[id]; !ok {
			e.lostSince[id] = now
		}
	}
	return nil
}

// observe collects the status of every allocation from the live agents.
// The last status of an allocation whose agent does not answer (or whose
// node is missing, within its grace period) is kept: a node that blinks
// does not make its instances look like new ones.
func (e *Engine) observe(ctx context.Context) {
	stored := map[string]bool{}
	byNode := map[string][]string{}
	for _, sa := range e.cfg.FSM.AllAllocations() {
		a := sa.Allocation
		stored[a.GetId()] = true
		byNode[a.GetNodeId()] = append(byNode[a.GetNodeId()], a.GetId())
	}
	for id := range e.statuses {
		if !stored[id] {
			delete(e.statuses, id)
		}
	}
	type result struct {
		node string
		sts  []*agentv1.AllocationStatus
		err  error
	}
	ch := make(chan result, len(e.nodes))
	for _, n := range e.nodes {
		go func() {
			c, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
			defer cancel()
			sts, err := e.cfg.Agents.Status(c, n)
			ch <- result{n.ID, sts, err}
		}()
	}
	for range e.nodes {
		r := <-ch
		if r.err != nil {
			e.log.Warn("agent status", "node", r.node, "err", r.err)
			continue
		}
		reported := map[string]bool{}
		for _, s := range r.sts {
			reported[s.GetAllocationId()] = true
			if stored[s.GetAllocationId()] {
				e.statuses[s.GetAllocationId()] = s
			}
		}
		// An allocation of this node the agent no longer reports is gone.
		for _, id := range byNode[r.node] {
			if !reported[id] {
				delete(e.statuses, id)
			}
		}
	}
}

// securityProto records a node's policy; nil when it allows nothing extra
// and any image, as nodes recorded before policies were reported.
func securityProto(p nodepolicy.Policy) *clusterv1.NodeSecurity {
	if !p.Privileged && len(p.Caps)+len(p.HostPaths)+len(p.Images) == 0 {
		return nil
	}
	return &clusterv1.NodeSecurity{Privileged: p.Privileged, Caps: p.Caps, HostPaths: p.HostPaths, Images: p.Images}
}
