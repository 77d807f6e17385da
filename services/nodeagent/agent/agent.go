// Package agent converges a host's instances and their Consul registrations
// to the desired set of allocations the coordinator sends, and reports what
// it reached.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/reconcile"
	"slipway.dev/platform/nodepolicy"
)

// ErrStaleToken is returned by Sync for a fencing token older than the
// newest seen.
var ErrStaleToken = errors.New("agent: stale fencing token")

// ErrWrongNode is returned by Sync for a desired set addressed to another
// node.
var ErrWrongNode = errors.New("agent: sync addressed to another node")

// Driver runs instances: containers or processes. Start leaves nothing
// behind on error; Stop stops and removes; List returns every instance of
// this node, running or exited; Watch reports each instance that exits or
// whose image health check verdict changes, until ctx ends.
type Driver interface {
	Name() string
	Start(ctx context.Context, s allocation.Spec) (allocation.Instance, error)
	Stop(ctx context.Context, inst allocation.Instance, grace time.Duration) error
	List(ctx context.Context) ([]allocation.Instance, error)
	Watch(ctx context.Context, report func(allocation.Event))
}

// Token is a fencing token: raft term, then index.
type Token struct {
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
}

// Less orders tokens.
func (t Token) Less(o Token) bool {
	if t.Term != o.Term {
		return t.Term < o.Term
	}
	return t.Index < o.Index
}

// State is where an allocation is on the node.
type State int

// The allocation states, as in the API.
const (
	Pending State = iota + 1
	Starting
	Running
	Draining
	Stopped
	Failed
)

var stateNames = map[State]string{Pending: "pending", Starting: "starting", Running: "running", Draining: "draining", Stopped: "stopped", Failed: "failed"}

func (s State) String() string { return stateNames[s] }

// Status is what the agent reached for one allocation.
type Status struct {
	AllocID      string
	Service      string
	Release      uint64
	Track        string
	State        State
	Health       Health // "" while unknown
	HealthySince time.Time
	InstanceID   string
	HostPort     int
	Address      string
	Restarts     int
	Error        string
	// Progress is the last word on an image pull for the allocation
	// ("pulling ...: 1.2 MB of 3.4 MB", "pulled ... in 2s"), kept until
	// the next pull.
	Progress string
	// InStartPeriod is true while a started instance is in its check's
	// start period and has not passed yet: failing probes do not count.
	InStartPeriod bool
	UpdatedAt     time.Time
}

// Event is one allocation change.
type Event struct {
	Status  Status
	Message string
}

