package consul

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
)

// An instance is tied to its node agent's liveness: when the agent dies
// (it misses its heartbeats for AgentTTL), the instance stops being passing in
// Consul within seconds, although its container still answers its own
// check, so edges stop routing to it; when the agent is back, it passes
// again.
func TestInstancesFollowTheirAgentsLiveness(t *testing.T) {
	if testing.Short() {
		t.Skip("real Consul; skipped by -short")
	}
	t.Parallel()
	c := testenv.StartConsul(t)
	r, err := New(c.Addr(), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The agent heartbeats its own check while it lives.
	beat := func(stop <-chan struct{}) {
		tk := time.NewTicker(AgentTTL / 4)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = r.Heartbeat(ctx)
			}
		}
	}
	alive := make(chan struct{})
	go beat(alive)
	// The instance's own endpoint: it keeps answering throughout.
	inst, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	go func() {
		for {
			conn, err := inst.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()

	if err := r.RegisterAgent(ctx, Node{ID: "n1", GRPCAddr: "127.0.0.1:7410", CPUMHz: 1000, MemoryMB: 1024, Driver: "process"}); err != nil {
		t.Fatal(err)
	}
	s := allocation.Spec{ID: "a1", Service: "web", Release: 1, Track: "stable", Check: allocation.Check{TCP: true}}
	port := inst.Addr().(*net.TCPAddr).Port
	if err := r.Register(ctx, s, allocation.Instance{HostPort: port}, "127.0.0.1", true); err != nil {
		t.Fatal(err)
	}
	passing := func() (bool, error) {
		es, _, err := r.Client().Health().Service("web", catalog.Tag, true, nil)
		return len(es) == 1, err
	}
	want := func(what string, up bool) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, what, func() error {
			ok, err := passing()
			if err != nil {
				return err
			}
			if ok != up {
				checks, _, _ := r.Client().Health().Checks("web", nil)
				var st []string
				for _, c := range checks {
					st = append(st, c.CheckID+"="+c.Status)
				}
				return fmt.Errorf("passing %v, want %v; checks %v", ok, up, st)
			}
			return nil
		})
	}
	want("instance passing with its agent alive", true)

	// The agent dies (no more heartbeats); its instance keeps answering
	// its own check.
	t0 := time.Now()
	close(alive)
	want("instance no longer passing once its agent is dead", false)
	t.Logf("instance out of the passing set %s after its agent died", time.Since(t0).Round(time.Millisecond))
	hs, err := r.Checks(ctx)
	if err != nil || hs["a1"] != Critical {
		t.Errorf("Checks = %v, %v; want a1 critical", hs, err)
	}
	var own string
	checks, _, _ := r.Client().Health().Checks("web", nil)
	for _, c := range checks {
		if c.CheckID == "a1:check" {
			own = c.Status
		}
	}
	if own != api.HealthPassing {
		t.Errorf("the instance's own check is %q; the test wants it passing throughout", own)
	}

	// The agent comes back and heartbeats again.
	back := make(chan struct{})
	defer close(back)
	go beat(back)
	want("instance passing again once its agent is back", true)
}
