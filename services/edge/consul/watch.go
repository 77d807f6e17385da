// Package consul is the edge's Consul adapter: it watches passing instances
// and traffic intents with blocking queries and publishes the edge's route
// acknowledgement under a session.
package consul

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"slipway.dev/edge/routetable"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/consulconf"
)

// explain adds to a refusal by Consul's ACLs which token policy is missing.
func explain(err error) error { return consulconf.Explain(err, "edge") }

// waitTime is how long one blocking query may wait.
const waitTime = 5 * time.Minute

// Watcher keeps the latest passing instances of every Slipway-managed service,
// every traffic intent and the fenced nodes, each through its own Consul
// blocking query.
type Watcher struct {
	client  *api.Client
	log     *slog.Logger
	changes chan struct{}

	mu        sync.Mutex
	instances map[string][]routetable.Instance
	intents   map[string][]byte
	fenced    map[string]bool
	watching  map[string]context.CancelFunc
	pending   int // loops that have not answered once yet
	ready     chan struct{}
	isReady   bool
}

// NewWatcher returns a watcher; Run starts it.
func NewWatcher(client *api.Client, log *slog.Logger) *Watcher {
	return &Watcher{
		client:    client,
		log:       log,
		changes:   make(chan struct{}, 1),
		instances: map[string][]routetable.Instance{},
		intents:   map[string][]byte{},
		fenced:    map[string]bool{},
		watching:  map[string]context.CancelFunc{},
		pending:   2, // services and intents; fences do not hold readiness back
		ready:     make(chan struct{}),
	}
}

// Changes signals (coalesced, capacity one) that Snapshot has changed.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Ready is closed once every query has answered at least once.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Snapshot returns a copy of the current inputs.
func (w *Watcher) Snapshot() routetable.Input {
	w.mu.Lock()
	defer w.mu.Unlock()
	in := routetable.Input{Instances: map[string][]routetable.Instance{}, Intents: maps.Clone(w.intents), Fenced: maps.Clone(w.fenced)}
	for s, is := range w.instances {
		in.Instances[s] = slices.Clone(is)
	}
	return in
}

// Run watches until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { w.watchServices(ctx) })
	wg.Go(func() { w.watchIntents(ctx) })
	wg.Go(func() { w.watchFences(ctx) })
	<-ctx.Done()
	wg.Wait()
}

func (w *Watcher) notify() {
	select {
	case w.changes <- struct{}{}:
	default:
	}
}

// answered records a loop's first answer (under w.mu).
func (w *Watcher) answered(first *bool) {
	if !*first {
		return
	}
	*first = false
	w.pending--
	if w.pending == 0 && !w.isReady {
		w.isReady = true
		close(w.ready)
	}
}

// block runs query as a Consul blocking query loop until ctx is done,
// calling apply with each new result. Errors back off and retry.
func block[T any](ctx context.Context, log *slog.Logger, what string, query func(*api.QueryOptions) (T, *api.QueryMeta, error), apply func(T)) {
	var index uint64
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		opts := (&api.QueryOptions{WaitIndex: index, WaitTime: waitTime}).WithContext(ctx)
		v, meta, err := query(opts)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("consul query failed; retrying", "query", what, "err", explain(err), "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			index = 0
			continue
		}
		backoff = 100 * time.Millisecond
		if meta.LastIndex == index && index != 0 {
			continue
		}
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
		apply(v)
	}
}

