package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/state"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a manual clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeRaft applies commands to a real FSM with increasing indexes and
// records them.
type fakeRaft struct {
	mu       sync.Mutex
	fsm      *state.FSM
	clock    *clock
	term     uint64
	index    uint64
	applied  []*statev1.Command
	notLead  bool
	fail     error // every Apply fails with it (a full disk)
	rejected []error
}

func (r *fakeRaft) setFail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

func (r *fakeRaft) Apply(_ context.Context, cmd *statev1.Command) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.notLead {
		return nil, fmt.Errorf("fake: %w: %w", engine.ErrNotLeader, raftnode.ErrNotLeader)
	}
	if r.fail != nil {
		return nil, r.fail
	}
	r.index++
	cmd.Version = state.CurrentVersion
	cmd.At = timestamppb.New(r.clock.Now())
	res := r.fsm.ApplyCommand(r.index, proto.CloneOf(cmd))
	if err, ok := res.(error); ok {
		r.rejected = append(r.rejected, err)
		return nil, err
	}
	r.applied = append(r.applied, cmd)
	return res, nil
}

func (r *fakeRaft) Term() (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.term, nil
}

// steps returns the committed rollout step entries.
func (r *fakeRaft) steps() []*statev1.RolloutStepOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*statev1.RolloutStepOp
	for _, c := range r.applied {
		if s := c.GetRolloutStep(); s != nil {
			out = append(out, s)
		}
	}
	return out
}

type fakeNodes struct {
	mu    sync.Mutex
	nodes []engine.Node
	err   error
}

func (f *fakeNodes) Nodes(context.Context) ([]engine.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.Node(nil), f.nodes...), f.err
}

func (f *fakeNodes) get() []engine.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.Node(nil), f.nodes...)
}

func (f *fakeNodes) set(nodes ...engine.Node) {
	f.mu.Lock()
	f.nodes = nodes
	f.mu.Unlock()
}

// fakeRoutes is a KV store of intents that records every write.
type fakeRoutes struct {
	mu      sync.Mutex
	intents []*edgev1.TrafficIntent          // every write, in order
	held    map[string]*edgev1.TrafficIntent // what the store holds now
	readErr error                            // returned by Intents
	acks    []*edgev1.EdgeAck
	fenced  map[string]bool // node fences held (Fences)
	fences  []string        // every fence and unfence, "+n1" / "-n1", in order
}

func (f *fakeRoutes) Fenced(context.Context) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bool{}
	for n := range f.fenced {
		out[n] = true
	}
	return out, nil
}

func (f *fakeRoutes) Fence(_ context.Context, node, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fenced == nil {
		f.fenced = map[string]bool{}
	}
	f.fenced[node] = true
	f.fences = append(f.fences, "+"+node)
	return nil
}

func (f *fakeRoutes) Unfence(_ context.Context, node string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.fenced, node)
	f.fences = append(f.fences, "-"+node)
	return nil
}

// isFenced reports whether node is fenced now.
func (f *fakeRoutes) isFenced(node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fenced[node]
}

// setAcks sets the acknowledgements every later Acks returns.
func (f *fakeRoutes) setAcks(acks ...*edgev1.EdgeAck) {
	f.mu.Lock()
	f.acks = acks
	f.mu.Unlock()
}

func (f *fakeRoutes) WriteIntent(_ context.Context, in *edgev1.TrafficIntent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if held := f.held[in.GetService()]; held != nil && held.GetGeneration() > in.GetGeneration() {
		return fmt.Errorf("fake routes: %s holds generation %d: %w", in.GetService(), held.GetGeneration(), engine.ErrNewerIntent)
	}
	f.intents = append(f.intents, proto.CloneOf(in))
	if f.held == nil {
		f.held = map[string]*edgev1.TrafficIntent{}
	}
	f.held[in.GetService()] = proto.CloneOf(in)
	return nil
}

func (f *fakeRoutes) Intents(context.Context) (map[string]*edgev1.TrafficIntent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readErr != nil {
		return nil, f.readErr
	}
	out := map[string]*edgev1.TrafficIntent{}
	for s, in := range f.held {
		out[s] = proto.CloneOf(in)
	}
	return out, nil
}

// lose drops what the store holds (a Consul agent restarted without its
// data), or replaces a service's intent with in when in is not nil.
func (f *fakeRoutes) lose(service string, in *edgev1.TrafficIntent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in == nil {
		delete(f.held, service)
		return
	}
	f.held[service] = in
}

// writes counts the writes of a service's intent.
func (f *fakeRoutes) writes(service string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, in := range f.intents {
		if in.GetService() == service {
			n++
		}
	}
	return n
}

func (f *fakeRoutes) Acks(context.Context) ([]*edgev1.EdgeAck, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*edgev1.EdgeAck, len(f.acks))
	for i, a := range f.acks {
		out[i] = proto.CloneOf(a)
	}
	return out, nil
}

func (f *fakeRoutes) last(service string) *edgev1.TrafficIntent {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.intents) - 1; i >= 0; i-- {
		if f.intents[i].GetService() == service {
			return f.intents[i]
		}
	}
	return nil
}

type syncCall struct {
	node   string
	token  *agentv1.FencingToken
	allocs []*agentv1.Allocation
}

