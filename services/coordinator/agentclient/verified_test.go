package agentclient_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"slipway.dev/coordinator/agentclient"
	"slipway.dev/coordinator/engine"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

type staticNodes []engine.Node

func (s staticNodes) Nodes(context.Context) ([]engine.Node, error) { return s, nil }

// probeAgents answers Status for the node ids in ok and records every probe.
type probeAgents struct {
	mu     sync.Mutex
	ok     map[string]bool
	probes []string
}

func (p *probeAgents) Sync(context.Context, engine.Node, *agentv1.FencingToken, []*agentv1.Allocation) ([]*agentv1.AllocationStatus, error) {
	return nil, errors.New("not used")
}

func (p *probeAgents) Status(_ context.Context, n engine.Node) ([]*agentv1.AllocationStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes = append(p.probes, n.ID)
	if !p.ok[n.ID] {
		return nil, errors.New("tls: certificate does not name " + n.ID)
	}
	return nil, nil
}

func (p *probeAgents) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, x := range p.probes {
		if x == id {
			n++
		}
	}
	return n
}

func ids(ns []engine.Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.ID)
	}
	return out
}

func TestVerifiedPassesOnlyProvenNodes(t *testing.T) {
	src := staticNodes{{ID: "real", Addr: "127.0.0.1:1"}, {ID: "fake", Addr: "127.0.0.1:2"}}
	agents := &probeAgents{ok: map[string]bool{"real": true}}
	v := agentclient.NewVerified(src, agents, slog.New(slog.DiscardHandler))
	v.Retry = time.Hour
	nodes := func() []string {
		got, err := v.Nodes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return ids(got)
	}
	// Probed in the background: the real node appears once it answered.
	testenv.Eventually(t, 5*time.Second, "the real node proven", func() error {
		if got := nodes(); !slices.Equal(got, []string{"real"}) {
			return fmt.Errorf("nodes %v", got)
		}
		return nil
	})
	testenv.Eventually(t, 5*time.Second, "the impostor probed", func() error {
		if agents.count("fake") == 0 {
			return errors.New("not probed")
		}
		return nil
	})
	for range 3 {
		if got := nodes(); !slices.Equal(got, []string{"real"}) {
			t.Fatalf("Nodes = %v; want only real", got)
		}
	}
	// Proven once, not probed again; the impostor is probed again only
	// after Retry.
	if agents.count("real") != 1 || agents.count("fake") != 1 {
		t.Errorf("probes = %v, want one each", agents.probes)
	}
	// The impostor gets a real certificate: it is accepted after its next
	// probe.
	v.Retry = 0
	agents.mu.Lock()
	agents.ok["fake"] = true
	agents.ok["real"] = false
	agents.mu.Unlock()
	testenv.Eventually(t, 5*time.Second, "fake proven", func() error {
		if got := nodes(); !slices.Equal(got, []string{"real", "fake"}) {
			return fmt.Errorf("nodes %v", got)
		}
		return nil
	})
	// The same id at another address must prove itself there.
	v2 := agentclient.NewVerified(staticNodes{{ID: "real", Addr: "127.0.0.1:3"}}, agents, nil)
	v2.Retry = 0
	testenv.Eventually(t, 5*time.Second, "real probed at its new address", func() error {
		if got, _ := v2.Nodes(context.Background()); len(got) != 0 {
			return fmt.Errorf("nodes %v at an unproven address", ids(got))
		}
		if agents.count("real") < 2 {
			return errors.New("not probed")
		}
		return nil
	})
	if got, _ := v2.Nodes(context.Background()); len(got) != 0 {
		t.Errorf("Nodes = %v, want none at an unproven address", ids(got))
	}
}

// blockingAgents answers Status only when released, counting the probes
// in flight.
type blockingAgents struct {
	probeAgents
	release        chan struct{}
	inFlight, most int
}

func (b *blockingAgents) Status(ctx context.Context, n engine.Node) ([]*agentv1.AllocationStatus, error) {
	b.mu.Lock()
	b.inFlight++
	b.most = max(b.most, b.inFlight)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight--
		b.mu.Unlock()
	}()
	select {
	case <-b.release:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestVerifiedBoundsProbesInFlight: a fleet that appears at once is probed
// at most Parallel at a time (each within its own Timeout from its turn),
// and every node is proven in the end.
func TestVerifiedBoundsProbesInFlight(t *testing.T) {
	var src staticNodes
	for i := range 50 {
		src = append(src, engine.Node{ID: fmt.Sprintf("n%02d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 1000+i)})
	}
	agents := &blockingAgents{release: make(chan struct{})}
	v := agentclient.NewVerified(src, agents, slog.New(slog.DiscardHandler))
	v.Parallel, v.Timeout, v.Retry = 4, time.Minute, time.Hour
	if _, err := v.Nodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "4 probes in flight", func() error {
		agents.mu.Lock()
		defer agents.mu.Unlock()
		if agents.inFlight != 4 {
			return fmt.Errorf("%d in flight", agents.inFlight)
		}
		return nil
	})
	close(agents.release)
	testenv.Eventually(t, 10*time.Second, "every node proven", func() error {
		got, err := v.Nodes(context.Background())
		if err != nil {
			return err
		}
		if len(got) != len(src) {
			return fmt.Errorf("%d of %d proven", len(got), len(src))
		}
		return nil
	})
	agents.mu.Lock()
	defer agents.mu.Unlock()
	if agents.most > 4 {
		t.Fatalf("%d probes were in flight at once, want at most 4", agents.most)
	}
}
