package engine

// Per-node sync workers (part of the act stage).
//
// Contract: every live node has one worker that owns all calls to its
// agent's SyncAllocations. act offers each worker the node's committed
// desired set and fencing token on every pass and never calls an agent
// itself; the worker sends the set when it differs from the last one the
// agent accepted (or the last send is older than Resync), each call bounded
// by its own deadline (SyncTimeout), and after a failure it waits with
// exponential backoff before trying again with the newest set. So a node's
// desired set is sent once per change, not once per pass, and a slow, dead
// or stuck agent delays only its own allocations: the pass waits at most
// SyncWait for the sends it started and goes on. A worker is stopped when
// its node leaves (a returning node is sent its whole set at once) and all
// of them when Run ends (a deposed leader sends nothing more).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// desired is one offer of a node's desired set.
type desired struct {
	token  *agentv1.FencingToken
	allocs []*agentv1.Allocation
	fp     string
}

// syncWorker sends one node its desired set.
type syncWorker struct {
	e    *Engine
	node Node
	kick chan struct{} // capacity 1: there may be something to send
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	want     desired
	wantGen  uint64 // bumped by every offer that needs a send
	force    bool   // send even when want.fp == sentFP (Resync)
	sentFP   string
	sentAt   time.Time
	sent     bool
	backoff  bool            // waiting after a failure
	inFlight bool            // a call is out
	lastErr  string          // last error logged
	waiters  []syncWaiter    // act calls waiting for a send to finish
	bo       backoff.BackOff // between failed attempts
}

type syncWaiter struct {
	gen uint64
	ch  chan error
}

// syncers are the engine's workers by node id.
type syncers struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	workers map[string]*syncWorker
}

// startSyncers replaces the workers (stopping any running) with none,
// bound to ctx.
func (e *Engine) startSyncers(ctx context.Context) {
	e.stopSyncers()
	c, cancel := context.WithCancel(ctx)
	e.sync = &syncers{ctx: c, cancel: cancel, workers: map[string]*syncWorker{}}
}

// stopSyncers stops every worker and waits for them: no call to an agent
// is out when it returns.
func (e *Engine) stopSyncers() {
	s := e.sync
	if s == nil {
		return
	}
	e.sync = nil
	s.cancel()
	s.mu.Lock()
	ws := s.workers
	s.workers = map[string]*syncWorker{}
	s.mu.Unlock()
	for _, w := range ws {
		close(w.stop)
		<-w.done
	}
}

// worker returns node's worker, starting it when there is none (or the
// node's address or boot id changed: a new worker sends the whole set at
// once, so a restarted agent gets its secret values without waiting for
// Resync).
func (e *Engine) worker(node Node) *syncWorker {
	s := e.sync
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[node.ID]; w != nil {
		if w.node.Addr == node.Addr && w.node.Boot == node.Boot {
			return w
		}
		close(w.stop)
		<-w.done
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = e.cfg.SyncBackoff, 30*time.Second, 0
	bo.Reset()
	w := &syncWorker{e: e, node: node, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), bo: bo}
	s.workers[node.ID] = w
	go w.run(s.ctx)
	return w
}

// retain stops the workers of nodes not in live.
// synced reports whether the node's worker has had a desired set accepted
// (since the node was last live: a returning node gets a new worker).
func (e *Engine) synced(node string) bool {
	s := e.sync
	s.mu.Lock()
	w := s.workers[node]
	s.mu.Unlock()
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent
}

func (e *Engine) retain(live map[string]Node) {
	s := e.sync
	s.mu.Lock()
	var gone []*syncWorker
	for id, w := range s.workers {
		if _, ok := live[id]; !ok {
			gone = append(gone, w)
			delete(s.workers, id)
		}
	}
	s.mu.Unlock()
	for _, w := range gone {
		close(w.stop)
		<-w.done
	}
}

// offer gives the worker the node's current desired set. It returns a
// channel that receives the outcome of the send it asks for, or nil when
// nothing needs sending or the worker is backing off after a failure
// (then the pass does not wait for it).
func (w *syncWorker) offer(d desired, now time.Time, resync time.Duration) <-chan error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.want = d
	stale := w.sent && w.sentFP == d.fp && now.Sub(w.sentAt) >= resync
	if w.sent && w.sentFP == d.fp && !stale {
		return nil
	}
	if stale {
		w.force = true
	}
	w.wantGen++
	select {
	case w.kick <- struct{}{}:
	default:
	}
	if w.backoff {
		return nil
	}
	ch := make(chan error, 1)
	w.waiters = append(w.waiters, syncWaiter{gen: w.wantGen, ch: ch})
	return ch
}

// run sends until stopped: on a kick, whatever the newest offer needs.
func (w *syncWorker) run(ctx context.Context) {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			w.release(errors.New("engine: sync worker stopped"))
			return
		case <-w.kick:
		}
		for {
			w.mu.Lock()
			d, gen, force := w.want, w.wantGen, w.force
			if w.sent && d.fp == w.sentFP && !force {
				w.mu.Unlock()
				w.deliver(gen, nil)
				break
			}
			w.inFlight, w.force = true, false
			w.mu.Unlock()
			_, err := call(ctx, w.e.cfg.SyncTimeout, func(c context.Context) ([]*agentv1.AllocationStatus, error) {
				return w.e.cfg.Agents.Sync(c, w.node, d.token, w.e.withData(w.node.ID, d.allocs))
			})
			w.mu.Lock()
			w.inFlight = false
			if err == nil {
				w.sent, w.sentFP, w.sentAt, w.backoff = true, d.fp, w.e.cfg.Now(), false
				w.bo.Reset()
				if w.lastErr != "" {
					w.e.log.Info("agent accepts syncs again", "node", w.node.ID)
					w.lastErr = ""
				}
				w.mu.Unlock()
				w.deliver(gen, nil)
				continue // a newer offer may have come meanwhile
			}
			err = fmt.Errorf("engine: sync node %s: %w", w.node.ID, err)
			if errors.Is(err, ErrStaleToken) {
				w.e.log.Warn("agent refused a stale fencing token", "node", w.node.ID, "token", d.token, "err", err)
			} else if err.Error() != w.lastErr {
				w.e.log.Warn("agent sync failed; retrying with backoff", "node", w.node.ID, "err", err)
			}
			w.lastErr = err.Error()
			w.backoff = true
			wait := w.bo.NextBackOff()
			w.mu.Unlock()
			w.deliver(gen, err)
			t := time.NewTimer(wait)
			select {
			case <-w.stop:
				t.Stop()
				w.release(errors.New("engine: sync worker stopped"))
				return
			case <-t.C:
			}
			w.mu.Lock()
			w.force = true // retry whatever the newest offer is
			w.mu.Unlock()
		}
	}
}

// deliver gives err to the waiters of offers up to gen.
func (w *syncWorker) deliver(gen uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	kept := w.waiters[:0]
	for _, wt := range w.waiters {
		if wt.gen <= gen {
			wt.ch <- err
			continue
		}
		kept = append(kept, wt)
	}
	w.waiters = kept
}

func (w *syncWorker) release(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, wt := range w.waiters {
		wt.ch <- err
	}
	w.waiters = nil
}
