// Package raftnode runs the coordinator's hashicorp/raft instance: bolt log
// and stable stores, file snapshots, the TCP transport, and Apply with the
// leader's clock stamped on every entry.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"
	"slipway.dev/platform/rpc"

	"slipway.dev/coordinator/state"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// ErrNotLeader: this node is not the leader (or lost leadership while the
// entry was in flight, in which case it may or may not have been committed:
// retry with the same request_id).
var ErrNotLeader = errors.New("raftnode: not the leader")

// ErrTimeout: raft could not take the operation in time (no quorum, or a
// leader overloaded); the operation was not committed and may be retried.
var ErrTimeout = errors.New("raftnode: timed out")

// ErrOutcomeUnknown: the entry was appended to this node's log but
// leadership was lost (or raft shut down) before it was committed. A later
// leader may still commit and apply it, or drop it: the caller cannot know.
// Retrying with the same request id settles it either way.
var ErrOutcomeUnknown = errors.New("raftnode: outcome unknown")

// defaultApplyTimeout bounds an Apply whose context has no deadline.
const defaultApplyTimeout = 10 * time.Second

// logCacheSize is how many of the latest raft entries are kept in memory in
// front of the log store.
const logCacheSize = 512

// Config configures a Node.
type Config struct {
	// ID is the raft server id.
	ID string
	// DataDir holds raft.db and snapshots/. Empty keeps everything in memory
	// (tests).
	DataDir string
	// BindAddr is the raft TCP listen address; ignored when Transport is set.
	BindAddr string
	// Advertise is the raft address other servers dial; empty means BindAddr.
	Advertise string
	// Creds secure the raft transport: mutual TLS where both ends must hold
	// a coordinator certificate. Plaintext TCP only with insecure Creds;
	// required unless Transport is set.
	Creds *rpc.Creds
	// Transport replaces the TCP transport (raft.InmemTransport in tests).
	Transport raft.Transport
	// Logger receives raft's logs at LogLevel in LogFormat.
	Logger *slog.Logger
	// LogLevel is "debug", "info", "warn" or "error"; default "warn".
	LogLevel string
	// LogJSON writes raft's logs as JSON.
	LogJSON bool
	// LogOutput is where raft's own logger writes; default stderr.
	LogOutput io.Writer
	// Registerer receives the raft metrics; nil means none.
	Registerer prometheus.Registerer
	// Timeouts are raft's failure-detection timeouts; zero fields take
	// DefaultTimeouts.
	Timeouts Timeouts
	// Tune, when set, adjusts the raft configuration last (timeouts in
	// tests).
	Tune func(*raft.Config)
}

// Timeouts are the raft timeouts that decide how fast a dead or isolated
// leader is replaced. A follower starts an election after hearing nothing
// from the leader for between Heartbeat and twice Heartbeat; a candidate
// waits between Election and twice Election for votes; a leader that has
// not heard from a quorum for LeaderLease steps down (its in-flight writes
// then have an unknown outcome). Shorter is faster failover and more
// spurious elections on a slow or loaded link.
type Timeouts struct {
	// Heartbeat is the follower's timeout without contact from the leader.
	Heartbeat time.Duration
	// Election is the candidate's timeout without a majority of votes; at
	// least Heartbeat.
	Election time.Duration
	// LeaderLease is how long a leader keeps leading without contact with a
	// quorum; at most Heartbeat.
	LeaderLease time.Duration
}

// DefaultTimeouts fit a LAN or one machine: a new leader within a second
// of a leader's death. A follower notices the death between Heartbeat and
// three times it after the last contact (raft re-arms its timer at random
// in [Heartbeat, 2*Heartbeat) and checks the last contact when it fires);
// the first survivor to notice is refused its pre-vote by the other while
// that one still knows the dead leader, and stands again after Election or
// when the other stands. Pre-vote also keeps a follower that merely missed
// heartbeats under load from deposing a healthy leader, and LeaderLease
// (how long the leader tolerates no contact with a quorum before it steps
// down) stays at 200 ms. Multiply all three (every coordinator alike) for
// slow or lossy links: five times for a WAN, as Consul's raft_multiplier.
var DefaultTimeouts = Timeouts{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond, LeaderLease: 200 * time.Millisecond}

