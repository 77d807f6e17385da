package engine

// The observe stage.
//
// Contract: observe is the only stage that reads the world (Consul, the
// agents, the clock). It returns an Observation of plain values and changes
// nothing but the engine's memory of what it observed before (each
// allocation's last reported status, how long each node has been missing).
// A failed read that would make the pass decide from a wrong picture (the
// node list, the edges' acknowledgements) fails the pass: a node missing
// from a failed query is not a node gone. An agent that does not answer
// keeps its allocations' last status: a node that blinks does not make its
// instances look new.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/heartbeat"
	"slipway.dev/coordinator/prometheus"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/coordinator/webhook"
	"slipway.dev/platform/nodepolicy"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// Observation is what one pass sees of the world.
type Observation struct {
	// Now is the time of the pass.
	Now time.Time
	// Nodes are the live nodes, by id.
	Nodes map[string]Node
	// Lost are the nodes missing for longer than NodeGrace.
	Lost map[string]bool
	// Acks are the acknowledgements of every live edge (the route
	// barrier).
	Acks []*edgev1.EdgeAck
	// Statuses are the last status each agent reported per allocation id.
	Statuses map[string]*agentv1.AllocationStatus
	// Unowned are, per node, the statuses its agent last reported of
	// instances no allocation of the state holds (stopped while the agent
	// was cut off, or left on a node whose allocations were replaced): the
	// agent still runs or stops them, and one it reports running and
	// passing is registered, so the edges may route to it (a stray for the
	// rollout machine, rollout.Observation.Unowned). An agent that does not
	// answer keeps its last report while its node is within its grace; a
	// lost or down node's are dropped: past its grace (or heartbeat TTL) its
	// instances are taken as dead, so a stray never holds a rollout longer.
	Unowned map[string][]*agentv1.AllocationStatus
	// Routed are the allocations some live edge routes now (listed in its
	// acknowledgement), less those on a node fenced for longer than
	// FenceDeadline (an edge that does not know fences).
	Routed map[string]bool
	// Signals are the golden signals of the analysis window each rollout's
	// machine asks for (rollout.AnalysisWindow), by rollout id.
	Signals map[string]*rollout.Signals
	// Hooks are the answers of the hooks of the gate each rollout waits at
	// (rollout.DueHooks), by rollout id.
	Hooks map[string]*rollout.HookAnswer
}

// observe reads the nodes, the agents' statuses and the edges'
// acknowledgements.
func (e *Engine) observe(ctx context.Context) (Observation, error) {
	obs := Observation{Now: e.cfg.Now()}
	nodes, err := call(ctx, e.cfg.CallTimeout, e.cfg.Nodes.Nodes)
	if err != nil {
		return Observation{}, fmt.Errorf("engine: discover nodes: %w", err)
	}
	hb := e.cfg.Heartbeats
	if hb != nil {
		// The changes show in State; commitNodes records them.
		for _, c := range hb.Tick() {
			if c.Up {
				e.log.Info("node up by its heartbeats: judged by its stream from now on", "node", c.Node)
			} else {
				e.log.Warn("node sent no heartbeat for the TTL: down", "node", c.Node, "ttl", hb.Config().TTL)
			}
		}
	}
	e.nodes = map[string]Node{}
	for _, n := range nodes {
		if hb != nil && hb.State(n.ID) == heartbeat.Down {
			continue // silent past the TTL: Consul's check does not bring it back
		}
		e.nodes[n.ID] = n
	}
	if hb != nil {
		// A node up by its heartbeats is live while its Consul check
		// flaps: it is the node recorded (the check only found it).
		for _, r := range e.nodeRecords() {
			if _, ok := e.nodes[r.GetId()]; !ok && hb.State(r.GetId()) == heartbeat.Up && r.GetAddress() != "" {
				e.nodes[r.GetId()] = nodeOfRecord(r)
			}
		}
	}
	// A node that left is sent its whole set at once when it returns (act
	// stops its sync worker): its agent holds its instances out of
	// traffic until a leader's sync confirms what it still owns.
	obs.Nodes = e.nodes
	obs.Lost = e.trackLost(obs.Now)
	if hb != nil {
		// Down by its heartbeats: the TTL was its grace.
		for id := range e.lostSince {
			if hb.State(id) == heartbeat.Down {
				obs.Lost[id] = true
			}
		}
	}
	fresh := e.collectStatuses(ctx)
	obs.Statuses = e.statuses
	for node := range e.unowned {
		_, live := e.nodes[node]
		_, missing := e.lostSince[node]
		if !live && !fresh[node] && (!missing || obs.Lost[node]) {
			delete(e.unowned, node)
		}
	}
	obs.Unowned = e.unowned
	acks, err := call(ctx, e.cfg.CallTimeout, e.cfg.Routes.Acks)
	if err != nil {
		return Observation{}, fmt.Errorf("engine: read edge acks: %w", err)
	}
	obs.Acks = acks
	obs.Routed = e.routed(acks, obs.Now)
	obs.Signals = e.observeSignals(obs.Now)
	obs.Hooks = e.observeHooks(obs.Now)
	return obs, nil
}