// fakeAgents records syncs and plays a node agent: every allocation it was
// told to run is running and passing since it was first synced, unless
// listed in critical. It checks that everything it is sent was committed.
type fakeAgents struct {
	mu         sync.Mutex
	fsm        *state.FSM
	clock      *clock
	calls      []syncCall
	started    map[string]int       // allocation id -> times started
	since      map[string]time.Time // allocation id -> passing since
	desired    map[string][]*agentv1.Allocation
	critical   map[uint64]bool   // releases whose checks fail
	failed     map[uint64]string // releases that fail to start, with the agent's error
	sick       map[string]bool   // nodes where every check fails
	violations []string
	asked      map[string]int // node -> Status calls
	// unowned are what a node's agent reports beside its desired set:
	// instances it still runs or stops that no allocation holds.
	unowned map[string][]*agentv1.AllocationStatus
	// mute are the nodes whose agent answers no Status call.
	mute map[string]bool
}

func newAgents(fsm *state.FSM, c *clock) *fakeAgents {
	return &fakeAgents{fsm: fsm, clock: c, started: map[string]int{}, since: map[string]time.Time{},
		desired: map[string][]*agentv1.Allocation{}, critical: map[uint64]bool{}, failed: map[uint64]string{}, sick: map[string]bool{}}
}

func (f *fakeAgents) Sync(_ context.Context, n engine.Node, tok *agentv1.FencingToken, allocs []*agentv1.Allocation) ([]*agentv1.AllocationStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	committed := map[string]bool{}
	for _, sa := range f.fsm.AllAllocations() {
		committed[sa.Allocation.GetId()] = true
	}
	for _, a := range allocs {
		if !committed[a.GetId()] {
			f.violations = append(f.violations, "sent uncommitted allocation "+a.GetId())
		}
		if a.GetNodeId() != n.ID {
			f.violations = append(f.violations, fmt.Sprintf("allocation %s for %s sent to %s", a.GetId(), a.GetNodeId(), n.ID))
		}
	}
	for _, c := range f.calls {
		if c.node == n.ID && (tok.GetTerm() < c.token.GetTerm() || tok.GetTerm() == c.token.GetTerm() && tok.GetIndex() < c.token.GetIndex()) {
			f.violations = append(f.violations, fmt.Sprintf("token went backwards on %s: %v after %v", n.ID, tok, c.token))
		}
	}
	f.calls = append(f.calls, syncCall{n.ID, proto.CloneOf(tok), allocs})
	f.desired[n.ID] = allocs
	for _, a := range allocs {
		if a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED {
			continue
		}
		if _, ok := f.since[a.GetId()]; !ok {
			f.started[a.GetId()]++
			f.since[a.GetId()] = f.clock.Now()
		}
	}
	return nil, nil
}

func (f *fakeAgents) Status(_ context.Context, n engine.Node) ([]*agentv1.AllocationStatus, error) {
	f.mu.Lock()
	if f.asked == nil {
		f.asked = map[string]int{}
	}
	f.asked[n.ID]++
	mute := f.mute[n.ID]
	f.mu.Unlock()
	if mute {
		return nil, errors.New("fake: agent does not answer")
	}
	return f.statusOf(n.ID), nil
}

// statusCalls counts the Status calls of node so far.
func (f *fakeAgents) statusCalls(node string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[node]
}

// statusOf is what the agent of node reports (on a Status call or in its
// heartbeat stream).
func (f *fakeAgents) statusOf(node string) []*agentv1.AllocationStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := engine.Node{ID: node}
	var out []*agentv1.AllocationStatus
	for _, a := range f.desired[n.ID] {
		st := &agentv1.AllocationStatus{AllocationId: a.GetId(), Service: a.GetService(), Release: a.GetRelease(),
			State: agentv1.AllocationState_ALLOCATION_STATE_RUNNING, Health: agentv1.Health_HEALTH_PASSING,
			HealthySince: timestamppb.New(f.since[a.GetId()]), UpdatedAt: timestamppb.New(f.since[a.GetId()])}
		if f.critical[a.GetRelease()] || f.sick[n.ID] {
			st.Health, st.HealthySince = agentv1.Health_HEALTH_CRITICAL, nil
		}
		if msg := f.failed[a.GetRelease()]; msg != "" {
			st.State, st.Health, st.HealthySince, st.Error = agentv1.AllocationState_ALLOCATION_STATE_FAILED, agentv1.Health_HEALTH_UNSPECIFIED, nil, msg
		}
		if a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED {
			st.State = agentv1.AllocationState_ALLOCATION_STATE_DRAINING
		}
		out = append(out, st)
	}
	for _, st := range f.unowned[node] {
		out = append(out, proto.CloneOf(st))
	}
	return out
}

// setUnowned sets what node's agent reports of the instances it runs that
// no allocation holds, and whether it answers Status calls.
func (f *fakeAgents) setUnowned(node string, mute bool, sts ...*agentv1.AllocationStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unowned == nil {
		f.unowned, f.mute = map[string][]*agentv1.AllocationStatus{}, map[string]bool{}
	}
	f.unowned[node], f.mute[node] = sts, mute
}

// syncs returns every Sync call so far, oldest first.
func (f *fakeAgents) syncs() []syncCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]syncCall(nil), f.calls...)
}

// running returns the ids of allocations a node was last told to run.
func (f *fakeAgents) running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, allocs := range f.desired {
		for _, a := range allocs {
			if a.GetDesiredState() != agentv1.DesiredState_DESIRED_STATE_STOPPED {
				out = append(out, a.GetId())
			}
		}
	}
	sort.Strings(out)
	return out
}

func (f *fakeAgents) check(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		t.Error(v)
	}
}

// ever counts the distinct allocations of a release ever sent to run.
func (f *fakeAgents) ever(release uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	seen := map[string]bool{}
	for _, c := range f.calls {
		for _, a := range c.allocs {
			if a.GetRelease() == release && !seen[a.GetId()] {
				seen[a.GetId()] = true
				n++
			}
		}
	}
	return n
}

var errConsulDown = errors.New("consul down")