// WithDefaults fills the zero fields from DefaultTimeouts.
func (t Timeouts) WithDefaults() Timeouts {
	if t.Heartbeat == 0 {
		t.Heartbeat = DefaultTimeouts.Heartbeat
	}
	if t.Election == 0 {
		t.Election = max(DefaultTimeouts.Election, t.Heartbeat)
	}
	if t.LeaderLease == 0 {
		t.LeaderLease = min(DefaultTimeouts.LeaderLease, t.Heartbeat)
	}
	return t
}

// Validate names what is wrong with t (after WithDefaults), in raft's own
// terms but with the flag-level names.
func (t Timeouts) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"heartbeat timeout", t.Heartbeat}, {"election timeout", t.Election}, {"leader lease timeout", t.LeaderLease}} {
		if d.v < 5*time.Millisecond {
			errs = append(errs, fmt.Errorf("raft %s %s is below the 5ms minimum", d.name, d.v))
		}
	}
	if t.Election < t.Heartbeat {
		errs = append(errs, fmt.Errorf("raft election timeout %s must be at least the heartbeat timeout %s", t.Election, t.Heartbeat))
	}
	if t.LeaderLease > t.Heartbeat {
		errs = append(errs, fmt.Errorf("raft leader lease timeout %s must be at most the heartbeat timeout %s", t.LeaderLease, t.Heartbeat))
	}
	return errors.Join(errs...)
}

// Server is one member of the raft configuration.
type Server struct {
	// ID is the raft server id.
	ID string
	// Address is its raft address.
	Address string
	// Voter is true for voters.
	Voter bool
}

// Status is this node's view of the cluster.
type Status struct {
	// Servers is the raft configuration, sorted by id.
	Servers []Server
	// LeaderID is the leader's id, empty if unknown.
	LeaderID string
	// Term, CommitIndex and AppliedIndex are this node's raft indexes.
	Term, CommitIndex, AppliedIndex uint64
}

// Node is a running raft member applying entries to a state.FSM.
type Node struct {
	id   string
	addr string
	raft *raft.Raft
	// changes wakes LeadershipChanges' readers; observer feeds it until
	// stopObs closes.
	changes   chan struct{}
	observer  *raft.Observer
	stopObs   chan struct{}
	stopOnce  sync.Once
	fsm       *state.FSM
	hasState  bool
	logs      raft.LogStore
	bootIndex uint64 // highest index on disk at start
	bootCmd   uint64 // index of the last command entry in the log at start
	bootTerm  uint64 // its term
	caughtUp  atomic.Bool
	closers   []io.Closer
	transport raft.Transport
	applies   *prometheus.CounterVec
	latency   prometheus.Histogram
}

