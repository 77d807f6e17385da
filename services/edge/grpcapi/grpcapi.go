// Package grpcapi serves slipway.edge.v1.RouteService from the routes the
// edge has applied.
package grpcapi

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/edge/controller"
	"slipway.dev/edge/routetable"
	"slipway.dev/platform/pki"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// Server implements RouteService and controller.Observer.
type Server struct {
	edgev1.UnimplementedRouteServiceServer

	mu    sync.Mutex
	gen   uint64
	table routetable.Table
	subs  map[chan *edgev1.WatchRoutesResponse]struct{}
}

// Interface guards.
var (
	_ edgev1.RouteServiceServer = (*Server)(nil)
	_ controller.Observer       = (*Server)(nil)
)

// Access is who may call RouteService, by certificate role: other edges,
// coordinators and clients (operators, other proxies' adapters).
var Access = map[string][]pki.Role{
	edgev1.RouteService_ServiceDesc.ServiceName: {pki.RoleEdge, pki.RoleCoordinator, pki.RoleClient},
}

// New returns a server with an empty table.
func New() *Server {
	return &Server{subs: map[chan *edgev1.WatchRoutesResponse]struct{}{}}
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) { edgev1.RegisterRouteServiceServer(g, s) }

// Applied records a new table and sends its diff to every watcher. A watcher
// too slow to keep up (64 messages behind) is disconnected.
func (s *Server) Applied(gen uint64, t routetable.Table, d routetable.Diff) {
	msg := &edgev1.WatchRoutesResponse{Generation: gen, Removed: d.Removed}
	for _, r := range d.Upserted {
		msg.Upserted = append(msg.Upserted, Route(r))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen, s.table = gen, t
	for ch := range s.subs {
		select {
		case ch <- msg:
		default:
			close(ch)
			delete(s.subs, ch)
		}
	}
}

// GetRoutes returns the current table.
func (s *Server) GetRoutes(context.Context, *edgev1.GetRoutesRequest) (*edgev1.GetRoutesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &edgev1.GetRoutesResponse{Generation: s.gen, Routes: routes(s.table)}, nil
}

// WatchRoutes streams a snapshot, then a diff per applied generation.
func (s *Server) WatchRoutes(_ *edgev1.WatchRoutesRequest, stream grpc.ServerStreamingServer[edgev1.WatchRoutesResponse]) error {
	ch := make(chan *edgev1.WatchRoutesResponse, 64)
	s.mu.Lock()
	snap := &edgev1.WatchRoutesResponse{Generation: s.gen, Snapshot: true, Upserted: routes(s.table)}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	if err := stream.Send(snap); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case msg, ok := <-ch:
			if !ok {
				return status.Error(codes.ResourceExhausted, "watcher fell more than 64 generations behind; watch again")
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
	}
}

func routes(t routetable.Table) []*edgev1.Route {
	var out []*edgev1.Route
	for _, svc := range t.Services() {
		out = append(out, Route(t.Routes[svc]))
	}
	return out
}

// Route converts a route to its message.
func Route(r routetable.Route) *edgev1.Route {
	m := &edgev1.Route{Service: r.Service, Host: r.Host, Path: r.Path, Generation: r.Generation, Degraded: r.Degraded}
	for _, b := range r.Backends {
		mb := &edgev1.Backend{Release: b.Release, Track: b.Track, Weight: int32(b.Weight)}
		for _, u := range b.Upstreams {
			mb.Upstreams = append(mb.Upstreams, &edgev1.Upstream{Id: u.ID, Address: u.Address, AllocationId: u.Allocation})
		}
		m.Backends = append(m.Backends, mb)
	}
	for _, p := range r.Pins {
		mp := &edgev1.Pin{Value: p.Value, Release: p.Release}
		if p.Kind == routetable.PinCookie {
			mp.Cookie = p.Name
		} else {
			mp.Header = p.Name
		}
		m.Pins = append(m.Pins, mp)
	}
	if st := r.Sticky; st != nil {
		m.Sticky = &edgev1.Sticky{Cookie: st.Cookie, MaxAgeSeconds: st.MaxAge}
	}
	return m
}
