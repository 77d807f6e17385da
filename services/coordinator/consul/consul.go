// Package consul is the leader engine's adapter to Consul: it discovers
// workload nodes from the passing instances of the node agents' service,
// writes traffic intents to the KV store for the edges, and follows the
// edges' acknowledgements (the route barrier) with blocking queries.
package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/coordinator/engine"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/nodepolicy"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// ErrNoAcks is returned by Acks before the first acknowledgement query
// answered.
var ErrNoAcks = errors.New("consul: edge acknowledgements not loaded yet")

// Client implements engine.NodeSource and engine.Routes.
type Client struct {
	api    *api.Client
	cfg    consulconf.Config
	logger *slog.Logger

	mu      sync.Mutex
	acks    []*edgev1.EdgeAck
	loaded  bool
	changed chan struct{}

	nodes       []engine.Node // node agents' passing instances, from WatchNodes
	nodesLoaded bool
}

// NodesEvery is the least time between two of WatchNodes' queries. Each
// answer lists every node agent, and in a large fleet some agent's entry
// changes all the time, so an unlimited blocking query would re-list the
// fleet many times a second; liveness of streaming nodes does not come
// from it, and a new or failed node is seen within this much.
const NodesEvery = time.Second

// Interface guards.
var (
	_ engine.NodeSource = (*Client)(nil)
	_ engine.Routes     = (*Client)(nil)
)

// New returns a client of the Consul agent at addr (host:port), with the
// token and TLS settings of CONSUL_HTTP_* in the environment; NewFromConfig
// sets them.
func New(addr string, logger *slog.Logger) (*Client, error) {
	return NewFromConfig(consulconf.Config{Addr: addr}, logger)
}

// NewFromConfig returns a client of the Consul agent cfg names, with its
// token and TLS settings (deployments/consul/coordinator.hcl is the policy
// the token needs).
func NewFromConfig(cfg consulconf.Config, logger *slog.Logger) (*Client, error) {
	if logger == nil {
		logger = slog.Default()
	}
	c, err := cfg.Client()
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	return &Client{api: c, cfg: cfg, logger: logger, changed: make(chan struct{})}, nil
}

// CheckToken says which Consul token the client runs as, or why Consul
// refuses it (see consulconf.Config.CheckToken).
func (c *Client) CheckToken(ctx context.Context) (string, error) {
	return c.cfg.CheckToken(ctx, c.api, "coordinator")
}

// explain adds to a refusal by Consul's ACLs which token policy is missing.
func explain(err error) error { return consulconf.Explain(err, "coordinator") }

