package engine

// The act stage.
//
// Contract: act reads only committed state (the FSM) and makes the world
// match it: every live node whose desired set changed since it was last
// sent (or was sent longer than Resync ago) gets its whole set with a
// fencing token of the current term and the last committed index, through
// its own sync worker (sync.go), and every traffic intent that Routes lost
// or holds differently is written. A node's set is rebuilt only when an
// entry changed its allocations.
// Acting is declarative and idempotent: doing it twice is harmless, and a
// new leader re-acts everything. What was sent is remembered only to skip
// unchanged sends; it is forgotten on every Run.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// act sends every live node whose desired set changed since it was last
// sent its whole set, and writes every changed traffic intent.
func (e *Engine) act(ctx context.Context) error {
	term, err := e.cfg.Raft.Term()
	if err != nil {
		return fmt.Errorf("engine: raft term: %w", err)
	}
	token := &agentv1.FencingToken{Term: term, Index: e.cfg.FSM.LastIndex()}
	var errs []error
	// Each node's worker gets its set; the pass waits at most SyncWait
	// for the sends it started (a slow or stuck agent holds up only its
	// own node), and reports the failures that came back meanwhile.
	e.retain(e.nodes)
	now := e.cfg.Now()
	idx := e.cfg.FSM.AllocationIndexes()
	for id := range e.sets {
		if _, ok := e.nodes[id]; !ok {
			delete(e.sets, id)
		}
	}
	var waits []<-chan error
	for _, id := range sortedKeys(e.nodes) {
		// A node's desired set is rebuilt only when an entry changed its
		// allocations (the FSM keeps the index of the last one per node).
		set, ok := e.sets[id]
		if !ok || set.index != idx[id] {
			sas, index := e.cfg.FSM.NodeAllocations(id)
			allocs, held := desiredSet(id, sas, e.cfg.SyncBudget)
			set = nodeSet{index: index, allocs: allocs, held: held}
			e.sets[id] = set
		}
		if set.held != nil {
			errs = append(errs, set.held)
		}
		d := desired{token: token, allocs: set.allocs, fp: strconv.FormatUint(set.index, 10)}
		if ch := e.worker(e.nodes[id]).offer(d, now, e.cfg.Resync); ch != nil {
			waits = append(waits, ch)
		}
	}
	if len(waits) > 0 {
		t := time.NewTimer(e.cfg.SyncWait)
	wait:
		for _, ch := range waits {
			select {
			case err := <-ch:
				if err != nil {
					errs = append(errs, err)
				}
			case <-t.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		t.Stop()
	}
	errs = append(errs, e.writeIntents(ctx)...)
	if err := e.writeFences(ctx, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeFences makes the node fences Routes holds (when it can fence, see
// Fences) what this pass wants: the lost nodes migrate says to fence, and
// every node fenced already that is not live again, has not accepted a
// desired set since it is back, or still runs, as its agent reports, an
// instance it no longer owns. A fence is lifted only then: the node is back,
// synced, and its agent stopped what was replaced meanwhile.
func (e *Engine) writeFences(ctx context.Context, now time.Time) error {
	fx, ok := e.cfg.Routes.(Fences)
	if !ok {
		return nil
	}
	current, err := call(ctx, e.cfg.CallTimeout, fx.Fenced)
	if err != nil {
		return fmt.Errorf("engine: read node fences: %w", err)
	}
	want := map[string]bool{}
	for _, n := range e.fenceDue {
		want[n] = true
	}
	for n := range current {
		if _, live := e.nodes[n]; !live || !e.synced(n) || runsUnowned(e.unowned[n]) {
			want[n] = true
		}
	}
	var errs []error
	for _, n := range sortedKeys(want) {
		if current[n] {
			if _, ok := e.fencedAt[n]; !ok {
				e.fencedAt[n] = now // fenced before this engine started
			}
			continue
		}
		why := fmt.Sprintf("lost by the leader at %s: its allocations are replaced elsewhere", now.UTC().Format(time.RFC3339))
		if _, err := call(ctx, e.cfg.CallTimeout, func(c context.Context) (struct{}, error) { return struct{}{}, fx.Fence(c, n, why) }); err != nil {
			errs = append(errs, fmt.Errorf("engine: fence node %s: %w", n, err))
			continue
		}
		e.fencedAt[n] = now
		e.log.Warn("node fenced: the edges stop routing its instances", "node", n)
	}
	for _, n := range sortedKeys(current) {
		if want[n] {
			continue
		}
		if _, err := call(ctx, e.cfg.CallTimeout, func(c context.Context) (struct{}, error) { return struct{}{}, fx.Unfence(c, n) }); err != nil {
			errs = append(errs, fmt.Errorf("engine: unfence node %s: %w", n, err))
			continue
		}
		delete(e.fencedAt, n)
		e.log.Info("node fence lifted: it is back and runs nothing it no longer owns", "node", n)
	}
	for n := range e.fencedAt {
		if !want[n] && !current[n] {
			delete(e.fencedAt, n)
		}
	}
	return errors.Join(errs...)
}

// runsUnowned reports whether an agent reports an instance it no longer
// owns as running (registered, or about to be).
func runsUnowned(sts []*agentv1.AllocationStatus) bool {
	for _, st := range sts {
		if st.GetState() == agentv1.AllocationState_ALLOCATION_STATE_RUNNING || st.GetState() == agentv1.AllocationState_ALLOCATION_STATE_STARTING {
			return true
		}
	}
	return false
}

// withData returns a node's desired set with the values of the secrets and
// configs its allocations mount filled in: copies, made for this sync only,
// so the values never reach the replicated state nor the fingerprint. A
// value that cannot be opened is left empty and logged: its allocation is
// still sent (leaving it out would stop it), and the agent keeps the files
// it has or fails the start with a clear error.
func (e *Engine) withData(node string, allocs []*agentv1.Allocation) []*agentv1.Allocation {
	out := allocs
	copied := false
	for i, a := range allocs {
		if len(a.GetFiles()) == 0 || a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED {
			continue
		}
		if !copied {
			out = slices.Clone(allocs)
			copied = true
		}
		c := proto.CloneOf(a)
		for _, f := range c.GetFiles() {
			kind := deployv1.SecretKind_SECRET_KIND_SECRET
			if f.GetKind() == "config" {
				kind = deployv1.SecretKind_SECRET_KIND_CONFIG
			}
			if e.cfg.Secrets == nil {
				e.log.Error("cannot send a secret: this coordinator has no keyring", "node", node, "allocation", a.GetId(), "kind", f.GetKind(), "name", f.GetName())
				continue
			}
			v, err := e.cfg.Secrets.Open(kind, f.GetName(), f.GetVersion())
			if err != nil {
				e.log.Error("cannot open a secret for its node", "node", node, "allocation", a.GetId(), "kind", f.GetKind(), "name", f.GetName(), "version", f.GetVersion(), "err", err)
				continue
			}
			f.Data = v
		}
		out[i] = c
	}
	return out
}

// nodeSet is a node's desired set as built at an allocation index.
type nodeSet struct {
	index  uint64
	allocs []*agentv1.Allocation
	held   *HeldBackError
}

// writeIntents makes what Routes holds match the committed intents. What
// the engine wrote is never trusted to still be there: a Consul agent
// restarted without its data (or an operator, or a deposed leader) may have
// dropped or changed a key. So every pass reads the intents back (one list
// query) and rewrites each one that is missing or differs from raft state,
// whatever generation was last written. When the read fails, intents whose
// generation moved since they were last written are still written, and the
// comparison is made again on the next pass. An intent of a higher
// generation than the committed one is never overwritten: a leader being
// deposed must not put a newer leader's routes back to older ones (the
// store refuses such a write too, see Routes.WriteIntent).
func (e *Engine) writeIntents(ctx context.Context) []error {
	var errs []error
	current, err := call(ctx, e.cfg.CallTimeout, e.cfg.Routes.Intents)
	if err != nil {
		errs = append(errs, fmt.Errorf("engine: read back traffic intents: %w", err))
	}
	for _, in := range e.cfg.FSM.Intents() {
		svc := in.GetService()
		g, wrote := e.written[svc]
		if err != nil {
			if wrote && g == in.GetGeneration() {
				continue
			}
		} else if proto.Equal(current[svc], in) {
			e.written[svc] = in.GetGeneration()
			continue
		} else if held := current[svc].GetGeneration(); held > in.GetGeneration() {
			e.newerIntent(svc, held, in.GetGeneration())
			continue
		}
		if _, werr := call(ctx, e.cfg.CallTimeout, func(c context.Context) (struct{}, error) { return struct{}{}, e.cfg.Routes.WriteIntent(c, in) }); werr != nil {
			if errors.Is(werr, ErrNewerIntent) {
				e.newerIntent(svc, 0, in.GetGeneration())
				continue
			}
			errs = append(errs, fmt.Errorf("engine: write intent of %s: %w", svc, werr))
			continue
		}
		if wrote && g == in.GetGeneration() {
			what := "missing or undecodable"
			if current[svc] != nil {
				what = fmt.Sprintf("generation %d there instead", current[svc].GetGeneration())
			}
			e.log.Warn("traffic intent re-asserted: Routes had lost or changed it", "service", svc, "generation", in.GetGeneration(), "found", what)
		} else {
			e.log.Info("traffic intent written", "service", svc, "generation", in.GetGeneration(), "weights", in.GetWeights())
		}
		e.written[svc] = in.GetGeneration()
	}
	return errs
}

// newerIntent says, once per committed generation, that svc's intent was
// left as Routes holds it: a higher generation than the committed one
// (held; 0 when only the write said so).
func (e *Engine) newerIntent(svc string, held, committed uint64) {
	if e.newer[svc] == committed {
		return
	}
	e.newer[svc] = committed
	e.log.Warn("traffic intent not written: Routes holds a higher generation (a newer leader wrote it; after a restore of an older state, delete the key to let this leader write its own)",
		"service", svc, "committed", committed, "held", held)
}
