package agent_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"slipway.dev/nodeagent/consul"
	"slipway.dev/nodeagent/internal/nodetest"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
)

// An agent back after a heartbeat lapse longer than HoldAfter (the leader
// may have replaced its allocations elsewhere meanwhile) keeps its running
// instances out of traffic, deregistered but not stopped, until a leader's
// sync says what it still owns: then it stops the rest and serves what it
// owns. With no leader within ConfirmGrace it serves its last known set.
func TestReturningAgentHoldsInstancesUntilALeaderConfirms(t *testing.T) {
	t.Parallel()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			o := opts{grpcAddr: testenv.FreeAddr(t), dataDir: filepath.Join(t.TempDir(), "data"), holdAfter: 4 * time.Second, confirmGrace: time.Hour}
			h := newHarness(t, driver, o)
			a, b := h.spec("a", "slipway/demo:v1"), h.spec("b", "slipway/demo:v2")
			if _, err := h.sync(1, a, b); err != nil {
				t.Fatal(err)
			}
			nodetest.Eventually(t, 20*time.Second, "two passing", func() bool {
				in := h.instances()
				return passing(in[a.ID]) && passing(in[b.ID])
			})
			agentCheck := func() string {
				checks, err := h.reg.Client().Agent().Checks()
				if err != nil {
					return ""
				}
				if c, ok := checks[consul.AgentCheckIDFor(h.node)]; ok {
					return c.Status
				}
				return ""
			}
			// The agent dies (its instances keep running) for longer than
			// HoldAfter; Consul sees it dead.
			die := func() {
				h.stop()
				gone := time.Now()
				nodetest.Eventually(t, 30*time.Second, "the agent's check critical and a lapse longer than HoldAfter", func() bool {
					return agentCheck() == api.HealthCritical && time.Since(gone) > o.holdAfter
				})
			}
			die()

			// Back: held. Deregistered, still running, even once its own
			// check passes again.
			h.a, h.stop = h.runAgent(o)
			nodetest.Eventually(t, 20*time.Second, "the agent passing again with its instances deregistered", func() bool {
				in := h.instances()
				return agentCheck() == api.HealthPassing && in[a.ID] == nil && in[b.ID] == nil
			})
			if got := h.running(); len(got) != 2 {
				t.Fatalf("held instances were stopped: running %v", instanceIDs(got))
			}

			// A leader's sync confirms: b is no longer owned and stops; a
			// serves again.
			if _, err := h.sync(2, a); err != nil {
				t.Fatal(err)
			}
			nodetest.Eventually(t, 20*time.Second, "a passing, b gone", func() bool {
				in := h.instances()
				_, bRuns := h.running()[b.ID]
				return passing(in[a.ID]) && in[b.ID] == nil && !bRuns
			})

			// With no leader at all, the grace ends the hold.
			die()
			o.confirmGrace = 2 * time.Second
			h.a, h.stop = h.runAgent(o)
			nodetest.Eventually(t, 20*time.Second, "held first", func() bool { return h.instances()[a.ID] == nil })
			nodetest.Eventually(t, 30*time.Second, "a serving again after the grace, without a sync", func() bool {
				return passing(h.instances()[a.ID])
			})
		})
	}
}

