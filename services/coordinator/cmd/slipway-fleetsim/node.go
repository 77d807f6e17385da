package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/nodestream"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// behaviour is how a simulated node misbehaves.
type behaviour int

const (
	healthy  behaviour = iota
	slow               // answers every call after slowDelay
	flapping           // its heartbeats (Consul check critical, stream silent) stop for flapFor every flapEvery
	stuck              // answers its first status read (the leader's proof of its identity, so that it is recorded), then nothing (calls hang until the caller gives up); keeps heartbeating and streaming
)

func (b behaviour) String() string {
	return [...]string{"healthy", "slow", "flapping", "stuck"}[b]
}

// nodeConfig is what every simulated node shares.
type nodeConfig struct {
	consul     *api.Client
	logger     *slog.Logger
	allocStart time.Duration // from a sync to the allocation running and passing
	slowDelay  time.Duration
	flapEvery  time.Duration
	flapFor    time.Duration
	ttl        time.Duration // the agent check's TTL (the real agent's is 3s)
	cpuMHz     int
	memoryMB   int
	nodeCounts
	// coordinators are the coordinators' gRPC addresses the nodes stream
	// heartbeats to (NodeHeartbeatService); empty: no stream (the leader
	// polls them and goes by Consul, as with older agents).
	coordinators []string
}

// nodeCounts are what the nodes of a rack answered, shared by them.
type nodeCounts struct {
	// started counts allocations that turned running, over all nodes: a
	// replacement the fleet did not need shows up as starts above the
	// instances deployed.
	started  *atomic.Int64
	syncs    *atomic.Int64 // SyncAllocations calls answered
	statuses *atomic.Int64 // GetNodeStatus calls answered
	// ttlErrors counts TTL updates Consul failed or did not answer in
	// time: each one brings the node's check closer to lapsing.
	ttlErrors *atomic.Int64
}

// simAlloc is one allocation as the simulated agent holds it.
type simAlloc struct {
	spec    *agentv1.Allocation
	syncAt  time.Time
	running bool
	stopped bool
}

// node is one simulated node agent: a real NodeAgentService gRPC server
// with mutual TLS and its own certificate naming its node id, registered
// in Consul as catalog.AgentService with a TTL check it heartbeats.
type node struct {
	agentv1.UnimplementedNodeAgentServiceServer
	id   string
	kind behaviour
	cfg  *nodeConfig
	addr string
	srv  *rpc.Server

	born    time.Time
	changed chan struct{} // a status changed (the stream sends it at once)
	proved  atomic.Bool   // a stuck node answered its first status read

	mu       sync.Mutex
	token    *agentv1.FencingToken
	allocs   map[string]*simAlloc
	watchers map[chan *agentv1.AllocationStatus]struct{}
	version  uint64 // grows with every status change
}

// Interface guard.
var _ agentv1.NodeAgentServiceServer = (*node)(nil)

// startNode serves node id on a free loopback port with creds and
// registers it in Consul.
func startNode(ctx context.Context, id string, kind behaviour, cfg *nodeConfig, creds *rpc.Creds) (*node, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	n := &node{id: id, kind: kind, cfg: cfg, addr: lis.Addr().String(), allocs: map[string]*simAlloc{},
		watchers: map[chan *agentv1.AllocationStatus]struct{}{}, born: time.Now(), changed: make(chan struct{}, 1)}
	n.srv = rpc.NewServer(rpc.ServerConfig{Name: "fleetsim", Logger: cfg.logger, Creds: creds,
		Access: map[string][]pki.Role{agentv1.NodeAgentService_ServiceDesc.ServiceName: {pki.RoleCoordinator}}})
	agentv1.RegisterNodeAgentServiceServer(n.srv, n)
	n.srv.SetServing("", true)
	n.srv.SetServing(agentv1.NodeAgentService_ServiceDesc.ServiceName, true)
	go func() { _ = n.srv.Serve(lis) }()
	if err := n.register(ctx); err != nil {
		n.srv.Stop()
		return nil, err
	}
	go n.heartbeat(ctx)
	if len(cfg.coordinators) > 0 {
		st, err := nodestream.New(nodestream.Config{Coordinators: cfg.coordinators, Creds: creds, NodeID: id,
			Statuses: n.streamStatuses, Changed: n.changed, Silent: n.flapped, Logger: cfg.logger})
		if err != nil {
			n.srv.Stop()
			return nil, err
		}
		go st.Run(ctx)
	}
	return n, nil
}