// New starts raft for fsm. It neither bootstraps nor joins: see Bootstrap.
func New(cfg Config, fsm *state.FSM) (*Node, error) {
	if cfg.ID == "" {
		return nil, errors.New("raftnode: id is empty")
	}
	out := cfg.LogOutput
	if out == nil {
		out = os.Stderr
	}
	level := cfg.LogLevel
	if level == "" {
		level = "warn"
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.LevelFromString(level), Output: out, JSONFormat: cfg.LogJSON})

	to := cfg.Timeouts.WithDefaults()
	if err := to.Validate(); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = to.Heartbeat, to.Election, to.LeaderLease
	if cfg.Tune != nil {
		cfg.Tune(rc)
	}
	n := &Node{id: cfg.ID, fsm: fsm}

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if cfg.DataDir == "" {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("raftnode: data dir: %w", err)
		}
		bolt, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("raftnode: open %s: %w", filepath.Join(cfg.DataDir, "raft.db"), err)
		}
		n.closers = append(n.closers, bolt)
		fss, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl)
		if err != nil {
			n.closeAll()
			return nil, fmt.Errorf("raftnode: snapshot store: %w", err)
		}
		// Recent entries are served from memory: the leader reads every
		// entry back to replicate it, and a read from the store decodes
		// it again (Consul and Nomad keep the same cache).
		cache, err := raft.NewLogCache(logCacheSize, bolt)
		if err != nil {
			n.closeAll()
			return nil, fmt.Errorf("raftnode: log cache: %w", err)
		}
		logs, stable, snaps = cache, bolt, fss
	}

	trans := cfg.Transport
	if trans == nil {
		adv := cfg.Advertise
		if adv == "" {
			adv = cfg.BindAddr
		}
		advAddr, err := net.ResolveTCPAddr("tcp", adv)
		if err != nil {
			n.closeAll()
			return nil, fmt.Errorf("raftnode: advertise address %q: %w", adv, err)
		}
		tcp, err := newTransport(cfg.BindAddr, advAddr, cfg.Creds, hl)
		if err != nil {
			n.closeAll()
			return nil, fmt.Errorf("raftnode: raft transport on %s: %w", cfg.BindAddr, err)
		}
		n.closers = append(n.closers, tcp)
		trans = tcp
	}
	n.transport = trans
	n.addr = string(trans.LocalAddr())

	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		n.closeAll()
		return nil, fmt.Errorf("raftnode: inspect state: %w", err)
	}
	n.hasState = has
	n.logs = logs
	if n.bootIndex, err = lastIndexAtBoot(logs, snaps); err != nil {
		n.closeAll()
		return nil, fmt.Errorf("raftnode: inspect state: %w", err)
	}
	if n.bootCmd, n.bootTerm, err = lastCommand(logs, n.bootIndex); err != nil {
		n.closeAll()
		return nil, fmt.Errorf("raftnode: inspect state: %w", err)
	}
	r, err := raft.NewRaft(rc, fsm, logs, stable, snaps, trans)
	if err != nil {
		n.closeAll()
		return nil, fmt.Errorf("raftnode: start raft: %w", err)
	}
	n.raft = r
	n.watchLeadership()
	n.registerMetrics(cfg.Registerer)
	return n, nil
}

// watchLeadership turns raft's leader and state observations into
// LeadershipChanges.
func (n *Node) watchLeadership() {
	n.changes = make(chan struct{}, 1)
	n.stopObs = make(chan struct{})
	obs := make(chan raft.Observation, 16)
	n.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(n.observer)
	go func() {
		for {
			select {
			case <-obs:
				select {
				case n.changes <- struct{}{}:
				default: // one pending wake-up is enough
				}
			case <-n.stopObs:
				return
			}
		}
	}()
}

// LeadershipChanges receives (coalesced) whenever this node's raft state or
// the leader it knows changes, so that a caller reacting to leadership (the
// leader engine) need not wait for its next poll.
func (n *Node) LeadershipChanges() <-chan struct{} { return n.changes }

func (n *Node) registerMetrics(reg prometheus.Registerer) {
	n.applies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "slipway", Subsystem: "coordinator", Name: "raft_applies_total",
		Help: "Entries proposed through raft by this node, by result (ok, rejected: committed but refused by the FSM, error: not committed, unknown: leadership lost before commit).",
	}, []string{"result"})
	n.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "slipway", Subsystem: "coordinator", Name: "raft_apply_seconds",
		Help:    "Time from proposing an entry to its application on the leader.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
	})
	stateGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "slipway", Subsystem: "coordinator", Name: "raft_state",
		Help: "This node's raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.",
	}, func() float64 { return float64(n.raft.State()) })
	if reg != nil {
		reg.MustRegister(n.applies, n.latency, stateGauge)
	}
}

