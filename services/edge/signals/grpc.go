package signals

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// GRPC sends reports to SignalService on the coordinators at addrs, over
// mutual TLS expecting a coordinator certificate; it tries the coordinator
// that last accepted a report first, then the others (any of them forwards
// to the leader).
type GRPC struct {
	mu    sync.Mutex
	conns []*grpc.ClientConn
	addrs []string
	next  int
}

// DialGRPC prepares connections to addrs (nothing is dialled before the
// first report).
func DialGRPC(addrs []string, creds *rpc.Creds) (*GRPC, error) {
	if len(addrs) == 0 {
		return nil, errors.New("signals: no coordinator address")
	}
	g := &GRPC{addrs: addrs}
	for _, a := range addrs {
		c, err := rpc.Dial(a, creds, rpc.ExpectRole(pki.RoleCoordinator))
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("signals: coordinator %s: %w", a, err)
		}
		g.conns = append(g.conns, c)
	}
	return g, nil
}

// Send implements Send.
func (g *GRPC) Send(ctx context.Context, req *edgev1.ReportSignalsRequest) error {
	g.mu.Lock()
	start := g.next
	g.mu.Unlock()
	var errs []error
	for i := range g.conns {
		j := (start + i) % len(g.conns)
		_, err := edgev1.NewSignalServiceClient(g.conns[j]).ReportSignals(ctx, req)
		if err == nil {
			g.mu.Lock()
			g.next = j
			g.mu.Unlock()
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", g.addrs[j], err))
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// Close closes the connections.
func (g *GRPC) Close() {
	for _, c := range g.conns {
		c.Close()
	}
}
