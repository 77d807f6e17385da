// Package engine is the coordinator leader's engine. Each pass is a
// pipeline of four stages, each in its own file with a doc that states its
// contract:
//
//   - observe (observe.go): the world as plain values (an Observation: the
//     live nodes, the agents' allocation statuses, the edges'
//     acknowledgements, the time);
//   - decide (decide.go): pure, no I/O: package migrate moves the
//     allocations of lost and drained nodes, package rollout steps each
//     rollout's machine, package placement picks nodes; each decision is a
//     Plan of typed raft entries;
//   - commit (commit.go): a Plan's entries through raft, in order;
//   - act (act.go): from committed state only, each node gets its desired
//     set with a fencing token and each service its traffic intent.
//
// The engine runs only on the leader (the server starts it after a raft
// barrier and stops it when leadership is lost). Acting is declarative and
// idempotent, so a new leader first re-acts what was last committed: every
// node gets its committed desired set and every service its committed
// intent; rollouts resume from their committed machine State.
//
// It talks to the world through small interfaces (NodeSource, Routes,
// Agents, Raft) implemented by the consul, agentclient and (through the
// server's adapter) raftnode adapters.
package engine

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/heartbeat"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/nodepolicy"
	"slipway.dev/platform/specrules"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
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
	// Boot is the agent's boot id (catalog.MetaBoot), empty from an agent
	// that reports none. A change means the agent restarted: it holds no
	// secret values (they are in memory only), so it is sent its whole
	// desired set, with them, at once.
	Boot string
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
	// overwrites one of the same or a lower generation). When the store
	// holds a higher generation of the service (a newer leader wrote it
	// while this one was being deposed), it writes nothing and returns an
	// error wrapping ErrNewerIntent.
	WriteIntent(ctx context.Context, in *edgev1.TrafficIntent) error
	// Intents reads back every intent held now, by service; one that
	// cannot be decoded is present as nil. The engine compares them with
	// raft state on every pass and rewrites what was lost or changed.
	Intents(ctx context.Context) (map[string]*edgev1.TrafficIntent, error)
	// Acks returns the acknowledgements of every live edge.
	Acks(ctx context.Context) ([]*edgev1.EdgeAck, error)
}

// Fences is what a Routes that can fence nodes at the edges also
// implements (the consul adapter does): a fenced node's instances are
// routed by no edge, whatever Consul's checks say (catalog.FencesPrefix).
// The leader fences a lost node once migrate says so (Plan.Fence in package
// migrate) and lifts the fence once the node is live again and its agent
// runs nothing it no longer owns. Without it, a lost node's instances that
// the edges still route hold their replacements for FenceDeadline.
type Fences interface {
	// Fenced lists the fenced nodes.
	Fenced(ctx context.Context) (map[string]bool, error)
	// Fence fences a node; why is kept with it for people.
	Fence(ctx context.Context, node, why string) error
	// Unfence lifts a node's fence.
	Unfence(ctx context.Context, node string) error
}

// ErrNewerIntent is what Routes.WriteIntent returns (wrapped) when the
// store holds a higher generation of the service's intent than the one to
// write: generations only grow along the raft log, so it comes from a newer
// leader (or, after a restore of an older state, from the state before).
var ErrNewerIntent = errors.New("engine: the store holds a newer traffic intent")

// ErrStaleToken is what Agents.Sync returns (wrapped) when the agent
// refuses the fencing token: it has seen a newer leader's.
var ErrStaleToken = errors.New("engine: the agent holds a newer fencing token")

// Agents talks to node agents.
type Agents interface {
	// Sync sends a node its whole desired set. An error wraps
	// ErrStaleToken when the agent refuses token as stale.
	Sync(ctx context.Context, node Node, token *agentv1.FencingToken, allocs []*agentv1.Allocation) ([]*agentv1.AllocationStatus, error)
	// Status returns the node's allocations as its agent sees them.
	Status(ctx context.Context, node Node) ([]*agentv1.AllocationStatus, error)
}

// ErrNotLeader is what Raft.Apply returns (wrapped) when this node no
// longer leads: Run then stops.
var ErrNotLeader = errors.New("engine: not the raft leader")

// Raft commits entries (the server adapts *raftnode.Node to it).
type Raft interface {
	// Apply commits cmd and returns the FSM's response. An error wraps
	// ErrNotLeader when this node does not lead.
	Apply(ctx context.Context, cmd *statev1.Command) (any, error)
	// Term returns the current raft term (for fencing tokens).
	Term() (uint64, error)
}

// Signals answers the golden signals of one release over a window, merged
// across the edges (package signals on the leader).
type Signals interface {
	Window(service string, release uint64, from, to time.Time) analysis.Sample
}

