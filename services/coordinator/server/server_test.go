package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{ID: "a", DataDir: "/tmp/x", Creds: rpc.InsecureCreds()}
	if err := ok.validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	bad := Config{Bootstrap: true, BootstrapExpect: 3, KeepEventRollouts: -1, KeepAudit: -2}
	err := bad.validate()
	for _, field := range []string{"id:", "data-dir:", "bootstrap:", "join:", "keep-events-rollouts:", "keep-audit:", "creds:"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("validate(%+v) = %v, want it to name %s", bad, err, field)
		}
	}
}

func TestAdvertised(t *testing.T) {
	for _, tc := range []struct{ bound, adv, want string }{
		{"[::]:7400", "", "127.0.0.1:7400"},
		{"0.0.0.0:7401", "", "127.0.0.1:7401"},
		{":7401", "", "127.0.0.1:7401"},
		{"10.1.2.3:7400", "", "10.1.2.3:7400"},
		{"0.0.0.0:7400", "coord-1.internal", "coord-1.internal:7400"},
	} {
		got, err := advertised(tc.bound, tc.adv)
		if err != nil || got != tc.want {
			t.Errorf("advertised(%q, %q) = %q, %v; want %q", tc.bound, tc.adv, got, err, tc.want)
		}
	}
	if _, err := advertised("nonsense", ""); err == nil {
		t.Error("advertised(nonsense) did not fail")
	}
}

type running struct {
	cfg  Config
	conn *grpc.ClientConn
	done chan error
	stop context.CancelFunc
}

func start(t *testing.T, id string, mut func(*Config)) *running {
	t.Helper()
	cfg := Config{
		ID: id, DataDir: filepath.Join(t.TempDir(), id), GRPCAddr: testenv.FreeAddr(t), RaftAddr: testenv.FreeAddr(t),
		Logger: slog.New(slog.DiscardHandler), LogOutput: io.Discard, Creds: testenv.Creds(t, pki.RoleCoordinator, id),
		DisableACL: true, // formation is tested here; tokens in grpcapi and cmd/slipway-coordinator
	}
	if mut != nil {
		mut(&cfg)
	}
	return startConfig(t, cfg)
}

// startConfig runs a coordinator with cfg (a restart when cfg.DataDir holds
// state) until the test ends.
func startConfig(t *testing.T, cfg Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cfg: cfg, done: make(chan error, 1), stop: cancel}
	go func() { r.done <- Run(ctx, cfg) }()
	conn, err := rpc.Dial(cfg.GRPCAddr, testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		t.Fatal(err)
	}
	r.conn = conn
	t.Cleanup(func() {
		r.stop()
		<-r.done
		conn.Close()
	})
	return r
}

// waitHealth polls the health service until the deploy service reports want.
func waitHealth(t *testing.T, r *running, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, r.cfg.ID+": deploy service health "+want.String(), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(r.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: deployServiceName})
		if err != nil {
			return err
		}
		if resp.GetStatus() != want {
			return fmt.Errorf("health is %s", resp.GetStatus())
		}
		return nil
	})
}

// TestFormationAndHealth starts coordinators in-process on real TCP raft:
// one without bootstrap or join (not serving until added), one bootstrapped
// alone, then AddPeer and -join grow it to three.
func TestFormationAndHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft over TCP")
	}
	idle := start(t, "idle", nil)
	waitHealth(t, idle, healthpb.HealthCheckResponse_NOT_SERVING)

	boot := start(t, "boot", func(c *Config) { c.Bootstrap = true })
	waitHealth(t, boot, healthpb.HealthCheckResponse_SERVING)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := clusterv1.NewClusterServiceClient(boot.conn).AddPeer(ctx, &clusterv1.AddPeerRequest{Id: "idle", RaftAddress: idle.cfg.RaftAddr}); err != nil {
		t.Fatalf("add peer: %v", err)
	}
	waitHealth(t, idle, healthpb.HealthCheckResponse_SERVING)

	// A third node joins through the (follower) idle node.
	joiner := start(t, "joiner", func(c *Config) { c.Join = []string{idle.cfg.GRPCAddr} })
	waitHealth(t, joiner, healthpb.HealthCheckResponse_SERVING)
	peers, err := clusterv1.NewClusterServiceClient(boot.conn).ListPeers(ctx, &clusterv1.ListPeersRequest{})
	if err != nil || len(peers.GetPeers()) != 3 {
		t.Fatalf("peers = %v, %v; want 3", peers, err)
	}
	gl, err := clusterv1.NewClusterServiceClient(joiner.conn).GetLeader(ctx, &clusterv1.GetLeaderRequest{})
	if err != nil || gl.GetLeaderId() != "boot" || gl.GetGrpcAddress() != boot.cfg.GRPCAddr {
		t.Errorf("leader seen by joiner = %v, %v", gl, err)
	}
	// A write through the joiner is forwarded and committed.
	if _, err := deployv1.NewDeployServiceClient(joiner.conn).Deploy(ctx, &deployv1.DeployRequest{
		Spec: &deployv1.ServiceSpec{Name: "web", Image: "slipway/demo:v1", Count: 1, Port: 8080}, RequestId: "j1",
	}); err != nil {
		t.Fatalf("deploy through joiner: %v", err)
	}

	// Graceful stop of the leader hands leadership over and Run returns nil.
	boot.stop()
	if err := <-boot.done; err != nil {
		t.Errorf("Run returned %v on shutdown", err)
	}
	boot.done <- nil // for the cleanup
	testenv.Eventually(t, 20*time.Second, "a new leader after the leader stopped", func() error {
		gl, err := clusterv1.NewClusterServiceClient(idle.conn).GetLeader(ctx, &clusterv1.GetLeaderRequest{})
		if err != nil {
			return err
		}
		if gl.GetLeaderId() == "" || gl.GetLeaderId() == "boot" {
			return fmt.Errorf("idle sees leader %q", gl.GetLeaderId())
		}
		return nil
	})
}