// observeSignals reads, for every rollout whose machine wants an analysis
// window judged now, the canary's and stable's signals over that window.
func (e *Engine) observeSignals(now time.Time) map[string]*rollout.Signals {
	out := map[string]*rollout.Signals{}
	asking := map[string]bool{}
	if e.signalsSince.IsZero() {
		// The first whole second after this engine started.
		e.signalsSince = now.Truncate(time.Second).Add(time.Second)
	}
	for _, ro := range e.rolloutsToStep() {
		st, ok, err := e.machine(ro)
		if err != nil || !ok {
			continue
		}
		from, to, due := rollout.AnalysisWindow(st, now)
		if !due {
			continue
		}
		if from.Before(e.signalsSince) {
			// This leader has not received the whole window: what the
			// edges reported to the one before is gone with it (signals
			// are in memory). Judging the part it has would count a
			// failover as missing traffic (an inconclusive window, a
			// failure under no_data fail); the machine gets the next
			// window this leader saw whole instead.
			continue
		}
		var gates []analysis.Gate
		if hooks, queries := rollout.AnalysisWebhooks(st), rollout.AnalysisQueries(st); len(hooks)+len(queries) > 0 {
			// Webhooks are asked in the background for this window; the
			// window is judged on the pass after they all answered.
			asking[ro.GetId()] = true
			call := e.hooks[ro.GetId()]
			if call == nil || !call.after.Equal(st.AnalysisFrom) {
				e.hooks[ro.GetId()] = e.askHooks(ro, st, from, to, hooks, queries)
				continue
			}
			select {
			case <-call.done:
			default:
				continue
			}
			from, to, gates = call.from, call.to, call.gates
		}
		out[ro.GetId()] = &rollout.Signals{From: from, To: to, Gates: gates,
			Canary: e.signalWindow(st.Service, st.To, from, to),
			Stable: e.signalWindow(st.Service, st.From, from, to)}
	}
	for id := range e.hooks {
		if !asking[id] {
			delete(e.hooks, id)
		}
	}
	return out
}

func (e *Engine) signalWindow(service string, release uint64, from, to time.Time) analysis.Sample {
	if e.cfg.Signals == nil {
		return analysis.Sample{}
	}
	return e.cfg.Signals.Window(service, release, from, to)
}

// hookCall is one window's webhooks being asked.
type hookCall struct {
	after    time.Time // the machine's AnalysisFrom when asked
	from, to time.Time
	done     chan struct{}
	gates    []analysis.Gate // set before done is closed
}

// askHooks asks every webhook and Prometheus query for the window in the
// background.
func (e *Engine) askHooks(ro *deployv1.Rollout, st rollout.State, from, to time.Time, hooks []analysis.Webhook, queries []analysis.PromQuery) *hookCall {
	call := &hookCall{after: st.AnalysisFrom, from: from, to: to, done: make(chan struct{})}
	body := webhook.Context{Rollout: ro.GetId(), Service: st.Service, CanaryRelease: st.To, StableRelease: st.From,
		Step: st.Step + 1, Weight: st.Weights[st.To], WindowStart: from, WindowEnd: to,
		Canary: webhook.SignalsOf(e.signalWindow(st.Service, st.To, from, to)),
		Stable: webhook.SignalsOf(e.signalWindow(st.Service, st.From, from, to))}
	go func() {
		defer close(call.done)
		gates := make([]analysis.Gate, len(hooks)+len(queries))
		var wg sync.WaitGroup
		// A gate outside -analysis-gate-allow (committed before the list
		// changed) fails without being asked.
		for i, h := range hooks {
			if !e.cfg.GateAllow.Allows(h.URL) {
				gates[i] = analysis.Refused("webhook", h.Name)
				continue
			}
			wg.Go(func() { gates[i] = webhook.Ask(context.Background(), e.cfg.HTTPClient, h, body) })
		}
		vars := prometheus.Vars{Service: st.Service, Canary: st.To, Stable: st.From}
		for i, q := range queries {
			if !e.cfg.GateAllow.Allows(q.Address) {
				gates[len(hooks)+i] = analysis.Refused("prometheus", q.Name)
				continue
			}
			wg.Go(func() { gates[len(hooks)+i] = prometheus.Ask(context.Background(), q, vars, to) })
		}
		wg.Wait()
		call.gates = gates
	}()
	return call
}

// trackLost notes when each recorded node (or node of a stored allocation)
// went missing and returns those missing for NodeGrace or longer.
func (e *Engine) trackLost(now time.Time) map[string]bool {
	for id := range e.nodes {
		delete(e.lostSince, id)
	}
	missing := func(id string) {
		if _, ok := e.nodes[id]; ok {
			return
		}
		if _, ok := e.lostSince[id]; !ok {
			e.lostSince[id] = now
		}
	}
	for _, n := range e.nodeRecords() {
		missing(n.GetId())
	}
	// Allocations on nodes never recorded (e.g. written before discovery)
	// also start their grace period.
	for _, sa := range e.allocs().all {
		missing(sa.Allocation.GetNodeId())
	}
	lost := map[string]bool{}
	for id, since := range e.lostSince {
		if now.Sub(since) >= e.cfg.NodeGrace {
			lost[id] = true
		}
	}
	return lost
}