// Config configures an agent.
type Config struct {
	NodeID   string
	Labels   map[string]string
	CPUMHz   int
	MemoryMB int
	// Address is where instances are reachable (host ports bind there).
	Address string
	// GRPCAddr is the agent's own gRPC address, registered in Consul.
	GRPCAddr string
	// DataDir keeps the fencing token and the last desired set.
	DataDir string
	// HoldAfter is how long the agent may be seen dead (no heartbeat)
	// before its allocations may have been replaced elsewhere: the
	// coordinators' -node-grace. Back after a longer lapse, it holds its
	// instances out of traffic until a leader confirms its desired set
	// (reconcile.Observed.Unconfirmed). Default 10s.
	HoldAfter time.Duration
	// LeaderLapse, when set, reports how long no leader has held the
	// agent's heartbeat stream (0 while one does) and the heartbeat TTL
	// the last leader announced (nodestream.Stream.Lapse). An agent whose
	// Consul heartbeats fail while its stream is gone past that TTL was cut
	// off from both: the leader judged its node down and may have replaced
	// its allocations, so it holds its instances out of traffic, as after a
	// lapse longer than HoldAfter, before its heartbeats pass again. Either
	// lapse alone (a Consul restart, or the coordinators down) holds
	// nothing.
	LeaderLapse func(now time.Time) (down, ttl time.Duration)
	// ConfirmGrace bounds how long an agent that was seen dead (see
	// reconcile.Observed.Unconfirmed) keeps its instances out of traffic
	// while no leader syncs it, counted from its first heartbeat since:
	// after it, it serves its last known desired set. Default 30s.
	ConfirmGrace time.Duration
	// DrainTimeout bounds the route barrier; DrainWindow is the wait when
	// no edge is live.
	DrainTimeout, DrainWindow time.Duration
	// AntiEntropy is the period of the full resync with the driver and
	// Consul (default 1s).
	AntiEntropy time.Duration
	// HealthPoll is the period of reading check results (default 250ms).
	HealthPoll time.Duration
	// ReadyWithin bounds the agent's own probing of a fresh instance
	// before it registers it (default 5s); an instance that passes is
	// registered passing, one that does not is registered critical.
	ReadyWithin time.Duration
	Logger      *slog.Logger
	// Registerer receives the agent's metrics (nil: not exported).
	Registerer prometheus.Registerer
	// StartTimeout bounds one start, an image pull included (default 60s).
	StartTimeout time.Duration
	// Policy is what allocations may ask beyond the hardened default (and
	// which images they may run); an allocation asking for more is refused.
	// It is published in the agent's Consul registration for the
	// coordinator, which refuses such specs at Deploy.
	Policy nodepolicy.Policy
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Agent is the node agent's core.
type Agent struct {
	cfg Config
	met *metrics
	drv Driver
	reg Registry
	log *slog.Logger

	kick chan struct{}

	mu         sync.Mutex
	token      Token
	desired    map[string]allocation.Spec // valid desired allocations
	invalid    map[string]Status          // desired allocations refused as bad input
	status     map[string]*Status
	instances  map[string]allocation.Instance
	registered map[string]bool
	ttlAt      time.Time // last refresh of the image health TTL checks
	boot       string    // this process's boot id (Self.BootID)
	selfReg    bool      // this process registered the agent itself (a restart with other flags refreshes the registration)
	starting   map[string]*startWatch
	dead       map[string]bool // instance ids known to have exited, until removed
	gen        uint64          // counts accepted syncs
	planned    uint64          // gen as of the last plan
	busy       map[string]bool
	opSeq      uint64            // counts finished operations
	lastOp     map[string]uint64 // opSeq when an allocation's last operation finished
	failures   map[string]reconcile.Failure
	retryAt    time.Time
	changed    chan struct{} // closed and replaced on every change
	subs       map[chan Event]struct{}
	// unconfirmed: seen dead, the desired set awaits a leader's sync
	// (reconcile.Observed.Unconfirmed); heldSince is the first heartbeat
	// since, for ConfirmGrace.
	unconfirmed bool
	heldSince   time.Time
}

// New returns an agent; it loads the persisted token and desired set from
// cfg.DataDir. Call Run to converge.
func New(cfg Config, drv Driver, reg Registry) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AntiEntropy <= 0 {
		cfg.AntiEntropy = time.Second
	}
	if cfg.HealthPoll <= 0 {
		cfg.HealthPoll = 250 * time.Millisecond
	}
	if cfg.ReadyWithin <= 0 {
		cfg.ReadyWithin = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = opTimeout
	}
	if cfg.ConfirmGrace <= 0 {
		cfg.ConfirmGrace = 30 * time.Second
	}
	if cfg.HoldAfter <= 0 {
		cfg.HoldAfter = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Agent{
		cfg: cfg, drv: drv, reg: reg, log: cfg.Logger,
		kick:       make(chan struct{}, 1),
		desired:    map[string]allocation.Spec{},
		invalid:    map[string]Status{},
		status:     map[string]*Status{},
		instances:  map[string]allocation.Instance{},
		registered: map[string]bool{},
		busy:       map[string]bool{},
		lastOp:     map[string]uint64{},
		starting:   map[string]*startWatch{},
		dead:       map[string]bool{},
		failures:   map[string]reconcile.Failure{},
		changed:    make(chan struct{}),
		subs:       map[chan Event]struct{}{},
		boot:       newBootID(),
	}
	a.met = newMetrics(a, cfg.Registerer)
	if p, ok := drv.(interface {
		OnProgress(func(allocID, msg string))
	}); ok {
		// Pull progress goes into the allocation's status (and so into the
		// coordinator's rollout events) and the agent's event stream.
		p.OnProgress(func(id, msg string) { a.update(id, msg, func(s *Status) { s.Progress = msg }) })
	}
	st, err := loadState(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.token = st.Token
	for _, s := range st.Desired {
		a.setDesiredLocked(s)
	}
	// Back after Consul saw this agent dead: the leader may have moved its
	// allocations meanwhile, so they wait for its word.
	if cfg.GRPCAddr != "" && len(st.Desired) > 0 {
		if last := lastBeat(cfg.DataDir); last.IsZero() || a.since(last) > cfg.HoldAfter {
			a.unconfirmed = true
			a.log.Warn("restarted after a heartbeat lapse longer than -hold-after: its instances stay out of traffic until a leader confirms the desired set",
				"last_heartbeat", last, "grace", cfg.ConfirmGrace)
		}
	}
	return a, nil
}

func (a *Agent) setDesiredLocked(s allocation.Spec) {
	a.desired[s.ID] = s
	if _, ok := a.status[s.ID]; !ok {
		a.status[s.ID] = &Status{AllocID: s.ID, Service: s.Service, Release: s.Release, Track: s.Track, State: Pending, Address: a.cfg.Address, UpdatedAt: a.now()}
	}
}

// forgetUnwantedLocked drops the status of allocations that left the
// desired set with nothing left to stop or deregister (already stopped, or
// never started): no later step acts on them, so nothing else would.
func (a *Agent) forgetUnwantedLocked() {
	for id := range a.status {
		if _, want := a.desired[id]; want {
			continue
		}
		if _, running := a.instances[id]; running || a.registered[id] || a.busy[id] {
			continue
		}
		delete(a.status, id)
		delete(a.failures, id)
	}
}

// Driver returns the driver's name.
func (a *Agent) Driver() string { return a.drv.Name() }

// Config returns the agent's configuration.
func (a *Agent) Config() Config { return a.cfg }

// Token returns the newest fencing token seen.
func (a *Agent) Token() Token {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token
}

// SyncResult is the answer to a sync.
type SyncResult struct {
	Allocations []Status
}

// Sync replaces the desired set. A token older than the newest seen fails
// with ErrStaleToken and changes nothing. Invalid allocations are reported
// failed with the violations and not started; the others converge. Sync
// waits until every desired allocation is running (registered), failed, or
// started but not registrable (Consul down; retried every resync), or ctx
// ends, and returns the statuses reached. Stops are not waited for: they
// are reported draining.
func (a *Agent) Sync(ctx context.Context, nodeID string, tok Token, specs []allocation.Spec) (SyncResult, error) {
	if nodeID != a.cfg.NodeID {
		a.met.syncs.WithLabelValues("refused").Inc()
		return SyncResult{}, fmt.Errorf("sync for node %q on node %q: %w", nodeID, a.cfg.NodeID, ErrWrongNode)
	}
	a.mu.Lock()
	if tok.Less(a.token) {
		cur := a.token
		a.mu.Unlock()
		a.met.syncs.WithLabelValues("stale").Inc()
		return SyncResult{}, fmt.Errorf("token %d/%d older than %d/%d: %w", tok.Term, tok.Index, cur.Term, cur.Index, ErrStaleToken)
	}
	desired := map[string]allocation.Spec{}
	invalid := map[string]Status{}
	now := a.now()
	for _, s := range specs {
		vs := s.Validate(a.cfg.NodeID)
		for _, v := range a.cfg.Policy.Check(s.Ask()) {
			vs = append(vs, allocation.Violation{Field: v.Field, Description: v.Description})
		}
		if a.drv.Name() != "docker" {
			for f, asked := range map[string]bool{"volumes": len(s.Volumes) > 0, "entrypoint": len(s.Entrypoint) > 0, "stop_signal": s.StopSignal != ""} {
				if asked {
					vs = append(vs, allocation.Violation{Field: f, Description: f + " needs the docker driver; this node runs " + a.drv.Name()})
				}
			}
			slices.SortFunc(vs, func(x, y allocation.Violation) int { return strings.Compare(x.Field, y.Field) })
		}
		if _, dup := desired[s.ID]; dup || invalid[s.ID].AllocID != "" && s.ID != "" {
			vs = append(vs, allocation.Violation{Field: "id", Description: "appears more than once in the desired set"})
		}
		if len(vs) > 0 {
			delete(desired, s.ID)
			invalid[s.ID] = Status{AllocID: s.ID, Service: s.Service, Release: s.Release, Track: s.Track, State: Failed,
				Error: allocation.Error(vs).Error(), UpdatedAt: now}
			continue
		}
		desired[s.ID] = s
	}
	if err := saveState(a.cfg.DataDir, persisted{Token: tok, Desired: slices.Collect(maps.Values(desired))}); err != nil {
		a.mu.Unlock()
		a.met.syncs.WithLabelValues("error").Inc()
		return SyncResult{}, err
	}
	a.token = tok
	if a.unconfirmed {
		a.unconfirmed, a.heldSince = false, time.Time{}
		a.log.Info("a leader confirmed the desired set: instances it still holds serve again", "term", tok.Term, "index", tok.Index)
	}
	changed := !maps.EqualFunc(a.desired, desired, func(x, y allocation.Spec) bool {
		return x.Fingerprint() == y.Fingerprint() && x.Stopped == y.Stopped
	})
	a.desired = map[string]allocation.Spec{}
	for _, s := range desired {
		a.setDesiredLocked(s)
	}
	a.forgetUnwantedLocked()
	for id, st := range invalid {
		if old, ok := a.invalid[id]; !ok || old.Error != st.Error {
			a.emitLocked(st, "refused: "+st.Error)
		}
	}
	a.invalid = invalid
	a.gen++
	gen := a.gen
	a.mu.Unlock()
	if changed {
		a.log.Info("desired set changed", "allocations", len(desired), "refused", len(invalid), "term", tok.Term, "index", tok.Index)
	}
	a.poke()
	a.met.syncs.WithLabelValues("ok").Inc()

	// Wait for the starts this sync asked for.
	for {
		a.mu.Lock()
		done := a.planned >= gen
		for id, s := range a.desired {
			st := a.status[id]
			if s.Stopped || !done {
				continue
			}
			attempted := st != nil && (st.State == Failed || st.State == Starting && st.Error != "" ||
				st.State == Running && a.instances[id].Fingerprint == s.Fingerprint())
			if a.busy[id] || !attempted {
				done = false
				break
			}
		}
		ch := a.changed
		a.mu.Unlock()
		if done {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return SyncResult{Allocations: a.Statuses()}, nil
		}
	}
	return SyncResult{Allocations: a.Statuses()}, nil
}

// Statuses returns every allocation's status, refused ones included, in id
// order.
func (a *Agent) Statuses() []Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statusesLocked()
}

func (a *Agent) statusesLocked() []Status {
	out := make([]Status, 0, len(a.status)+len(a.invalid))
	for id, s := range a.status {
		if _, refused := a.invalid[id]; refused {
			continue // one entry per id: the refusal (an old instance still stopping shows in events)
		}
		out = append(out, *s)
	}
	for _, s := range a.invalid {
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y Status) int {
		if x.AllocID < y.AllocID {
			return -1
		}
		if x.AllocID > y.AllocID {
			return 1
		}
		return 0
	})
	return out
}

