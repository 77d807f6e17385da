// Package consul registers the node agent and its allocations in the local
// Consul agent and waits on the edges' route barrier.
package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/nodeagent/agent"
	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/consulconf"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// DeregisterAfter is how long a critical instance stays registered before
// Consul removes it on its own (a dead host's entries disappear).
var DeregisterAfter = time.Minute

// ErrBarrierTimeout is returned when edges still route to an instance after
// the drain timeout.
var ErrBarrierTimeout = errors.New("consul: edges still route to the instance")

// Health is the aggregated status of an instance's checks, in the agent's
// terms (agent.Health).
type Health = agent.Health

// Check statuses as Consul reports them.
const (
	Passing  Health = api.HealthPassing
	Warning  Health = api.HealthWarning
	Critical Health = api.HealthCritical
)

// Interface guard: Registry is the agent's registry on Consul.
var _ agent.Registry = (*Registry)(nil)

// HeartbeatTTL implements agent.Registry: AgentTTL.
func (r *Registry) HeartbeatTTL() time.Duration { return AgentTTL }

// ImageCheckTTL implements agent.Registry: the ImageCheckTTL variable.
func (r *Registry) ImageCheckTTL() time.Duration { return ImageCheckTTL }

// Registry talks to the local Consul agent for one node.
type Registry struct {
	client *api.Client
	cfg    consulconf.Config
	node   string
	logger *slog.Logger
	// agentRegistered is set once RegisterAgent succeeded: from then on
	// every instance registered carries an alias check on the agent's own
	// service (see Register).
	agentRegistered atomic.Bool
}

// New returns a registry for node through the Consul agent at addr
// (host:port), with the token and TLS settings of CONSUL_HTTP_* in the
// environment; NewFromConfig sets them.
func New(addr, node string, logger *slog.Logger) (*Registry, error) {
	return NewFromConfig(consulconf.Config{Addr: addr}, node, logger)
}

// NewFromConfig returns a registry for node through the Consul agent cfg
// names, with its token and TLS settings (deployments/consul/nodeagent.hcl
// is the policy the token needs).
func NewFromConfig(cfg consulconf.Config, node string, logger *slog.Logger) (*Registry, error) {
	c, err := cfg.Client()
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Registry{client: c, cfg: cfg, node: node, logger: logger}, nil
}

// CheckToken says which Consul token the registry runs as, or why Consul
// refuses it (see consulconf.Config.CheckToken).
func (r *Registry) CheckToken(ctx context.Context) (string, error) {
	return r.cfg.CheckToken(ctx, r.client, "nodeagent")
}

// explain adds to a refusal by Consul's ACLs which token policy is missing.
func explain(err error) error { return consulconf.Explain(err, "nodeagent") }

// Client is the underlying Consul client.
func (r *Registry) Client() *api.Client { return r.client }

// Node describes the agent itself, in the agent's terms (agent.Self).
type Node = agent.Self

// AgentTTL is the TTL of the node agent's own check: the agent heartbeats
// it (Heartbeat) several times within, and it turns critical once the
// agent misses heartbeats for that long (the process died or hangs). Then
// the coordinator sees the node lost, and every instance the agent
// registered turns critical with it (see Register).
var AgentTTL = 3 * time.Second

// AgentCheckIDFor is the Consul check id of node's agent's own check.
func AgentCheckIDFor(node string) string { return "service:" + catalog.AgentServiceID(node) }

// RegisterAgent registers the node agent as catalog.AgentService with a TTL
// check (AgentTTL) that the agent heartbeats. A TTL rather than a check run
// by Consul against the agent's port: the port serves mutual TLS only, and
// what matters is that the agent process is alive and managing its
// instances.
func (r *Registry) RegisterAgent(ctx context.Context, n Node) error {
	host, portStr, err := net.SplitHostPort(n.GRPCAddr)
	if err != nil {
		return fmt.Errorf("consul: agent address %q: %w", n.GRPCAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("consul: agent port %q: %w", portStr, err)
	}
	meta := map[string]string{
		catalog.MetaNodeID: n.ID,
		catalog.MetaCPU:    strconv.Itoa(n.CPUMHz),
		catalog.MetaMemory: strconv.Itoa(n.MemoryMB),
		catalog.MetaDriver: n.Driver,
	}
	if n.BootID != "" {
		meta[catalog.MetaBoot] = n.BootID
	}
	for k, v := range n.Labels {
		meta[catalog.MetaLabelPrefix+k] = v
	}
	pm, err := n.Policy.Meta()
	if err != nil {
		return fmt.Errorf("consul: node agent %s: %w", n.ID, err)
	}
	maps.Copy(meta, pm)
	reg := &api.AgentServiceRegistration{
		ID:      catalog.AgentServiceID(n.ID),
		Name:    catalog.AgentService,
		Address: host,
		Port:    port,
		Meta:    meta,
		Check: &api.AgentServiceCheck{
			Name:                           "node agent heartbeat",
			TTL:                            AgentTTL.String(),
			Status:                         api.HealthPassing, // registering itself, it is alive
			Notes:                          "the node agent heartbeats this check; critical once it misses heartbeats for the TTL",
			DeregisterCriticalServiceAfter: DeregisterAfter.String(),
		},
	}
	if err := r.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: register node agent %s: %w", n.ID, explain(err))
	}
	r.agentRegistered.Store(true)
	return nil
}