// Secrets opens stored secret and config values (secretstore on the
// leader).
type Secrets interface {
	// Open returns the value of version of the secret or config.
	Open(kind deployv1.SecretKind, name string, version uint64) ([]byte, error)
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
	// Signals are the golden signals the edges report, for canary
	// analysis; nil: none (an analysed step then sees no data).
	Signals Signals
	// HTTPClient asks analysis webhooks; default a plain http.Client.
	HTTPClient *http.Client
	// GateAllow bounds the URLs analysis gates may reach (empty: any); a
	// gate outside it fails its window without being asked.
	GateAllow analysis.Allowlist
	// Logger receives the engine's logs.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Poll is the longest time between two passes; default 500ms.
	Poll time.Duration
	// IdlePoll replaces Poll while the engine is idle: no rollout to
	// step and no node lost within its grace (default 2s). A change of
	// the state, an edge's acknowledgement or a streamed status still
	// wakes it at once; what only a poll notices (a polled agent's
	// status, a streaming node's silence) is seen within IdlePoll.
	IdlePoll time.Duration
	// NodeGrace is how long a node may be missing before its allocations
	// are replaced; default 10s.
	NodeGrace time.Duration
	// DrainDeadline is how long an allocation on a draining node waits for
	// its replacement to pass its health check before it is stopped anyway;
	// default 5m.
	DrainDeadline time.Duration
	// FenceDeadline bounds how long the edges' acknowledgements may still
	// list the instances of a fenced node (an edge that does not know
	// fences): past it, they no longer count as serving, and the node's
	// allocations are replaced without waiting longer; default 30s.
	FenceDeadline time.Duration
	// CallTimeout bounds each call to an agent, Consul or raft; default 30s.
	CallTimeout time.Duration
	// SyncTimeout is each node's own deadline for one SyncAllocations
	// call (its agent may wait for starts and pulls); default CallTimeout.
	SyncTimeout time.Duration
	// SyncBackoff is the first wait before a node's failed sync is tried
	// again; it grows exponentially (with jitter) to 30s and resets on a
	// success. Default 500ms.
	SyncBackoff time.Duration
	// SyncWait is how long a pass waits for the syncs it started before
	// it goes on (the rest finish in their nodes' workers); default 1s.
	SyncWait time.Duration
	// Resync re-sends a node its unchanged desired set after this long
	// (anti-entropy); default 30s.
	Resync time.Duration
	// SyncBudget bounds the bytes of allocations in one node's
	// SyncAllocations request; default specrules.SyncBudgetBytes (the
	// gRPC message limit less room for the envelope). See desiredSets.
	SyncBudget int
	// Secrets opens the values of the secrets and configs allocations
	// mount, for the syncs of the nodes that run them; nil: none can be
	// opened (such allocations are sent without their data, and their
	// agents fail to start them until a leader that can open them syncs).
	Secrets Secrets
	// Heartbeats is the view the node agents' heartbeat streams feed
	// (package heartbeat, one per leadership term); nil: none. A node the
	// view judges (up or down by its heartbeats) is judged by it alone: a
	// node up by its heartbeats is live even while its Consul check fails,
	// one down by them is lost at once (its TTL elapsed), and the
	// statuses of a node with an open stream are taken from it instead of
	// asking its agent every pass. Every other node is judged by Nodes
	// (Consul's check) and NodeGrace.
	Heartbeats *heartbeat.View
	// OnStatuses, when set, receives after each pass the last status every
	// agent reported per allocation id (a fresh map; the statuses are not
	// to be modified). The dashboard shows instance health with it.
	OnStatuses func(map[string]*agentv1.AllocationStatus)
}

// Engine is the leader engine. Create it with New and run it with Run; it
// is not safe to Run twice at once.
type Engine struct {
	cfg Config
	log *slog.Logger

	// What was last acted, so that unchanged things are not re-sent. Reset
	// on every Run: a new leader re-acts everything.
	sync      *syncers           // per-node sync workers
	sets      map[string]nodeSet // node id -> its desired set, rebuilt when its allocations change
	done      map[string]bool    // rollouts final and done: never stepped again
	lastErr   string             // last pass error logged
	idle      bool               // the last pass had no rollout to step and no node lost: Run waits IdlePoll
	written   map[string]uint64  // service -> generation written
	newer     map[string]uint64  // service -> committed generation last found below what Routes holds (logged once)
	lostSince map[string]time.Time
	// signalsSince is the first whole second this engine has been leading:
	// the signals store holds whole windows only from then on.
	signalsSince time.Time
	failures     map[string]string                    // rollout id -> last placement failure reported
	statuses     map[string]*agentv1.AllocationStatus // last status reported per allocation
	// unowned are, per node, the statuses its agent last reported of
	// allocations the state does not hold (instances it still runs or
	// stops); see Observation.Unowned.
	unowned map[string][]*agentv1.AllocationStatus
	nodes   map[string]Node
	view    *allocView // the stored allocations as of an FSM index (allocs.go)
	// records are the FSM's node records as of FSM index recordsAt
	// (nodeRecords).
	records   []*clusterv1.Node
	recordsAt uint64
	// fenceDue are the lost nodes migrate says to fence (this pass);
	// fencedAt, since when each node fenced (as Routes holds them) is known
	// to this engine.
	fenceDue []string
	fencedAt map[string]time.Time
	hooks    map[string]*hookCall // rollout id -> analysis webhooks asked for its next window
	gates    map[string]*gateCall // rollout id -> the hooks of the gate it waits at, being asked
}