// Subscribe returns the current statuses and a channel of every later
// change; cancel ends the subscription. A subscriber that falls more than
// 256 events behind is dropped: its channel is closed (it never blocks the
// agent) and it should subscribe again for a fresh picture.
func (a *Agent) Subscribe() ([]Status, <-chan Event, func()) {
	ch := make(chan Event, 256)
	a.mu.Lock()
	a.subs[ch] = struct{}{}
	cur := a.statusesLocked()
	a.mu.Unlock()
	return cur, ch, func() {
		a.mu.Lock()
		delete(a.subs, ch)
		a.mu.Unlock()
	}
}

func (a *Agent) emitLocked(st Status, msg string) {
	for ch := range a.subs {
		select {
		case ch <- Event{Status: st, Message: msg}:
		default:
			delete(a.subs, ch)
			close(ch)
		}
	}
	a.wakeLocked()
}

func (a *Agent) wakeLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// update changes an allocation's status under the lock and emits an event.
func (a *Agent) update(id string, msg string, f func(s *Status)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.updateLocked(id, msg, f)
}

func (a *Agent) updateLocked(id string, msg string, f func(s *Status)) {
	st, ok := a.status[id]
	if !ok {
		st = &Status{AllocID: id, Address: a.cfg.Address}
		if s, ok := a.desired[id]; ok {
			st.Service, st.Release, st.Track = s.Service, s.Release, s.Track
		} else if in, ok := a.instances[id]; ok {
			st.Service, st.Release, st.Track = in.Service, in.Release, in.Track
		}
		a.status[id] = st
	}
	f(st)
	st.UpdatedAt = a.now()
	a.log.Info(msg, "alloc", id, "state", st.State.String(), "err", st.Error)
	a.emitLocked(*st, msg)
}

