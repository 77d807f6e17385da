package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// BenchmarkPlaceCommit10k places 10,000 allocations of one new service on
// 1,000 nodes through the engine and commits them through a real 3-node
// raft cluster (raftnode: bolt logs, the TCP transport with mutual TLS on
// loopback), timed from the Deploy's commit to the last allocation
// committed. The peer, in the same run and on the same cluster, is raw
// raft: no-op entries of the same sizes as the engine's entries, applied
// one after the other. The agents answer at once and run nothing, so the
// figure is the coordinator's: decide, placement and raft. Run it with
// -benchtime 1x (scripts/bench-placement.sh does):
//
//	go test -run '^$' -bench PlaceCommit10k -benchtime 1x ./engine
func BenchmarkPlaceCommit10k(b *testing.B) {
	const nodes, count = 1000, 10000
	leader := startRaftCluster(b)
	rec := &recordingRaft{node: leader.node}
	ns := make([]engine.Node, nodes)
	for i := range ns {
		id := fmt.Sprintf("n%04d", i)
		ns[i] = engine.Node{ID: id, Addr: id + ":7410", CPU: 40000, MemoryMB: 65536, Driver: "process"}
	}
	src := &fakeNodes{}
	src.set(ns...)
	eng := engine.New(engine.Config{Raft: rec, FSM: leader.fsm, Nodes: src, Routes: &fakeRoutes{}, Agents: idleAgents{},
		Now: time.Now, NodeGrace: time.Hour, Logger: slog.New(slog.DiscardHandler), SyncWait: time.Minute})
	b.Cleanup(eng.Stop)
	ctx := context.Background()
	if _, err := eng.Pass(ctx); err != nil { // records the nodes
		b.Fatal(err)
	}
	var placed int
	var engineTime, rawTime time.Duration
	for i := range b.N {
		s := webSpec("slipway/demo:v1", count, fast(&deployv1.UpdateStrategy{}))
		s.Name = fmt.Sprintf("bulk%d", i)
		s.Route = &deployv1.Route{Host: s.Name + ".test", Path: "/"}
		s.Resources = &deployv1.Resources{CpuMhz: 10, MemoryMb: 8}
		if _, err := rec.Apply(ctx, &statev1.Command{Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{Spec: s, RequestId: s.Name}}}); err != nil {
			b.Fatal(err)
		}
		rec.reset()
		start := time.Now()
		for pass := 0; allocationsOf(leader.fsm, s.Name) < count; pass++ {
			if pass == 50 {
				b.Fatalf("%d of %d allocations placed after 50 passes", allocationsOf(leader.fsm, s.Name), count)
			}
			if _, err := eng.Pass(ctx); err != nil {
				b.Fatal(err)
			}
		}
		engineTime += time.Since(start)
		placed += count
		// The peer: the same entry sizes as no-ops through the same raft.
		sizes := rec.sizes()
		start = time.Now()
		for _, n := range sizes {
			if _, err := leader.node.Apply(ctx, &statev1.Command{Op: &statev1.Command_Noop{Noop: &statev1.NoopOp{Payload: make([]byte, n)}}}); err != nil {
				b.Fatal(err)
			}
		}
		rawTime += time.Since(start)
		if i == 0 {
			total := 0
			for _, n := range sizes {
				total += n
			}
			b.ReportMetric(float64(len(sizes)), "entries")
			b.ReportMetric(float64(total)/(1<<20), "entry_MiB")
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(placed)/engineTime.Seconds(), "allocs/s")
	b.ReportMetric(float64(placed)/rawTime.Seconds(), "raw_allocs/s")
	b.ReportMetric(engineTime.Seconds()*1000/float64(b.N), "ms_engine")
	b.ReportMetric(rawTime.Seconds()*1000/float64(b.N), "ms_raw")
}

// allocationsOf counts the committed allocations of service.
func allocationsOf(fsm *state.FSM, service string) int {
	n := 0
	for _, sa := range fsm.AllAllocations() {
		if sa.Allocation.GetService() == service {
			n++
		}
	}
	return n
}

// raftMember is one in-process raft node and the state it applies to.
type raftMember struct {
	node *raftnode.Node
	fsm  *state.FSM
}

// startRaftCluster starts three raft nodes on loopback (bolt logs in
// temporary directories, mutual TLS) and returns the leader, the first
// node, once it leads with both followers in the configuration.
func startRaftCluster(b *testing.B) raftMember {
	b.Helper()
	var members []raftMember
	var servers []raftnode.Server
	for _, id := range []string{"a", "b", "c"} {
		fsm := state.New()
		n, err := raftnode.New(raftnode.Config{ID: id, DataDir: b.TempDir(), BindAddr: testenv.FreeAddr(b), LogOutput: io.Discard,
			Creds: testenv.Creds(b, pki.RoleCoordinator, id)}, fsm)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = n.Shutdown() })
		members = append(members, raftMember{node: n, fsm: fsm})
		servers = append(servers, raftnode.Server{ID: id, Address: n.Addr(), Voter: true})
	}
	if err := members[0].node.Bootstrap(servers); err != nil {
		b.Fatal(err)
	}
	testenv.Eventually(b, 20*time.Second, "node a leads a cluster of 3", func() error {
		if !members[0].node.IsLeader() {
			return errors.New("a is not the leader")
		}
		st, err := members[0].node.Status()
		if err != nil {
			return err
		}
		if len(st.Servers) != 3 {
			return fmt.Errorf("%d servers", len(st.Servers))
		}
		return nil
	})
	return members[0]
}

// recordingRaft adapts a raftnode.Node to engine.Raft and records the size
// of every entry it commits.
type recordingRaft struct {
	node *raftnode.Node
	mu   sync.Mutex
	size []int
}

func (r *recordingRaft) Apply(ctx context.Context, cmd *statev1.Command) (any, error) {
	res, err := r.node.Apply(ctx, cmd)
	if errors.Is(err, raftnode.ErrNotLeader) {
		return nil, fmt.Errorf("%w: %w", engine.ErrNotLeader, err)
	}
	if err == nil {
		r.mu.Lock()
		r.size = append(r.size, proto.Size(cmd))
		r.mu.Unlock()
	}
	return res, err
}

func (r *recordingRaft) Term() (uint64, error) {
	st, err := r.node.Status()
	return st.Term, err
}

func (r *recordingRaft) reset() {
	r.mu.Lock()
	r.size = nil
	r.mu.Unlock()
}

func (r *recordingRaft) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.size...)
}

// idleAgents answers every sync and status at once and runs nothing.
type idleAgents struct{}

func (idleAgents) Sync(context.Context, engine.Node, *agentv1.FencingToken, []*agentv1.Allocation) ([]*agentv1.AllocationStatus, error) {
	return nil, nil
}

func (idleAgents) Status(context.Context, engine.Node) ([]*agentv1.AllocationStatus, error) {
	return nil, nil
}