// An agent whose heartbeats fail for longer than HoldAfter while it runs
// (here Consul is away; a netsplit looks the same from the agent) holds its
// instances out of traffic once it reaches Consul again, until a leader's
// sync confirms them.
func TestHeartbeatLapseHoldsInstancesUntilALeaderConfirms(t *testing.T) {
	t.Parallel()
	o := opts{grpcAddr: testenv.FreeAddr(t), holdAfter: 2 * time.Second, confirmGrace: time.Hour}
	h := newHarness(t, "process", o)
	a := h.spec("a", "slipway/demo:v1")
	if _, err := h.sync(1, a); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 20*time.Second, "a passing", func() bool { return passing(h.instances()[a.ID]) })
	h.consul.Stop()
	gone := time.Now()
	nodetest.Eventually(t, 30*time.Second, "a lapse longer than HoldAfter", func() bool { return time.Since(gone) > o.holdAfter+time.Second })
	h.consul.Start() // a dev agent forgets everything: the agent registers itself again
	nodetest.Eventually(t, 30*time.Second, "the agent registered again, its instance not", func() bool {
		svcs, err := h.reg.Client().Agent().Services()
		if err != nil {
			return false
		}
		_, self := svcs[catalog.AgentServiceID(h.node)]
		_, inst := svcs[a.ID]
		return self && !inst
	})
	// And it stays so over several anti-entropy rounds (1s each), which
	// would have registered it again.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); <-tick.C {
		svcs, err := h.reg.Client().Agent().Services()
		if err != nil {
			t.Fatal(err)
		}
		if _, inst := svcs[a.ID]; inst {
			t.Fatal("the instance was registered again before a leader confirmed it")
		}
	}
	if _, ok := h.running()[a.ID]; !ok {
		t.Fatal("the held instance was stopped")
	}
	if _, err := h.sync(2, a); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 20*time.Second, "a passing again after the leader's sync", func() bool { return passing(h.instances()[a.ID]) })
}

// An agent cut off from Consul and from the leader (its heartbeat stream
// gone past the TTL the leader announced: the leader judged its node down
// and may have replaced its allocations) holds its instances out of
// Consul when it reaches Consul again, although the lapse is shorter than
// HoldAfter, until a leader's sync says what it still owns. A plain
// Consul restart (the stream to the leader stays up) holds nothing: the
// instance is registered again at once.
func TestConsulAndLeaderLapseHoldsInstancesUntilALeaderConfirms(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		down      time.Duration // how long no leader held the stream
		wantsHold bool
	}{{"cut off from both", 10 * time.Second, true}, {"consul restart only", 0, false}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			lapse := func(time.Time) (time.Duration, time.Duration) { return c.down, 4 * time.Second }
			o := opts{grpcAddr: testenv.FreeAddr(t), holdAfter: time.Hour, confirmGrace: time.Hour, leaderLapse: lapse}
			h := newHarness(t, "process", o)
			a := h.spec("a", "slipway/demo:v1")
			if _, err := h.sync(1, a); err != nil {
				t.Fatal(err)
			}
			nodetest.Eventually(t, 20*time.Second, "a passing", func() bool { return passing(h.instances()[a.ID]) })
			h.consul.Stop()
			gone := time.Now()
			// Heartbeats fail for a while (every quarter of the TTL).
			nodetest.Eventually(t, 30*time.Second, "heartbeats failing", func() bool { return time.Since(gone) > consul.AgentTTL })
			h.consul.Start() // a dev agent forgets everything: the agent registers itself again
			registered := func() (self, inst bool) {
				svcs, err := h.reg.Client().Agent().Services()
				if err != nil {
					return false, false
				}
				_, self = svcs[catalog.AgentServiceID(h.node)]
				_, inst = svcs[a.ID]
				return self, inst
			}
			if !c.wantsHold {
				nodetest.Eventually(t, 30*time.Second, "the agent and its instance registered again", func() bool {
					self, inst := registered()
					return self && inst
				})
				return
			}
			nodetest.Eventually(t, 30*time.Second, "the agent registered again, its instance not", func() bool {
				self, inst := registered()
				return self && !inst
			})
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); <-tick.C {
				if _, inst := registered(); inst {
					t.Fatal("the instance was registered again before a leader confirmed it")
				}
			}
			if _, ok := h.running()[a.ID]; !ok {
				t.Fatal("the held instance was stopped")
			}
			if _, err := h.sync(2, a); err != nil {
				t.Fatal(err)
			}
			nodetest.Eventually(t, 20*time.Second, "a passing again after the leader's sync", func() bool { return passing(h.instances()[a.ID]) })
		})
	}
}