// collectStatuses collects the status of every allocation from the live
// agents. The last status of an allocation whose agent does not answer (or
// whose node is missing, within its grace period) is kept. It returns the
// nodes not live whose agent streams again (down by its heartbeats until
// heard from for the settle time): what they report of instances the
// state does not hold is fresh, and counts as unowned whatever their
// grace (a node back from a netsplit re-registers what it ran until a
// leader's sync stops it).
func (e *Engine) collectStatuses(ctx context.Context) map[string]bool {
	v := e.allocs()
	stored := v.held
	byNode := map[string][]string{}
	for _, sa := range v.all {
		a := sa.Allocation
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
		// unowned are the reported allocations the state does not hold.
		unowned []*agentv1.AllocationStatus
		err     error
	}
	ch := make(chan result, len(e.nodes))
	for _, n := range e.nodes {
		if e.cfg.Heartbeats != nil {
			if sts, ok := e.cfg.Heartbeats.Statuses(n.ID); ok {
				// Streamed: only the node's own allocations count.
				ch <- result{n.ID, ownStatuses(sts, byNode[n.ID]), unownedStatuses(sts, stored), nil}
				continue
			}
		}
		go func() {
			sts, err := call(ctx, e.cfg.CallTimeout, func(c context.Context) ([]*agentv1.AllocationStatus, error) { return e.cfg.Agents.Status(c, n) })
			ch <- result{n.ID, sts, unownedStatuses(sts, stored), err}
		}()
	}
	for range e.nodes {
		r := <-ch
		if r.err != nil {
			e.log.Warn("agent status", "node", r.node, "err", r.err)
			continue
		}
		if len(r.unowned) > 0 {
			e.unowned[r.node] = r.unowned
		} else {
			delete(e.unowned, r.node)
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
	fresh := map[string]bool{}
	if hb := e.cfg.Heartbeats; hb != nil {
		for _, id := range hb.Streaming() {
			if _, live := e.nodes[id]; live {
				continue
			}
			if sts, ok := hb.Statuses(id); ok {
				fresh[id] = true
				if un := unownedStatuses(sts, stored); len(un) > 0 {
					e.unowned[id] = un
				} else {
					delete(e.unowned, id)
				}
			}
		}
	}
	return fresh
}

// ownStatuses are the statuses in sts of allocations stored on node (ids):
// a stream reports for its own node only.
func ownStatuses(sts []*agentv1.AllocationStatus, ids []string) []*agentv1.AllocationStatus {
	own := make(map[string]bool, len(ids))
	for _, id := range ids {
		own[id] = true
	}
	out := make([]*agentv1.AllocationStatus, 0, len(sts))
	for _, s := range sts {
		if own[s.GetAllocationId()] {
			out = append(out, s)
		}
	}
	return out
}

// unownedStatuses are the statuses in sts of allocations the state does
// not hold (stored), in the agent's order.
func unownedStatuses(sts []*agentv1.AllocationStatus, stored map[string]bool) []*agentv1.AllocationStatus {
	var out []*agentv1.AllocationStatus
	for _, s := range sts {
		if !stored[s.GetAllocationId()] {
			out = append(out, s)
		}
	}
	return out
}

// nodeOfRecord is the node recorded in the state, as discovery would
// report it.
func nodeOfRecord(r *clusterv1.Node) Node {
	sec := r.GetSecurity()
	return Node{ID: r.GetId(), Addr: r.GetAddress(), Labels: r.GetLabels(), CPU: int(r.GetCpuMhz()), MemoryMB: int(r.GetMemoryMb()),
		Driver: r.GetDriver(), Security: nodepolicy.Policy{Privileged: sec.GetPrivileged(), Caps: sec.GetCaps(), HostPaths: sec.GetHostPaths(), Images: sec.GetImages()}}
}

// routed are the allocations the edges' acknowledgements list as routed,
// less those of nodes fenced for longer than FenceDeadline.
func (e *Engine) routed(acks []*edgev1.EdgeAck, now time.Time) map[string]bool {
	out := map[string]bool{}
	for _, a := range acks {
		for _, l := range a.GetInstances() {
			for _, id := range l.GetIds() {
				out[id] = true
			}
		}
	}
	past := map[string]bool{}
	for n, since := range e.fencedAt {
		if now.Sub(since) > e.cfg.FenceDeadline {
			past[n] = true
		}
	}
	if len(out) == 0 || len(past) == 0 {
		return out
	}
	for n := range past {
		for _, a := range e.cfg.FSM.Allocations(n) {
			delete(out, a.GetId())
		}
	}
	return out
}