func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run converges until ctx ends: it watches the driver for exits, resyncs
// with the driver and Consul every AntiEntropy, polls check results and
// executes reconcile plans.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(3)
	go func() { defer wg.Done(); a.drv.Watch(ctx, func(ev allocation.Event) { a.onEvent(ctx, ev) }) }()
	go func() { defer wg.Done(); a.pollHealth(ctx) }()
	go func() { defer wg.Done(); a.heartbeat(ctx) }()

	a.refresh(ctx)
	ae := time.NewTicker(a.cfg.AntiEntropy)
	defer ae.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		a.step(ctx, &wg)
		a.mu.Lock()
		if !a.retryAt.IsZero() {
			retry.Reset(max(time.Until(a.retryAt), time.Millisecond))
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
		case <-retry.C:
		case <-ae.C:
			a.refresh(ctx)
		}
	}
}

// refresh replaces the observed instances and registrations with what the
// driver and Consul report, for allocations without an operation in flight,
// and re-registers the agent itself when Consul lost it.
func (a *Agent) refresh(ctx context.Context) {
	a.mu.Lock()
	since := a.opSeq
	a.mu.Unlock()
	// An allocation whose operation ran while we listed may be missing
	// from (or stale in) the lists: leave it to the next resync.
	stale := func(id string) bool { return a.busy[id] || a.lastOp[id] > since }
	insts, err := a.drv.List(ctx)
	if err != nil {
		a.log.Warn("list instances", "err", err)
	}
	owned, self, rerr := a.reg.Owned(ctx)
	if rerr != nil {
		a.log.Debug("list registrations", "err", rerr)
	}
	a.mu.Lock()
	if rerr == nil {
		for id := range a.registered {
			if !owned[id] && !stale(id) {
				delete(a.registered, id)
			}
		}
		for id := range owned {
			if !stale(id) {
				a.registered[id] = true
			}
		}
		if !self {
			a.selfReg = false // Consul lost it: register again
		}
		// An entry found there (left by the process before a restart)
		// is not this process's registration: selfReg stays false until
		// it registers the agent itself, which also makes the registry
		// tie every instance it registers to the agent's check (alias).
	}
	if err == nil {
		seen := map[string]bool{}
		for _, in := range insts {
			seen[in.AllocID] = true
			if stale(in.AllocID) {
				continue
			}
			if a.dead[in.ID] {
				in.Running = false // a list can lag behind the exit event
			}
			old, had := a.instances[in.AllocID]
			a.instances[in.AllocID] = in
			if !had {
				a.updateLocked(in.AllocID, "adopted instance", func(s *Status) {
					s.InstanceID, s.HostPort = in.ID, in.HostPort
					switch {
					case in.Running && a.registered[in.AllocID]:
						s.State = Running
					case s.State == 0 || s.State == Pending:
						s.State = Starting
					}
				})
			} else if old.Running && !in.Running {
				a.exitedLocked(in.AllocID, "instance exited (noticed by resync)", exitError(-1, ""))
			}
		}
		for id := range a.instances {
			if !seen[id] && !stale(id) {
				delete(a.instances, id)
			}
		}
	}
	needSelf := rerr == nil && (!self || !a.selfReg)
	var ttl map[string]string
	if a.since(a.ttlAt) > a.reg.ImageCheckTTL()/6 {
		a.ttlAt = a.now()
		ttl = map[string]string{}
		for id, in := range a.instances {
			if in.ImageHealth != "" && in.Running && a.registered[id] && !a.busy[id] {
				ttl[id] = in.ImageHealth
			}
		}
	}
	a.mu.Unlock()
	for id, v := range ttl {
		if err := a.reg.SetImageHealth(ctx, id, v); err != nil {
			a.log.Debug("refresh image health check", "alloc", id, "err", err)
		}
	}
	if needSelf && a.cfg.GRPCAddr != "" {
		if err := a.reg.RegisterAgent(ctx, Self{ID: a.cfg.NodeID, GRPCAddr: a.cfg.GRPCAddr, Labels: a.cfg.Labels,
			CPUMHz: a.cfg.CPUMHz, MemoryMB: a.cfg.MemoryMB, Driver: a.drv.Name(), Policy: a.cfg.Policy, BootID: a.boot}); err != nil {
			a.log.Warn("register node agent", "err", err)
		} else {
			a.mu.Lock()
			a.selfReg = true
			a.mu.Unlock()
			a.log.Info("registered node agent in Consul", "id", a.cfg.NodeID)
		}
	}
}