// flapped says whether a flapping node is in one of its flaps now: for
// flapFor at the end of every flapEvery since it started.
func (n *node) flapped() bool {
	if n.kind != flapping || n.cfg.flapEvery <= 0 {
		return false
	}
	return time.Since(n.born)%n.cfg.flapEvery >= n.cfg.flapEvery-n.cfg.flapFor
}

// streamStatuses are what the heartbeat stream sends.
func (n *node) streamStatuses() (uint64, []*agentv1.AllocationStatus) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.version, n.statusesLocked()
}

// register registers the agent as a real agent does (same service name,
// id, meta and TTL check).
func (n *node) register(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(n.addr)
	p, _ := strconv.Atoi(port)
	reg := &api.AgentServiceRegistration{
		ID: catalog.AgentServiceID(n.id), Name: catalog.AgentService, Address: "127.0.0.1", Port: p,
		Meta: map[string]string{
			catalog.MetaNodeID: n.id, catalog.MetaCPU: strconv.Itoa(n.cfg.cpuMHz), catalog.MetaMemory: strconv.Itoa(n.cfg.memoryMB),
			catalog.MetaDriver: "docker", catalog.MetaLabelPrefix + "sim": n.kind.String(),
		},
		Check: &api.AgentServiceCheck{Name: "node agent heartbeat", TTL: n.cfg.ttl.String(), Status: api.HealthPassing,
			DeregisterCriticalServiceAfter: "10m"},
	}
	if err := n.cfg.consul.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("register %s in consul: %w", n.id, err)
	}
	return nil
}

// heartbeat passes the TTL check every ttl/3, as the real agent does
// (at a random phase: a fleet's agents do not heartbeat in step); a
// flapping node reports it critical during its flaps.
func (n *node) heartbeat(ctx context.Context) {
	check := "service:" + catalog.AgentServiceID(n.id)
	every := n.cfg.ttl / 3
	select {
	case <-ctx.Done():
		return
	case <-time.After(spreadOffset(every)):
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, note := api.HealthPassing, "node agent alive"
		if n.flapped() {
			st, note = api.HealthCritical, "simulated flap"
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := n.cfg.consul.Agent().UpdateTTLOpts(check, note, st, (&api.QueryOptions{}).WithContext(c)); err != nil {
			n.cfg.ttlErrors.Add(1)
		}
		cancel()
	}
}

// misbehave applies the node's behaviour to one call.
func (n *node) misbehave(ctx context.Context) error {
	switch n.kind {
	case stuck:
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	case slow:
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-time.After(n.cfg.slowDelay):
		}
	}
	return nil
}

// SyncAllocations converges to the desired set: new allocations start and
// pass after allocStart, stopped ones stop, absent ones are removed.
func (n *node) SyncAllocations(ctx context.Context, req *agentv1.SyncAllocationsRequest) (*agentv1.SyncAllocationsResponse, error) {
	if err := n.misbehave(ctx); err != nil {
		return nil, err
	}
	if req.GetNodeId() != n.id {
		return nil, status.Errorf(codes.InvalidArgument, "node_id: %q is not this node (%s)", req.GetNodeId(), n.id)
	}
	tok := req.GetToken()
	if tok == nil {
		return nil, status.Error(codes.InvalidArgument, "token: a fencing token is required")
	}
	n.mu.Lock()
	if n.token != nil && (tok.GetTerm() < n.token.GetTerm() || tok.GetTerm() == n.token.GetTerm() && tok.GetIndex() < n.token.GetIndex()) {
		n.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "stale fencing token %v, holding %v", tok, n.token)
	}
	n.token = proto.CloneOf(tok)
	now := time.Now()
	want := map[string]bool{}
	var starting []string
	var changed []*agentv1.AllocationStatus
	for _, a := range req.GetAllocations() {
		want[a.GetId()] = true
		stop := a.GetDesiredState() == agentv1.DesiredState_DESIRED_STATE_STOPPED
		cur := n.allocs[a.GetId()]
		switch {
		case cur == nil && stop:
			n.allocs[a.GetId()] = &simAlloc{spec: a, syncAt: now, stopped: true}
		case cur == nil:
			n.allocs[a.GetId()] = &simAlloc{spec: a, syncAt: now}
			starting = append(starting, a.GetId())
			changed = append(changed, n.statusLocked(n.allocs[a.GetId()]))
		case stop && !cur.stopped:
			cur.stopped = true
			changed = append(changed, n.statusLocked(cur))
		}
	}
	for id := range n.allocs {
		if !want[id] {
			delete(n.allocs, id)
			n.version++ // no longer reported
		}
	}
	out := n.statusesLocked()
	n.mu.Unlock()
	n.publish(changed)
	if len(starting) > 0 {
		time.AfterFunc(n.cfg.allocStart, func() { n.run(starting) })
	}
	n.cfg.syncs.Add(1)
	return &agentv1.SyncAllocationsResponse{Allocations: out}, nil
}