func (n *Node) closeAll() {
	for _, c := range n.closers {
		_ = c.Close()
	}
}

// ID is this node's raft id.
func (n *Node) ID() string { return n.id }

// Addr is this node's advertised raft address.
func (n *Node) Addr() string { return n.addr }

// HadState reports whether the node found raft state on disk at start (it
// was bootstrapped or joined before).
func (n *Node) HadState() bool { return n.hasState }

// lastIndexAtBoot is the highest raft index found on disk: the last log
// entry or the latest snapshot, whichever is higher.
func lastIndexAtBoot(logs raft.LogStore, snaps raft.SnapshotStore) (uint64, error) {
	idx, err := logs.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("last log index: %w", err)
	}
	metas, err := snaps.List()
	if err != nil {
		return 0, fmt.Errorf("list snapshots: %w", err)
	}
	for _, m := range metas {
		idx = max(idx, m.Index)
	}
	return idx, nil
}

// lastCommand returns the index and term of the last command entry at or
// below from in logs; zero when there is none (the snapshot, restored
// before raft starts, holds everything).
func lastCommand(logs raft.LogStore, from uint64) (index, term uint64, err error) {
	first, err := logs.FirstIndex()
	if err != nil {
		return 0, 0, fmt.Errorf("first log index: %w", err)
	}
	for i := from; i >= first && i > 0; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				return 0, 0, nil // compacted meanwhile: covered by a snapshot
			}
			return 0, 0, fmt.Errorf("read log %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			return i, l.Term, nil
		}
	}
	return 0, 0, nil
}

// BootIndex is the highest raft index this node had on disk when it started
// (zero for a new node).
func (n *Node) BootIndex() uint64 { return n.bootIndex }

// AppliedIndex is the index of the last command entry the FSM applied.
func (n *Node) AppliedIndex() uint64 { return n.fsm.LastIndex() }

// CaughtUp reports whether the FSM has replayed the state this node had
// before a restart, so that local reads see everything it had: the FSM has
// applied the last command entry of the log found at start. When that entry
// was never committed and a leader replaced it, the target becomes the last
// command entry raft has handed to the FSM since. Once true it stays true.
func (n *Node) CaughtUp() bool {
	if n.caughtUp.Load() {
		return true
	}
	ok := n.fsm.LastIndex() >= n.bootCmd
	if !ok {
		// raft has handed the FSM everything up to AppliedIndex, in order.
		if dispatched := n.raft.AppliedIndex(); dispatched >= n.bootCmd {
			var l raft.Log
			err := n.logs.GetLog(n.bootCmd, &l)
			if err == nil && (l.Type != raft.LogCommand || l.Term != n.bootTerm) {
				// Replaced: wait for the last command handed over since.
				if idx, _, err := lastCommand(n.logs, dispatched); err == nil {
					ok = n.fsm.LastIndex() >= idx
				}
			}
		}
	}
	if ok {
		n.caughtUp.Store(true)
	}
	return ok
}

// Bootstrap makes servers the initial configuration. Every server of a new
// cluster may call it with the identical list; it fails with
// raft.ErrCantBootstrap once the node has state.
func (n *Node) Bootstrap(servers []Server) error {
	cfg := raft.Configuration{}
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address)})
	}
	if err := n.raft.BootstrapCluster(cfg).Error(); err != nil {
		return fmt.Errorf("raftnode: bootstrap: %w", err)
	}
	return nil
}

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's id and raft address as this node knows them.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

func timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return defaultApplyTimeout
}