// stopNow stops r and waits for Run to return.
func (r *running) stopNow(t *testing.T) {
	t.Helper()
	r.stop()
	if err := <-r.done; err != nil {
		t.Errorf("%s: Run returned %v on shutdown", r.cfg.ID, err)
	}
	r.done <- nil // for the cleanup
}

// TestRestartedNodeReadsWaitForLogReplay restarts a coordinator whose state
// lives only in its raft log while the rest of its cluster is down: it
// cannot replay the log until a leader is elected, so a local read must not
// answer NOT_FOUND (or an empty list) for things that exist. It answers
// UNAVAILABLE at the request's deadline, its DeployService health stays
// NOT_SERVING, and once the cluster is back the same read waits for the
// replay and finds the service.
func TestRestartedNodeReadsWaitForLogReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft over TCP")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := start(t, "a", func(c *Config) { c.Bootstrap = true })
	waitHealth(t, a, healthpb.HealthCheckResponse_SERVING)
	b := start(t, "b", nil)
	if _, err := clusterv1.NewClusterServiceClient(a.conn).AddPeer(ctx, &clusterv1.AddPeerRequest{Id: "b", RaftAddress: b.cfg.RaftAddr}); err != nil {
		t.Fatalf("add peer: %v", err)
	}
	waitHealth(t, b, healthpb.HealthCheckResponse_SERVING)
	if _, err := deployv1.NewDeployServiceClient(a.conn).Deploy(ctx, &deployv1.DeployRequest{
		Spec: &deployv1.ServiceSpec{Name: "web", Image: "slipway/demo:v1", Count: 1, Port: 8080}, RequestId: "restart-1",
	}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	b.stopNow(t)
	a.stopNow(t)

	// a alone: no leader, so nothing of its log is applied.
	a2 := startConfig(t, a.cfg)
	d := deployv1.NewDeployServiceClient(a2.conn)
	rctx, rcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	_, err := d.GetService(rctx, &deployv1.GetServiceRequest{Name: "web"}, grpc.WaitForReady(true))
	rcancel()
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "replaying") {
		t.Fatalf("get service before the log replay: %v, want UNAVAILABLE (still replaying)", err)
	}
	rctx, rcancel = context.WithTimeout(ctx, time.Second)
	ls, err := d.ListServices(rctx, &deployv1.ListServicesRequest{})
	rcancel()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("list services before the log replay = %v, %v; want UNAVAILABLE", ls, err)
	}
	waitHealth(t, a2, healthpb.HealthCheckResponse_NOT_SERVING)

	// b back: a leader is elected, a replays its log; a read issued now
	// waits for that instead of failing.
	startConfig(t, b.cfg)
	rctx, rcancel = context.WithTimeout(ctx, 20*time.Second)
	svc, err := d.GetService(rctx, &deployv1.GetServiceRequest{Name: "web"})
	rcancel()
	if err != nil || svc.GetService().GetLatestRelease() != 1 {
		t.Fatalf("get service after the cluster came back = %v, %v", svc, err)
	}
	waitHealth(t, a2, healthpb.HealthCheckResponse_SERVING)
}
