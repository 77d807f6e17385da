// Package coordtest starts a real coordinator for tests: server.Run
// in-process, one node bootstrapping its own raft cluster, the engine on,
// mutual TLS and ACLs as in production (the management token bootstrapped
// and used by Conn). It can be stopped and started again on the same data
// dir (a new term: a new leader re-acts the committed state). For clusters
// of coordinator processes see package clusterproc.
package coordtest

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"slipway.dev/coordinator/internal/acltest"
	"slipway.dev/coordinator/server"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Coordinator is a coordinator running in the test's process.
type Coordinator struct {
	// Config is what it runs with (GRPCAddr, DataDir, ...).
	Config server.Config
	// Logs is its log, shown (the last 12 KB) when the test fails.
	Logs *testenv.LockedBuffer
	// Conn reaches it as an operator with the management token.
	Conn *grpc.ClientConn
	// Secret is the management token's secret.
	Secret string

	t      testing.TB
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

// Start starts a coordinator that uses the Consul agent at consulAddr with
// the coordinator policy's token, changes its config with configure (when
// not nil), and returns once it serves. Everything stops when the test
// ends.
func Start(t testing.TB, consulAddr string, configure func(*server.Config)) *Coordinator {
	t.Helper()
	c := &Coordinator{t: t, Logs: &testenv.LockedBuffer{}}
	c.Config = server.Config{ID: "c1", DataDir: t.TempDir(), GRPCAddr: testenv.FreeAddr(t), RaftAddr: testenv.FreeAddr(t),
		Bootstrap: true, Engine: true, Consul: testenv.ConsulConfigFor(t, consulAddr, "coordinator"), EnginePoll: 200 * time.Millisecond, NodeGrace: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(c.Logs, &slog.HandlerOptions{Level: slog.LevelInfo})), LogOutput: io.Discard,
		Creds: testenv.Creds(t, pki.RoleCoordinator, "c1")}
	if configure != nil {
		configure(&c.Config)
	}
	c.Start()
	t.Cleanup(func() {
		c.Stop()
		if c.Conn != nil {
			c.Conn.Close()
		}
		if t.Failed() {
			t.Logf("coordinator log:\n%s", testenv.Tail(c.Logs.Bytes(), 12000))
		}
	})
	// ACLs are on, as in production: bootstrap the management token (it
	// survives restarts in raft) and call with it.
	boot, err := rpc.Dial(c.Config.GRPCAddr, testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		t.Fatal(err)
	}
	c.Secret, err = acltest.Bootstrap(context.Background(), boot, 30*time.Second)
	boot.Close()
	if err != nil {
		t.Fatal(err)
	}
	c.Conn, err = rpc.Dial(c.Config.GRPCAddr, testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleCoordinator), rpc.WithToken(c.Secret))
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Deploy()
	testenv.Until(t, 30*time.Second, "coordinator serving", func() string {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		if _, err := cl.ListServices(cctx, &deployv1.ListServicesRequest{}); err != nil {
			return err.Error()
		}
		return ""
	})
	return c
}

// Deploy is a DeployService client on Conn.
func (c *Coordinator) Deploy() deployv1.DeployServiceClient {
	return deployv1.NewDeployServiceClient(c.Conn)
}

// Start runs the coordinator again after Stop, on the same data dir.
func (c *Coordinator) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	go func(d chan error) { d <- server.Run(ctx, c.Config) }(c.done)
}

// Stop stops it and waits until it has; an error it ends with fails the
// test. Stopping a stopped coordinator does nothing.
func (c *Coordinator) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel == nil {
		return
	}
	c.cancel()
	if err := <-c.done; err != nil {
		c.t.Errorf("coordinator: %v", err)
	}
	c.cancel = nil
}