// Heartbeat marks the agent's own check passing for another AgentTTL.
func (r *Registry) Heartbeat(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().UpdateTTLOpts(AgentCheckIDFor(r.node), "node agent alive", api.HealthPassing, q); err != nil {
		return fmt.Errorf("consul: node agent heartbeat: %w", explain(err))
	}
	return nil
}

// AgentCheckID is the Consul check id of the alias check that ties an
// instance's health to its node agent's own service.
func AgentCheckID(allocID string) string { return allocID + ":agent" }

// DeregisterAgent removes the agent's own registration.
func (r *Registry) DeregisterAgent(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().ServiceDeregisterOpts(catalog.AgentServiceID(r.node), q); err != nil {
		return fmt.Errorf("consul: deregister node agent: %w", explain(err))
	}
	return nil
}

// Register registers a running instance of spec reachable on address and
// inst.HostPort; the service id is the allocation id. passing says the
// agent has just seen the check pass, so the check starts passing instead
// of critical (Consul's first run of the check is staggered up to an
// interval).
//
// Once the agent registered itself (RegisterAgent), the instance also gets
// an alias check on the agent's own service: when the agent dies (it
// misses its heartbeats for AgentTTL) or its registration is gone, every
// instance it manages turns critical at once with it, so edges stop
// routing to instances nobody manages, and Consul removes them after
// DeregisterAfter, even though their containers still run and answer their
// own checks. The coordinator meanwhile sees the node lost and replaces
// its allocations.
func (r *Registry) Register(ctx context.Context, s allocation.Spec, inst allocation.Instance, address string, passing bool) error {
	target := net.JoinHostPort(address, strconv.Itoa(s.CheckHostPort(inst)))
	check := &api.AgentServiceCheck{
		CheckID:                        s.ID + ":check",
		Name:                           s.ID + " health",
		Interval:                       s.CheckInterval().String(),
		Timeout:                        s.CheckTimeout().String(),
		DeregisterCriticalServiceAfter: DeregisterAfter.String(),
	}
	if passing {
		check.Status = api.HealthPassing
	}
	if s.Check.HTTP != "" {
		check.HTTP = "http://" + target + s.Check.HTTP
	} else {
		check.TCP = target
	}
	reg := &api.AgentServiceRegistration{
		ID:      s.ID,
		Name:    s.Service,
		Tags:    []string{catalog.Tag, catalog.ReleaseTag(s.Release), catalog.TrackTag(s.Track)},
		Address: address,
		Port:    inst.HostPort,
		Meta: map[string]string{
			catalog.MetaRelease:    strconv.FormatUint(s.Release, 10),
			catalog.MetaTrack:      s.Track,
			catalog.MetaAllocation: s.ID,
			catalog.MetaNode:       r.node,
		},
		Checks: api.AgentServiceChecks{check},
	}
	if s.PortName != "" {
		// Named ports: port_<name> is the host port of each (the routed
		// one is also the service's port).
		for _, p := range s.AllPorts() {
			if hp := s.HostPortOf(inst, p.Name); hp > 0 {
				reg.Meta[catalog.MetaPortPrefix+p.Name] = strconv.Itoa(hp)
			}
		}
	}
	if r.agentRegistered.Load() {
		alias := &api.AgentServiceCheck{
			CheckID:                        AgentCheckID(s.ID),
			Name:                           s.ID + " node agent alive",
			AliasService:                   catalog.AgentServiceID(r.node),
			Notes:                          "critical while the node agent managing the instance fails its own check",
			DeregisterCriticalServiceAfter: DeregisterAfter.String(),
		}
		if passing {
			alias.Status = api.HealthPassing // the agent registering it is alive
		}
		reg.Checks = append(reg.Checks, alias)
	}
	if inst.ImageHealth != "" {
		// The image's own HEALTHCHECK, fed by the agent from Docker events.
		// "starting" is no verdict yet: it follows the agent's own probe.
		st := api.HealthCritical
		if inst.ImageHealth == allocation.ImageHealthy || inst.ImageHealth == allocation.ImageStarting && passing {
			st = api.HealthPassing
		}
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID:                        ImageCheckID(s.ID),
			Name:                           s.ID + " image HEALTHCHECK",
			TTL:                            ImageCheckTTL.String(),
			Status:                         st,
			Notes:                          "the image's own health check, as Docker reports it",
			DeregisterCriticalServiceAfter: DeregisterAfter.String(),
		})
	}
	if err := r.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: register %s: %w", s.ID, explain(err))
	}
	return nil
}

