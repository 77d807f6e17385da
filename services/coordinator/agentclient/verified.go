package agentclient

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"slipway.dev/coordinator/engine"
)

// Verified is an engine.NodeSource that passes on, of the nodes src
// discovers (the node agents' Consul entries), only those whose agent has
// proved who it is: it answered GetNodeStatus over mutual TLS with a
// nodeagent certificate naming the node (Client checks both on every
// dial). A Consul entry alone, which anyone allowed to register a service
// can write, never makes a node: the engine does not record it, places
// nothing on it and sends it nothing.
//
// A node proven once at an address stays proven there; every later call
// to it is checked by the TLS handshake anyway.
type Verified struct {
	src    engine.NodeSource
	agents engine.Agents
	log    *slog.Logger
	// Timeout bounds one probe (default 2s); Retry spaces the probes of a
	// node that failed one (default 1s).
	Timeout, Retry time.Duration
	// Parallel bounds the probes in flight (default 64); the others wait
	// their turn, and a probe's Timeout starts with its turn. A fleet that
	// appears at once (a new leader, a start of thousands of agents) made
	// as many TLS handshakes at once: on a loaded leader they all ran
	// past their timeout, were retried together a second later, and no
	// node was ever proven.
	Parallel int

	mu      sync.Mutex
	turns   chan struct{}        // capacity Parallel, made on first use
	proven  map[string]bool      // by id@addr
	probing map[string]bool      // by id@addr: a probe is in flight
	failed  map[string]time.Time // by id@addr: when its last probe failed
}

// Interface guard.
var _ engine.NodeSource = (*Verified)(nil)

// NewVerified returns the nodes of src that agents can reach and verify.
func NewVerified(src engine.NodeSource, agents engine.Agents, log *slog.Logger) *Verified {
	if log == nil {
		log = slog.Default()
	}
	return &Verified{src: src, agents: agents, log: log, Timeout: 2 * time.Second, Retry: time.Second, Parallel: 64,
		proven: map[string]bool{}, probing: map[string]bool{}, failed: map[string]time.Time{}}
}

// Nodes returns src's nodes whose agents proved their identity. Those not
// proven yet are probed in the background (each within Timeout, at most
// every Retry), so that an unreachable entry never slows the caller: a node
// appears in the answer after its agent answered a probe.
func (v *Verified) Nodes(ctx context.Context) ([]engine.Node, error) {
	nodes, err := v.src.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]engine.Node, 0, len(nodes))
	for _, n := range nodes {
		k := n.ID + "@" + n.Addr
		if v.proven[k] {
			out = append(out, n)
			continue
		}
		if at, ok := v.failed[k]; v.probing[k] || ok && now.Sub(at) < v.Retry {
			continue
		}
		v.probing[k] = true
		if v.turns == nil {
			v.turns = make(chan struct{}, max(1, v.Parallel))
		}
		go v.probe(n, k, v.turns)
	}
	return out, nil
}

func (v *Verified) probe(n engine.Node, k string, turns chan struct{}) {
	turns <- struct{}{}
	defer func() { <-turns }()
	ctx, cancel := context.WithTimeout(context.Background(), v.Timeout)
	defer cancel()
	_, err := v.agents.Status(ctx, n)
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.probing, k)
	if err != nil {
		if _, seen := v.failed[k]; !seen {
			v.log.Warn("node agent not accepted (yet): it did not answer over mutual TLS with a nodeagent certificate naming the node",
				"node", n.ID, "addr", n.Addr, "err", err)
		}
		v.failed[k] = time.Now()
		return
	}
	if _, seen := v.failed[k]; seen {
		v.log.Info("node agent proved its identity", "node", n.ID, "addr", n.Addr)
	}
	delete(v.failed, k)
	v.proven[k] = true
}