func (a *Agent) onEvent(ctx context.Context, ev allocation.Event) {
	if ev.Exited {
		a.onExit(ev.AllocID, ev.InstanceID, exitError(ev.ExitCode, ev.Output))
		return
	}
	if ev.ImageHealth == "" {
		return
	}
	a.mu.Lock()
	in, ok := a.instances[ev.AllocID]
	if !ok || in.ID != ev.InstanceID {
		a.mu.Unlock()
		return
	}
	in.ImageHealth = ev.ImageHealth
	a.instances[ev.AllocID] = in
	reg := a.registered[ev.AllocID] && !a.busy[ev.AllocID]
	a.mu.Unlock()
	a.log.Info("image health check", "alloc", ev.AllocID, "verdict", ev.ImageHealth)
	if reg {
		if err := a.reg.SetImageHealth(ctx, ev.AllocID, ev.ImageHealth); err != nil {
			a.log.Warn("update image health check", "alloc", ev.AllocID, "err", err)
		}
	}
}

func (a *Agent) onExit(id, instanceID, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w := a.starting[id]; w != nil {
		w.exited[instanceID] = reason
		select {
		case w.sig <- struct{}{}:
		default:
		}
	}
	in, ok := a.instances[id]
	if !ok || !in.Running || a.busy[id] || in.ID != instanceID {
		return // not ours to report, or an operation (a stop) is on it
	}
	a.exitedLocked(id, "instance exited", reason)
	a.met.exits.Inc()
	a.poke()
}