// Nodes returns every node whose agent instance passes its checks. While
// WatchNodes runs it answers from the watch's cached view (no Consul query
// per pass); without a running watch it queries Consul directly.
func (c *Client) Nodes(ctx context.Context) ([]engine.Node, error) {
	c.mu.Lock()
	if c.nodesLoaded {
		out := slices.Clone(c.nodes)
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	out, _, err := c.listNodes(ctx, 0, 0)
	return out, err
}

// WatchNodes follows the node agents' passing instances with blocking
// queries (WaitIndex) until ctx ends, so that Nodes answers from memory and
// Consul answers only when the set changes, instead of one full list per
// engine pass. A failed query falls back to direct queries until the watch
// answers again.
func (c *Client) WatchNodes(ctx context.Context) {
	follow(ctx, NodesEvery, c.listNodes, func(nodes []engine.Node) {
		c.mu.Lock()
		c.nodes, c.nodesLoaded = nodes, true
		c.mu.Unlock()
	}, func(err error) {
		c.logger.Debug("node agents query failed", "err", err)
		c.mu.Lock()
		c.nodesLoaded = false // fall back to direct queries
		c.mu.Unlock()
	})
	c.mu.Lock()
	c.nodesLoaded = false
	c.mu.Unlock()
}

// follow runs list as a Consul blocking query loop (WaitIndex, 30s waits)
// until ctx ends, giving each answer to got, and starting queries at most
// once per every (0: as soon as the last answered). A failed query is
// given to failed and retried from index 0 after a backoff (100ms doubling
// to 2s); an index that went backwards (Consul restarted) starts over.
func follow[T any](ctx context.Context, every time.Duration, list func(context.Context, uint64, time.Duration) (T, uint64, error), got func(T), failed func(error)) {
	var index uint64
	backoff := 100 * time.Millisecond
	var last time.Time
	for ctx.Err() == nil {
		if wait := every - time.Since(last); every > 0 && wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		v, next, err := list(ctx, index, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failed(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			index = 0
			continue
		}
		backoff = 100 * time.Millisecond
		if next < index {
			next = 0
		}
		index = next
		got(v)
	}
}

// listNodes lists the node agents' passing instances, blocking until
// Consul's index passes index (0: at once) or wait elapses.
func (c *Client) listNodes(ctx context.Context, index uint64, wait time.Duration) ([]engine.Node, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
	entries, meta, err := c.api.Health().Service(catalog.AgentService, "", true, q)
	if err != nil {
		return nil, 0, fmt.Errorf("consul: list %s instances: %w", catalog.AgentService, explain(err))
	}
	var out []engine.Node
	for _, e := range entries {
		n, err := NodeFromService(e.Service, e.Node)
		if err != nil {
			c.logger.Warn("ignoring node agent instance", "service_id", e.Service.ID, "err", err)
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, meta.LastIndex, nil
}

// NodeFromService reads a node from its agent's Consul service instance:
// id, capacity, driver and labels from the meta, gRPC address from the
// service address (the Consul node's address when empty) and port.
func NodeFromService(s *api.AgentService, node *api.Node) (engine.Node, error) {
	if s == nil {
		return engine.Node{}, errors.New("consul: no service")
	}
	n := engine.Node{ID: s.Meta[catalog.MetaNodeID], Driver: s.Meta[catalog.MetaDriver], Boot: s.Meta[catalog.MetaBoot], Labels: map[string]string{}}
	if n.ID == "" {
		return engine.Node{}, fmt.Errorf("consul: instance %s: meta %s is empty", s.ID, catalog.MetaNodeID)
	}
	var err error
	if n.CPU, err = metaInt(s.Meta, catalog.MetaCPU); err != nil {
		return engine.Node{}, fmt.Errorf("consul: instance %s: %w", s.ID, err)
	}
	if n.MemoryMB, err = metaInt(s.Meta, catalog.MetaMemory); err != nil {
		return engine.Node{}, fmt.Errorf("consul: instance %s: %w", s.ID, err)
	}
	for k, v := range s.Meta {
		if l, ok := strings.CutPrefix(k, catalog.MetaLabelPrefix); ok {
			n.Labels[l] = v
		}
	}
	host := s.Address
	if host == "" && node != nil {
		host = node.Address
	}
	if host == "" || s.Port == 0 {
		return engine.Node{}, fmt.Errorf("consul: instance %s: no address:port (%q:%d)", s.ID, host, s.Port)
	}
	n.Addr = net.JoinHostPort(host, strconv.Itoa(s.Port))
	if n.Security, err = nodepolicy.FromMeta(s.Meta); err != nil {
		return engine.Node{}, fmt.Errorf("consul: instance %s: %w", s.ID, err)
	}
	return n, nil
}

func metaInt(meta map[string]string, key string) (int, error) {
	v, ok := meta[key]
	if !ok {
		return 0, fmt.Errorf("meta %s is missing", key)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("meta %s=%q: %w", key, v, err)
	}
	return n, nil
}

// WriteIntent writes the service's traffic intent as protojson under
// catalog.RouteKey, unless the key holds a higher generation: then it
// returns an error wrapping engine.ErrNewerIntent. The write is a
// check-and-set on the key as read, so a newer intent written in between
// is not overwritten either (that write fails and the next pass looks
// again).
func (c *Client) WriteIntent(ctx context.Context, in *edgev1.TrafficIntent) error {
	if in.GetService() == "" {
		return errors.New("consul: write intent: service is empty")
	}
	b, err := protojson.Marshal(in)
	if err != nil {
		return fmt.Errorf("consul: encode intent of %s: %w", in.GetService(), err)
	}
	key := catalog.RouteKey(in.GetService())
	kv, _, err := c.api.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul: write intent of %s: read it first: %w", in.GetService(), explain(err))
	}
	var index uint64 // 0: the key must not exist
	if kv != nil {
		index = kv.ModifyIndex
		held := &edgev1.TrafficIntent{}
		// An undecodable value is overwritten.
		if protojson.Unmarshal(kv.Value, held) == nil && held.GetGeneration() > in.GetGeneration() {
			return fmt.Errorf("consul: intent of %s: %s holds generation %d, above %d: %w",
				in.GetService(), key, held.GetGeneration(), in.GetGeneration(), engine.ErrNewerIntent)
		}
	}
	ok, _, err := c.api.KV().CAS(&api.KVPair{Key: key, Value: b, ModifyIndex: index}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul: write intent of %s: %w", in.GetService(), explain(err))
	}
	if !ok {
		return fmt.Errorf("consul: write intent of %s: %s changed while it was written; the next pass compares again", in.GetService(), key)
	}
	return nil
}

// ReadIntent reads a service's traffic intent; nil when there is none.
func (c *Client) ReadIntent(ctx context.Context, service string) (*edgev1.TrafficIntent, error) {
	kv, _, err := c.api.KV().Get(catalog.RouteKey(service), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: read intent of %s: %w", service, explain(err))
	}
	if kv == nil {
		return nil, nil
	}
	in := &edgev1.TrafficIntent{}
	if err := protojson.Unmarshal(kv.Value, in); err != nil {
		return nil, fmt.Errorf("consul: decode intent of %s: %w", service, err)
	}
	return in, nil
}

// Intents reads every traffic intent under catalog.RoutesPrefix in one
// query, by service; an undecodable one is present as nil (the engine
// overwrites it).
func (c *Client) Intents(ctx context.Context) (map[string]*edgev1.TrafficIntent, error) {
	kvs, _, err := c.api.KV().List(catalog.RoutesPrefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: list %s: %w", catalog.RoutesPrefix, explain(err))
	}
	out := make(map[string]*edgev1.TrafficIntent, len(kvs))
	for _, kv := range kvs {
		svc := strings.TrimPrefix(kv.Key, catalog.RoutesPrefix)
		if svc == "" || strings.Contains(svc, "/") {
			continue
		}
		in := &edgev1.TrafficIntent{}
		if err := protojson.Unmarshal(kv.Value, in); err != nil {
			c.logger.Warn("undecodable traffic intent; it will be rewritten", "key", kv.Key, "err", err)
			in = nil
		}
		out[svc] = in
	}
	return out, nil
}

// Fenced lists the nodes fenced under catalog.FencesPrefix.
func (c *Client) Fenced(ctx context.Context) (map[string]bool, error) {
	keys, _, err := c.api.KV().Keys(catalog.FencesPrefix, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: list %s: %w", catalog.FencesPrefix, explain(err))
	}
	out := make(map[string]bool, len(keys))
	for _, k := range keys {
		if node := strings.TrimPrefix(k, catalog.FencesPrefix); node != "" && !strings.Contains(node, "/") {
			out[node] = true
		}
	}
	return out, nil
}

// Fence fences a node (catalog.FenceKey): the edges stop routing the
// instances it registers. why is stored with it, for people.
func (c *Client) Fence(ctx context.Context, node, why string) error {
	if node == "" {
		return errors.New("consul: fence: node is empty")
	}
	if _, err := c.api.KV().Put(&api.KVPair{Key: catalog.FenceKey(node), Value: []byte(why)}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: fence node %s: %w", node, explain(err))
	}
	return nil
}

// Unfence lifts a node's fence.
func (c *Client) Unfence(ctx context.Context, node string) error {
	if _, err := c.api.KV().Delete(catalog.FenceKey(node), (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: unfence node %s: %w", node, explain(err))
	}
	return nil
}

// Acks returns the acknowledgements of the live edges as last seen by
// WatchAcks; without a running watch it queries Consul directly.
func (c *Client) Acks(ctx context.Context) ([]*edgev1.EdgeAck, error) {
	c.mu.Lock()
	if c.loaded {
		acks := c.acks
		c.mu.Unlock()
		return acks, nil
	}
	c.mu.Unlock()
	acks, _, err := c.listAcks(ctx, 0, 0)
	return acks, err
}

// Changed returns a channel closed at the next change of the edges'
// acknowledgements seen by WatchAcks.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// WatchAcks follows the edges' acknowledgements with blocking queries until
// ctx ends, so that Acks answers from memory and Changed fires as soon as an
// edge acknowledges.
func (c *Client) WatchAcks(ctx context.Context) {
	follow(ctx, 0, c.listAcks, func(acks []*edgev1.EdgeAck) {
		c.mu.Lock()
		c.acks, c.loaded = acks, true
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}, func(err error) {
		c.logger.Debug("edge acks query failed", "err", err)
		c.mu.Lock()
		c.loaded = false // fall back to direct queries
		c.mu.Unlock()
	})
}

func (c *Client) listAcks(ctx context.Context, index uint64, wait time.Duration) ([]*edgev1.EdgeAck, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
	kvs, meta, err := c.api.KV().List(catalog.EdgesPrefix, q)
	if err != nil {
		return nil, 0, fmt.Errorf("consul: list %s: %w", catalog.EdgesPrefix, explain(err))
	}
	var out []*edgev1.EdgeAck
	for _, kv := range kvs {
		if kv.Session == "" {
			continue // not bound to a live edge's session
		}
		a := &edgev1.EdgeAck{}
		if err := protojson.Unmarshal(kv.Value, a); err != nil {
			c.logger.Warn("ignoring malformed edge ack", "key", kv.Key, "err", err)
			continue
		}
		out = append(out, a)
	}
	return out, meta.LastIndex, nil
}