// run marks allocations running and passing.
func (n *node) run(ids []string) {
	var changed []*agentv1.AllocationStatus
	n.mu.Lock()
	for _, id := range ids {
		if a := n.allocs[id]; a != nil && !a.stopped && !a.running {
			a.running = true
			n.cfg.started.Add(1)
			changed = append(changed, n.statusLocked(a))
		}
	}
	n.mu.Unlock()
	n.publish(changed)
}

func (n *node) statusLocked(a *simAlloc) *agentv1.AllocationStatus {
	s := a.spec
	st := &agentv1.AllocationStatus{AllocationId: s.GetId(), Service: s.GetService(), Release: s.GetRelease(), Track: s.GetTrack(),
		Address: "127.0.0.1", HostPort: 20000 + int32(len(s.GetId())%1000), ContainerId: "sim-" + s.GetId(),
		UpdatedAt: timestamppb.New(a.syncAt)}
	switch {
	case a.stopped:
		st.State = agentv1.AllocationState_ALLOCATION_STATE_STOPPED
	case a.running:
		st.State, st.Health = agentv1.AllocationState_ALLOCATION_STATE_RUNNING, agentv1.Health_HEALTH_PASSING
		st.HealthySince = timestamppb.New(a.syncAt.Add(n.cfg.allocStart))
	default:
		st.State = agentv1.AllocationState_ALLOCATION_STATE_STARTING
	}
	return st
}

func (n *node) statusesLocked() []*agentv1.AllocationStatus {
	out := make([]*agentv1.AllocationStatus, 0, len(n.allocs))
	for _, a := range n.allocs {
		out = append(out, n.statusLocked(a))
	}
	return out
}

func (n *node) publish(sts []*agentv1.AllocationStatus) {
	if len(sts) == 0 {
		return
	}
	select {
	case n.changed <- struct{}{}:
	default:
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.version++
	for ch := range n.watchers {
		for _, s := range sts {
			select {
			case ch <- s:
			default: // a watcher that falls behind is dropped (it reconnects)
				close(ch)
				delete(n.watchers, ch)
			}
		}
	}
}

// GetNodeStatus reports identity, capacity and allocations.
func (n *node) GetNodeStatus(ctx context.Context, _ *agentv1.GetNodeStatusRequest) (*agentv1.GetNodeStatusResponse, error) {
	if n.kind != stuck || !n.proved.CompareAndSwap(false, true) {
		if err := n.misbehave(ctx); err != nil {
			return nil, err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg.statuses.Add(1)
	return &agentv1.GetNodeStatusResponse{NodeId: n.id, CpuMhz: int32(n.cfg.cpuMHz), MemoryMb: int32(n.cfg.memoryMB), Driver: "docker",
		Token: n.token, Address: "127.0.0.1", Allocations: n.statusesLocked()}, nil
}

// WatchAllocations streams every allocation's status, then each change.
func (n *node) WatchAllocations(_ *agentv1.WatchAllocationsRequest, stream agentv1.NodeAgentService_WatchAllocationsServer) error {
	if err := n.misbehave(stream.Context()); err != nil {
		return err
	}
	ch := make(chan *agentv1.AllocationStatus, 1024)
	n.mu.Lock()
	cur := n.statusesLocked()
	n.watchers[ch] = struct{}{}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if _, ok := n.watchers[ch]; ok {
			delete(n.watchers, ch)
		}
		n.mu.Unlock()
	}()
	for _, st := range cur {
		if err := stream.Send(&agentv1.WatchAllocationsResponse{Allocation: st, Message: "current"}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case st, ok := <-ch:
			if !ok {
				return status.Error(codes.ResourceExhausted, "watch fell behind; watch again")
			}
			if err := stream.Send(&agentv1.WatchAllocationsResponse{Allocation: st}); err != nil {
				return err
			}
		}
	}
}

// stop deregisters the node and stops its server.
func (n *node) stop() {
	c, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = n.cfg.consul.Agent().ServiceDeregisterOpts(catalog.AgentServiceID(n.id), (&api.QueryOptions{}).WithContext(c))
	n.srv.Stop()
}
