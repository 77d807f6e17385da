package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"slipway.dev/coordinator/signals"
	"slipway.dev/platform/latency"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// An edge's report sent to a follower, over mutual TLS with the edge's
// certificate and no token, is merged on the leader; a client certificate
// is refused, and a bad report is refused naming the field.
func TestReportSignalsThroughFollower(t *testing.T) {
	nodes := startACLCluster(t, 3)
	stores := map[string]*signals.Store{}
	for _, n := range nodes {
		stores[n.id] = signals.New(0)
		n.api.SetSignals(stores[n.id])
	}
	leader, follower := leaderOf(t, nodes)
	dial := func(role pki.Role) edgev1.SignalServiceClient {
		conn, err := rpc.Dial(follower.addr, testenv.Creds(t, role, "edge-1"), rpc.ExpectRole(pki.RoleCoordinator))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return edgev1.NewSignalServiceClient(conn)
	}
	var h latency.Histogram
	h.AddN(latency.Index(20*time.Millisecond), 40)
	off, counts := h.Encode()
	req := &edgev1.ReportSignalsRequest{EdgeId: "edge-1", Signals: []*edgev1.ReleaseSignals{{Service: "web", Release: 2, Requests: 40, Errors: 2,
		Latency: &edgev1.LatencyHistogram{Schema: latency.Schema, Offset: off, Counts: counts}}}}
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	resp, err := dial(pki.RoleEdge).ReportSignals(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetLeader() != leader.id {
		t.Errorf("merged by %q, want the leader %s", resp.GetLeader(), leader.id)
	}
	w := stores[leader.id].Window("web", 2, before, time.Now().Add(time.Second))
	if w.Requests != 40 || w.Errors != 2 || w.Latency.Total() != 40 {
		t.Errorf("leader's window: %d requests %d errors %d latencies, want 40, 2, 40", w.Requests, w.Errors, w.Latency.Total())
	}
	if w := stores[follower.id].Window("web", 2, before, time.Now().Add(time.Second)); w.Requests != 0 {
		t.Errorf("the follower kept %d requests; only the leader merges", w.Requests)
	}

	_, err = dial(pki.RoleClient).ReportSignals(ctx, req)
	wantDenied(t, err, codes.PermissionDenied, "role client")

	bad := &edgev1.ReportSignalsRequest{EdgeId: "edge-1", Signals: []*edgev1.ReleaseSignals{{Service: "web", Release: 2, Requests: 1, Errors: 5}}}
	_, err = dial(pki.RoleEdge).ReportSignals(ctx, bad)
	wantDenied(t, err, codes.InvalidArgument, "signals[0].errors")
	if vs := rpc.Violations(err); len(vs) != 1 || vs[0].Field != "signals[0].errors" {
		t.Errorf("violations %v, want one naming signals[0].errors", vs)
	}
}
