package main_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/nodestream"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
)

// openHeartbeat opens a heartbeat stream to addr as creds, sends first and
// returns the first answer (or the error the stream ended with).
func openHeartbeat(t *testing.T, addr string, creds *rpc.Creds, first *clusterv1.HeartbeatRequest) (*clusterv1.HeartbeatResponse, error) {
	t.Helper()
	conn, err := rpc.Dial(addr, creds, rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := clusterv1.NewNodeHeartbeatServiceClient(conn).Heartbeat(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(first); err != nil {
		_, rerr := st.Recv()
		return nil, rerr
	}
	return st.Recv()
}

// TestHeartbeatStreams runs three coordinator processes with the engine on
// (real Consul, mutual TLS, -node-ttl 4s) and node agents' heartbeat
// streams against them.
func TestHeartbeatStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul and three coordinator processes")
	}
	consul := testenv.StartConsul(t)
	args := append([]string{"-engine=true", "-node-ttl", "4s"}, testenv.ConsulFlagsFor(t, consul.Addr(), "coordinator")...)
	c := startCluster(t, 3, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	leaderAddr := c.Procs[leader].GRPCAddr
	nodeA := c.PKI.Creds(t, pki.RoleNodeAgent, "node-a")
	// The leader takes streams once its engine runs.
	testenv.Eventually(t, 30*time.Second, "the leader accepts node-a's stream", func() error {
		resp, err := openHeartbeat(t, leaderAddr, nodeA, &clusterv1.HeartbeatRequest{NodeId: "node-a", StatusesIncluded: true})
		if err != nil {
			return err
		}
		if resp.GetInterval().AsDuration() != time.Second || resp.GetTtl().AsDuration() != 4*time.Second || resp.GetLeaderId() != c.Procs[leader].ID {
			t.Fatalf("answer = %v, want leader %s, interval 1s (a quarter of -node-ttl 4s) and ttl 4s", resp, c.Procs[leader].ID)
		}
		return nil
	})

	// TestHeartbeatFollowerRedirect: a follower refuses the stream with
	// FAILED_PRECONDITION naming the leader's address, and an agent given
	// only the follower's address ends up streaming to the leader.
	t.Run("FollowerRedirect", func(t *testing.T) {
		testenv.Eventually(t, 20*time.Second, "the follower names the leader", func() error {
			_, err := openHeartbeat(t, c.Procs[follower].GRPCAddr, nodeA, &clusterv1.HeartbeatRequest{NodeId: "node-a"})
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("a follower answered %v, want FailedPrecondition", err)
			}
			reason, md := rpc.Reason(err)
			if reason != rpc.ReasonNotLeader {
				t.Fatalf("reason = %q (%v), want %s", reason, err, rpc.ReasonNotLeader)
			}
			if md[rpc.MetaLeaderAddress] != leaderAddr {
				return status.Errorf(codes.Unknown, "leader_address = %q, want %q (%v)", md[rpc.MetaLeaderAddress], leaderAddr, err)
			}
			return nil
		})
		st, err := nodestream.New(nodestream.Config{Coordinators: []string{c.Procs[follower].GRPCAddr}, Creds: nodeA, NodeID: "node-a",
			Statuses: func() (uint64, []*agentv1.AllocationStatus) { return 1, nil }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		sctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { st.Run(sctx); close(done) }()
		t.Cleanup(func() { stop(); <-done })
		testenv.Eventually(t, 20*time.Second, "the agent streams to the leader", func() error {
			if got := st.Leader(); got != leaderAddr {
				return status.Errorf(codes.Unknown, "streaming to %q, want the leader %q", got, leaderAddr)
			}
			return nil
		})
		// The agent asks how long no leader held its stream (0 while one
		// does), with the TTL the leader announced.
		if down, ttl := st.Lapse(time.Now()); down != 0 || ttl <= 0 {
			t.Errorf("Lapse while streaming = %s, %s; want 0 and the leader's TTL", down, ttl)
		}
		stop()
		<-done
		if down, ttl := st.Lapse(time.Now().Add(time.Second)); down < time.Second || ttl <= 0 {
			t.Errorf("Lapse a second after the stream ended = %s, %s; want at least 1s and the TTL", down, ttl)
		}
	})

	// TestHeartbeatWrongIdentity: the node is the certificate's: a
	// nodeagent certificate for node-a claiming node-b is refused, and so
	// are certificates of other roles.
	t.Run("WrongIdentity", func(t *testing.T) {
		_, err := openHeartbeat(t, leaderAddr, nodeA, &clusterv1.HeartbeatRequest{NodeId: "node-b", StatusesIncluded: true})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("node-a claiming node-b: %v, want PermissionDenied", err)
		}
		for _, role := range []pki.Role{pki.RoleClient, pki.RoleCoordinator, pki.RoleEdge} {
			_, err := openHeartbeat(t, leaderAddr, c.PKI.Creds(t, role, "node-b"), &clusterv1.HeartbeatRequest{NodeId: "node-b"})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("a %s certificate: %v, want PermissionDenied", role, err)
			}
		}
	})
}