// ImageCheckTTL is the TTL of the check carrying an image HEALTHCHECK
// verdict; the agent refreshes it well within.
var ImageCheckTTL = time.Minute

// ImageCheckID is the Consul check id of an instance's image HEALTHCHECK.
func ImageCheckID(allocID string) string { return allocID + ":image" }

// SetImageHealth records an image HEALTHCHECK verdict on the instance's TTL
// check: unhealthy is critical, healthy and starting are passing.
func (r *Registry) SetImageHealth(ctx context.Context, allocID, verdict string) error {
	st := api.HealthPassing
	if verdict == allocation.ImageUnhealthy {
		st = api.HealthCritical
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().UpdateTTLOpts(ImageCheckID(allocID), "docker health: "+verdict, st, q); err != nil {
		return fmt.Errorf("consul: update image check of %s: %w", allocID, explain(err))
	}
	return nil
}

// Deregister removes an instance's registration; a missing one is fine.
func (r *Registry) Deregister(ctx context.Context, allocID string) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	err := r.client.Agent().ServiceDeregisterOpts(allocID, q)
	var se api.StatusError
	if errors.As(err, &se) && se.Code == 404 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consul: deregister %s: %w", allocID, explain(err))
	}
	return nil
}

// Owned returns the ids of the instances this node registered in the local
// agent, and whether the agent's own registration is present.
func (r *Registry) Owned(ctx context.Context) (map[string]bool, bool, error) {
	svcs, err := r.client.Agent().ServicesWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, false, fmt.Errorf("consul: list services: %w", explain(err))
	}
	out := map[string]bool{}
	self := false
	for id, s := range svcs {
		if id == catalog.AgentServiceID(r.node) {
			self = true
			continue
		}
		if s.Meta[catalog.MetaNode] == r.node && slices.Contains(s.Tags, catalog.Tag) {
			out[id] = true
		}
	}
	return out, self, nil
}

// Checks returns the aggregated check status of each instance registered
// in the local agent, by service id.
func (r *Registry) Checks(ctx context.Context) (map[string]Health, error) {
	cs, err := r.client.Agent().ChecksWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: list checks: %w", explain(err))
	}
	rank := map[Health]int{Passing: 0, Warning: 1, Critical: 2}
	out := map[string]Health{}
	for _, c := range cs {
		if c.ServiceID == "" {
			continue
		}
		h := Health(c.Status)
		if cur, ok := out[c.ServiceID]; !ok || rank[h] > rank[cur] {
			out[c.ServiceID] = h
		}
	}
	return out, nil
}

// WaitRoutes is the route barrier: it returns once no live edge
// acknowledgement (a session-bound key under catalog.EdgesPrefix) lists the
// instance among the service's routed instances. With no live edges at all
// it waits window instead. After timeout it gives up with
// ErrBarrierTimeout.
func (r *Registry) WaitRoutes(ctx context.Context, service, allocID string, timeout, window time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var index uint64
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: timeout}).WithContext(ctx)
		kvs, meta, err := r.client.KV().List(catalog.EdgesPrefix, q)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("consul: route barrier for %s after %s: %w", allocID, timeout, ErrBarrierTimeout)
			}
			r.logger.Warn("route barrier query failed; retrying", "alloc", allocID, "err", explain(err))
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		live, routed := 0, false
		for _, kv := range kvs {
			if kv.Session == "" {
				continue // its edge is gone
			}
			live++
			var ack edgev1.EdgeAck
			if err := protojson.Unmarshal(kv.Value, &ack); err != nil {
				r.logger.Warn("undecodable edge ack", "key", kv.Key, "err", err)
				continue
			}
			if slices.Contains(ack.GetInstances()[service].GetIds(), allocID) {
				routed = true
			}
		}
		if live == 0 {
			t := time.NewTimer(window)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return nil // the window is the bound when no edge exists
			}
		}
		if !routed {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("consul: route barrier for %s after %s: %w", allocID, timeout, ErrBarrierTimeout)
		}
		index = meta.LastIndex
	}
}