// New returns an engine; it does nothing until Run.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdlePoll <= 0 {
		cfg.IdlePoll = 2 * time.Second
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
	if cfg.FenceDeadline <= 0 {
		cfg.FenceDeadline = 30 * time.Second
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = cfg.CallTimeout
	}
	if cfg.SyncBackoff <= 0 {
		cfg.SyncBackoff = 500 * time.Millisecond
	}
	if cfg.SyncWait <= 0 {
		cfg.SyncWait = time.Second
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.SyncBudget <= 0 {
		cfg.SyncBudget = specrules.SyncBudgetBytes
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	return &Engine{cfg: cfg, log: cfg.Logger.With("component", "engine"), hooks: map[string]*hookCall{}, gates: map[string]*gateCall{}}
}

// Run drives rollouts until ctx ends or leadership is lost (then it returns
// an error wrapping ErrNotLeader).
func (e *Engine) Run(ctx context.Context) error {
	e.reset()
	e.startSyncers(ctx)
	defer e.stopSyncers()
	e.log.Info("engine started: re-acting the committed state")
	defer e.log.Info("engine stopped")
	notifier, _ := e.cfg.Routes.(interface{ Changed() <-chan struct{} })
	for {
		changed := e.cfg.FSM.Changed()
		var acked, beat <-chan struct{}
		if notifier != nil {
			acked = notifier.Changed()
		}
		if e.cfg.Heartbeats != nil {
			beat = e.cfg.Heartbeats.Changed() // a streamed status changed
		}
		wake, err := e.Pass(ctx)
		if errors.Is(err, ErrNotLeader) {
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
		if e.idle && err == nil {
			d = max(d, e.cfg.IdlePoll)
		}
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
		case <-beat:
		case <-t.C:
		}
		t.Stop()
	}
}

// Pass runs one pass, in four stages (each in its own file, with its
// contract): observe (observe.go) reads the nodes, the agents' statuses, the
// edges' acknowledgements and the time; commit (commit.go) records the
// nodes; decide (decide.go: packages migrate, rollout and placement, no
// I/O) plans the moves off lost and drained nodes and then each rollout's
// step, oldest first, each decision committed before the next is decided;
// act (act.go) sends the committed desired sets and intents. It returns the
// earliest time a rollout wants to be stepped again (zero for none). Run
// calls it in a loop; tests call it directly.
func (e *Engine) Pass(ctx context.Context) (time.Time, error) {
	if e.written == nil {
		e.reset()
	}
	if e.sync == nil {
		// Called without Run (tests): the workers live until Stop.
		e.startSyncers(context.Background())
	}
	obs, err := e.observe(ctx)
	if err != nil {
		// Without a view of the nodes nothing is decided.
		return time.Time{}, err
	}
	if e.cfg.OnStatuses != nil {
		out := make(map[string]*agentv1.AllocationStatus, len(e.statuses))
		for id, st := range e.statuses {
			out[id] = st
		}
		e.cfg.OnStatuses(out)
	}
	if err := e.commitNodes(ctx, obs); err != nil {
		return time.Time{}, err
	}
	moves, failures, err := e.decideMigrations(obs)
	if err != nil {
		return time.Time{}, err
	}
	if err := e.commitMigrations(ctx, moves, failures); err != nil {
		return time.Time{}, err
	}
	var wake time.Time
	steps := e.rolloutsToStep()
	e.idle = len(steps) == 0 && len(e.lostSince) == 0
	for _, ro := range steps {
		p, w, err := e.decideRollout(ro, obs)
		if err != nil {
			return time.Time{}, err
		}
		if err := e.commitRollout(ctx, p); err != nil {
			return time.Time{}, err
		}
		if !w.IsZero() && (wake.IsZero() || w.Before(wake)) {
			wake = w
		}
	}
	return wake, e.act(ctx)
}

// reset forgets what was acted: the next pass re-acts everything.
func (e *Engine) reset() {
	e.written, e.sets, e.newer = map[string]uint64{}, map[string]nodeSet{}, map[string]uint64{}
	e.lostSince, e.failures, e.done = map[string]time.Time{}, map[string]string{}, map[string]bool{}
	e.lastErr = ""
	e.statuses = map[string]*agentv1.AllocationStatus{}
	e.unowned = map[string][]*agentv1.AllocationStatus{}
	e.fenceDue, e.fencedAt = nil, map[string]time.Time{}
	e.signalsSince = time.Time{}
	e.view, e.records = nil, nil
}

// Stop stops the sync workers a Pass called without Run started (Run
// stops its own when it returns).
func (e *Engine) Stop() { e.stopSyncers() }

// call runs f with a context bounded by timeout: one call to an agent,
// Consul or raft.
func call[T any](ctx context.Context, timeout time.Duration, f func(context.Context) (T, error)) (T, error) {
	c, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(c)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