func (w *Watcher) watchServices(ctx context.Context) {
	first := true
	block(ctx, w.log, "catalog services", w.client.Catalog().Services, func(svcs map[string][]string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		managed := map[string]bool{}
		for name, tags := range svcs {
			if slices.Contains(tags, catalog.Tag) {
				managed[name] = true
			}
		}
		for name := range managed {
			if _, ok := w.watching[name]; ok {
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			w.watching[name] = cancel
			w.pending++
			go w.watchService(sctx, name)
		}
		for name, cancel := range w.watching {
			if !managed[name] {
				cancel()
				delete(w.watching, name)
				delete(w.instances, name)
				w.notify()
			}
		}
		w.answered(&first)
	})
}

func (w *Watcher) watchService(ctx context.Context, name string) {
	first := true
	query := func(q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		return w.client.Health().Service(name, catalog.Tag, true, q)
	}
	block(ctx, w.log, "health "+name, query, func(entries []*api.ServiceEntry) {
		var insts []routetable.Instance
		for _, e := range entries {
			inst, err := instance(e)
			if err != nil {
				w.log.Warn("ignoring instance", "service", name, "err", err)
				continue
			}
			insts = append(insts, inst)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		w.instances[name] = insts
		w.answered(&first)
		w.notify()
	})
	// A cancelled watch that never answered must not hold readiness back.
	w.mu.Lock()
	w.answered(&first)
	w.mu.Unlock()
}

func instance(e *api.ServiceEntry) (routetable.Instance, error) {
	s := e.Service
	var rel uint64
	var err error
	if v := s.Meta[catalog.MetaRelease]; v != "" {
		rel, err = strconv.ParseUint(v, 10, 64)
	} else {
		rel, err = catalog.ReleaseFromTags(s.Tags)
	}
	if err != nil || rel == 0 {
		return routetable.Instance{}, errors.Join(errors.New("consul: instance "+s.ID+": no valid release"), err)
	}
	addr := s.Address
	if addr == "" && e.Node != nil {
		addr = e.Node.Address
	}
	if addr == "" || s.Port == 0 {
		return routetable.Instance{}, errors.New("consul: instance " + s.ID + ": no address or port")
	}
	track := s.Meta[catalog.MetaTrack]
	if track == "" {
		for _, t := range s.Tags {
			if v, ok := strings.CutPrefix(t, catalog.TrackTagPrefix); ok {
				track = v
			}
		}
	}
	return routetable.Instance{ID: s.ID, Service: s.Service, Address: net.JoinHostPort(addr, strconv.Itoa(s.Port)),
		Release: rel, Track: track, Allocation: s.Meta[catalog.MetaAllocation], Node: s.Meta[catalog.MetaNode]}, nil
}

func (w *Watcher) watchIntents(ctx context.Context) {
	first := true
	query := func(q *api.QueryOptions) (api.KVPairs, *api.QueryMeta, error) {
		return w.client.KV().List(catalog.RoutesPrefix, q)
	}
	block(ctx, w.log, "kv "+catalog.RoutesPrefix, query, func(pairs api.KVPairs) {
		intents := map[string][]byte{}
		for _, p := range pairs {
			svc := strings.TrimPrefix(p.Key, catalog.RoutesPrefix)
			if svc == "" || strings.Contains(svc, "/") {
				continue
			}
			intents[svc] = p.Value
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.intents = intents
		w.answered(&first)
		w.notify()
	})
}

// watchFences follows the node fences. They do not hold the edge's
// readiness back: an edge whose Consul token cannot read them (a policy
// from before fences) still routes, and logs the refused query.
func (w *Watcher) watchFences(ctx context.Context) {
	query := func(q *api.QueryOptions) ([]string, *api.QueryMeta, error) {
		return w.client.KV().Keys(catalog.FencesPrefix, "", q)
	}
	block(ctx, w.log, "kv "+catalog.FencesPrefix, query, func(keys []string) {
		fenced := map[string]bool{}
		for _, k := range keys {
			if node := strings.TrimPrefix(k, catalog.FencesPrefix); node != "" && !strings.Contains(node, "/") {
				fenced[node] = true
			}
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if !maps.Equal(fenced, w.fenced) {
			w.log.Info("fenced nodes changed: their instances are not routed", "fenced", slices.Sorted(maps.Keys(fenced)))
		}
		w.fenced = fenced
		w.notify()
	})
}