func notLeader(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrRaftShutdown) {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	if errors.Is(err, raft.ErrEnqueueTimeout) {
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	return err
}

// Apply stamps cmd with the schema version and the leader's clock, commits it
// and returns the FSM's response. A response that is an error (a domain
// error of package state) is returned as the error.
func (n *Node) Apply(ctx context.Context, cmd *statev1.Command) (any, error) {
	cmd.Version = state.CurrentVersion
	cmd.At = timestamppb.Now()
	b, err := state.EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	fut := n.raft.Apply(b, timeout(ctx))
	if err := fut.Error(); err != nil {
		if errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			// Appended here, not known to be committed: a new leader
			// holding it in its log will commit it.
			n.applies.WithLabelValues("unknown").Inc()
			return nil, fmt.Errorf("raftnode: apply: %s lost leadership before the entry was committed: %w: %v", n.id, ErrOutcomeUnknown, err)
		}
		n.applies.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("raftnode: apply: %w", notLeader(err))
	}
	n.latency.Observe(time.Since(start).Seconds())
	resp := fut.Response()
	if err, ok := resp.(error); ok {
		n.applies.WithLabelValues("rejected").Inc()
		return nil, err
	}
	n.applies.WithLabelValues("ok").Inc()
	return resp, nil
}

// VerifyLeader confirms with a quorum that this node still leads, so a read
// of the local state reflects every acknowledged write.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("raftnode: verify leader: %w", notLeader(err))
	}
	// VerifyLeader does not wait for the FSM: make sure everything committed
	// before the read is applied.
	if err := n.raft.Barrier(timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("raftnode: barrier: %w", notLeader(err))
	}
	return nil
}

// AddServer adds a voter (or non-voter) to the configuration; leader only.
func (n *Node) AddServer(ctx context.Context, s Server) error {
	var fut raft.IndexFuture
	if s.Voter {
		fut = n.raft.AddVoter(raft.ServerID(s.ID), raft.ServerAddress(s.Address), 0, timeout(ctx))
	} else {
		fut = n.raft.AddNonvoter(raft.ServerID(s.ID), raft.ServerAddress(s.Address), 0, timeout(ctx))
	}
	if err := fut.Error(); err != nil {
		return fmt.Errorf("raftnode: add %s at %s: %w", s.ID, s.Address, notLeader(err))
	}
	return nil
}

// RemoveServer removes a server from the configuration; leader only.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, timeout(ctx)).Error(); err != nil {
		return fmt.Errorf("raftnode: remove %s: %w", id, notLeader(err))
	}
	return nil
}

// TransferLeadership hands leadership to id (any voter when empty) and
// waits until this node has stepped down; leader only.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	var fut raft.Future
	if id == "" {
		fut = n.raft.LeadershipTransfer()
	} else {
		st, err := n.Status()
		if err != nil {
			return err
		}
		addr := ""
		for _, s := range st.Servers {
			if s.ID == id {
				addr = s.Address
			}
		}
		if addr == "" {
			return fmt.Errorf("raftnode: transfer to %q: no such server: %w", id, state.ErrNotFound)
		}
		fut = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr))
	}
	if err := fut.Error(); err != nil {
		return fmt.Errorf("raftnode: transfer leadership: %w", notLeader(err))
	}
	return nil
}

// Status returns the configuration and this node's indexes.
func (n *Node) Status() (Status, error) {
	fut := n.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return Status{}, fmt.Errorf("raftnode: configuration: %w", err)
	}
	st := Status{CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex()}
	st.Term, _ = strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
	st.LeaderID, _ = n.Leader()
	for _, s := range fut.Configuration().Servers {
		st.Servers = append(st.Servers, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	sort.Slice(st.Servers, func(i, j int) bool { return st.Servers[i].ID < st.Servers[j].ID })
	return st, nil
}

// Shutdown stops raft and closes the stores and transport.
func (n *Node) Shutdown() error {
	err := n.raft.Shutdown().Error()
	n.raft.DeregisterObserver(n.observer)
	n.stopOnce.Do(func() { close(n.stopObs) })
	n.closeAll()
	if err != nil {
		return fmt.Errorf("raftnode: shutdown: %w", err)
	}
	return nil
}