// exitedLocked records that the allocation's instance exited, reason
// (exitError) saying how.
func (a *Agent) exitedLocked(id, msg, reason string) {
	in := a.instances[id]
	a.dead[in.ID] = true
	in.Running = false
	a.instances[id] = in
	spec, want := a.desired[id]
	state, errText := Failed, reason
	if want && !spec.Stopped && spec.Fingerprint() == in.Fingerprint {
		f := reconcile.Exited(a.failures[id], spec.Fingerprint(), spec.RestartPolicy(), a.now())
		a.failures[id] = f
		// While the policy will restart it, the allocation is starting
		// again (not failed): the coordinator sees it as not healthy, and
		// the error says what happened and what comes next.
		if v := reconcile.Next(f, spec.RestartPolicy()); !v.GiveUp {
			state = Starting
			errText = fmt.Sprintf("%s; %s in %s", reason, v.Reason, v.Wait.Round(time.Millisecond))
			msg += "; " + v.Reason + " in " + v.Wait.Round(time.Millisecond).String()
		} else {
			errText = giveUpError(v.Reason, reason) // final already: the GiveUp action only cleans up
		}
	}
	a.updateLocked(id, msg, func(s *Status) {
		s.State, s.Health, s.HealthySince = state, "", time.Time{}
		s.Error = errText
	})
}

func (a *Agent) pollHealth(ctx context.Context) {
	t := time.NewTicker(a.cfg.HealthPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hs, err := a.reg.Checks(ctx)
		if err != nil {
			continue
		}
		a.mu.Lock()
		for id, st := range a.status {
			h, ok := hs[id]
			if !ok || st.State != Running || h == st.Health {
				continue
			}
			a.updateLocked(id, "health "+string(h), func(s *Status) {
				s.Health = h
				if h == HealthPassing {
					// The restart count is per interval (the restart
					// policy's), not reset by passing: an instance that
					// passes briefly between crashes still runs out of
					// attempts.
					s.HealthySince = a.now()
				} else {
					s.HealthySince = time.Time{}
				}
			})
		}
		a.mu.Unlock()
	}
}

// step plans and launches actions; each runs in its own goroutine and pokes
// the loop when done.
func (a *Agent) step(ctx context.Context, wg *sync.WaitGroup) {
	a.mu.Lock()
	obs := reconcile.Observed{
		Instances:   map[string]reconcile.Instance{},
		Registered:  maps.Clone(a.registered),
		Busy:        maps.Clone(a.busy),
		Failures:    maps.Clone(a.failures),
		Now:         a.now(),
		Unconfirmed: a.unconfirmed,
	}
	for id, in := range a.instances {
		obs.Instances[id] = reconcile.Instance{Fingerprint: in.Fingerprint, Running: in.Running}
	}
	plan := reconcile.Reconcile(a.desired, obs)
	a.planned = a.gen
	a.wakeLocked()
	a.retryAt = plan.RetryAt
	for _, act := range plan.Actions {
		a.busy[act.AllocID] = true
	}
	a.mu.Unlock()
	for _, act := range plan.Actions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progress := a.execute(ctx, act)
			a.mu.Lock()
			delete(a.busy, act.AllocID)
			a.opSeq++
			a.lastOp[act.AllocID] = a.opSeq
			a.wakeLocked() // Sync waits for busy allocations
			a.mu.Unlock()
			if progress {
				a.poke()
			}
		}()
	}
}

// newBootID returns a random id for this agent process (catalog.MetaBoot).
func newBootID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (it panics first)
	return hex.EncodeToString(b[:])
}
