package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"slipway.dev/nodeagent/internal/nodetest"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// TestAgentObeysOnlyCoordinators runs a real agent on mutual TLS and sends it
// a desired set, with a fencing token far above anything a leader issued,
// from every peer that is not a coordinator of its CA: plaintext, an edge, a
// client, another node agent, and a coordinator of another CA. Each is
// refused and the agent's newest token and allocations stay as they were;
// then a real coordinator certificate is obeyed.
func TestAgentObeysOnlyCoordinators(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real agent process and Consul; skipped by -short")
	}
	t.Parallel()
	bin := testenv.BuildBinary(t, "./services/nodeagent/cmd/slipway-nodeagent")
	c := testenv.StartConsul(t)
	node := nodetest.NodeID(t)
	dataDir := t.TempDir()
	grpcAddr := testenv.FreeAddr(t)
	nodetest.CleanupProcesses(t, filepath.Join(dataDir, "process"))
	p := &agentProc{t: t, bin: bin, log: filepath.Join(t.TempDir(), "agent.log"), args: append([]string{
		"-node-id", node, "-grpc-addr", grpcAddr, "-consul-addr", c.Addr(), "-driver", "process",
		"-process-dir", nodetest.ImagesDir(t), "-data-dir", dataDir, "-drain-window", "0s",
	}, testenv.TLSFlags(t, pki.RoleNodeAgent, node)...)}
	t.Cleanup(p.kill)
	p.start()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: node}
	leader, err := rpc.Dial(grpcAddr, testenv.Creds(t, pki.RoleCoordinator, "leader"), want)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	lc := agentv1.NewNodeAgentServiceClient(leader)
	if _, err := lc.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("coordinator reading the agent: %v", err)
	}
	evil := &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 1 << 40, Index: 1}, Allocations: []*agentv1.Allocation{{
		Id: "evil-1", NodeId: node, Service: "evil", Release: 1, Image: "slipway/demo:v1", Port: 8080, Env: map[string]string{"LD_PRELOAD": "/tmp/x.so"}}}}

	plain, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := agentv1.NewNodeAgentServiceClient(plain).SyncAllocations(ctx, evil); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext SyncAllocations: got %v, want Unavailable", err)
	}
	for _, role := range []pki.Role{pki.RoleEdge, pki.RoleClient, pki.RoleNodeAgent} {
		conn, err := rpc.Dial(grpcAddr, testenv.Creds(t, role, "intruder"), want)
		if err != nil {
			t.Fatal(err)
		}
		_, err = agentv1.NewNodeAgentServiceClient(conn).SyncAllocations(ctx, evil)
		conn.Close()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "role "+string(role)) {
			t.Errorf("%s certificate calling SyncAllocations: got %v, want PermissionDenied naming its role", role, err)
		}
	}
	foreign, err := rpc.Dial(grpcAddr, testenv.NewPKI(t).Creds(t, pki.RoleCoordinator, "leader"), rpc.Expect{})
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	if _, err := agentv1.NewNodeAgentServiceClient(foreign).SyncAllocations(ctx, evil); err == nil {
		t.Error("a coordinator certificate from another CA was obeyed")
	}

	st, err := lc.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetAllocations()) != 0 || st.GetToken().GetTerm() != 0 {
		t.Fatalf("after the refused calls the agent holds %v with token %v; want nothing and no token", st.GetAllocations(), st.GetToken())
	}
	// The real leader's (empty) desired set under a normal token is obeyed.
	if _, err := lc.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 2, Index: 5}}); err != nil {
		t.Fatalf("coordinator SyncAllocations: %v", err)
	}
}
