package grpcapi

import (
	"context"
	"testing"
	"time"

	"slipway.dev/edge/routetable"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

func table(ids ...string) routetable.Table {
	var ups []routetable.Upstream
	for _, id := range ids {
		ups = append(ups, routetable.Upstream{ID: id, Address: "127.0.0.1:1"})
	}
	return routetable.Table{Routes: map[string]routetable.Route{
		"web": {Service: "web", Host: "web", Path: "/", Generation: uint64(len(ids)), Backends: []routetable.Backend{{Release: 1, Weight: 100, Upstreams: ups}}},
	}}
}

func TestGetAndWatchRoutes(t *testing.T) {
	s := New()
	t1 := table("a")
	s.Applied(1, t1, routetable.Compare(routetable.Table{}, t1))
	srv := rpc.NewServer(rpc.ServerConfig{Name: "edge-test", Creds: testenv.Creds(t, pki.RoleEdge, "edge-test"), Access: Access})
	s.Register(srv)
	lis, err := rpc.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	conn, err := rpc.Dial(lis.Addr().String(), testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleEdge))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := edgev1.NewRouteServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got, err := c.GetRoutes(ctx, &edgev1.GetRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetGeneration() != 1 || len(got.GetRoutes()) != 1 || got.GetRoutes()[0].GetBackends()[0].GetUpstreams()[0].GetId() != "a" {
		t.Fatalf("GetRoutes = %v", got)
	}
	stream, err := c.WatchRoutes(ctx, &edgev1.WatchRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := stream.Recv()
	if err != nil || !snap.GetSnapshot() || snap.GetGeneration() != 1 || len(snap.GetUpserted()) != 1 {
		t.Fatalf("snapshot = %v, %v", snap, err)
	}
	t2 := table("a", "b")
	s.Applied(2, t2, routetable.Compare(t1, t2))
	s.Applied(3, routetable.Table{}, routetable.Compare(t2, routetable.Table{}))
	d, err := stream.Recv()
	if err != nil || d.GetSnapshot() || d.GetGeneration() != 2 || len(d.GetUpserted()[0].GetBackends()[0].GetUpstreams()) != 2 {
		t.Fatalf("diff 2 = %v, %v", d, err)
	}
	d, err = stream.Recv()
	if err != nil || d.GetGeneration() != 3 || len(d.GetRemoved()) != 1 || d.GetRemoved()[0] != "web" {
		t.Fatalf("diff 3 = %v, %v", d, err)
	}
}
