package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"slipway.dev/faults/check"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// episode runs scenario s once: workload and load before, during and after
// the fault, then settles the cluster and checks every invariant. It
// returns the violations by invariant and the edge request counts.
func (c *cluster) episode(t *testing.T, p profile, s scenario, run int, rng *rand.Rand) (map[string][]string, int, int, int) {
	e := &episode{t: t, c: c, p: p, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(run))), extra: map[string][]string{}}
	began := time.Now()
	edges := make([]string, len(c.edgeHosts))
	names := make([]string, len(c.edgeHosts))
	for i, h := range c.edgeHosts {
		edges[i], names[i] = h.ip+":"+edgeHTTP, fmt.Sprintf("e%d", i)
	}
	starts := map[string]check.Start{}
	for _, svc := range c.services {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.deploy(0).GetService(ctx, &deployv1.GetServiceRequest{Name: svc.name, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
		cancel()
		if err != nil {
			t.Fatalf("%s before %s: %v", svc.name, s.name, err)
		}
		starts[svc.name] = check.Start{Latest: resp.GetService().GetLatestRelease(), Final: true}
	}
	smp := startSampler(c.consulClient(), c.services, 500*time.Millisecond)
	ld := startLoad(edges, names, c.services, p.rate)
	wl := startWorkload(c, c.services, 2, e.rng.Uint64(), fmt.Sprintf("%s-%d", s.name, run), p.supersede, p.abort)
	time.Sleep(p.before) // workload alone before the fault: the episode's input
	s.run(e)
	time.Sleep(p.after) // workload after the heal
	calls := wl.stop()

	v := map[string][]string{}
	for k, list := range e.extra {
		v[k] = append(v[k], list...)
	}
	// Every process runs again (a scenario may have left one stopped only
	// by a bug of its own), and the cluster settles.
	for _, pr := range c.all() {
		if !pr.running() {
			v["converged"] = append(v["converged"], pr.name+" is not running after the scenario healed")
		}
	}
	if left := c.settle(120 * time.Second); len(left) > 0 {
		v["converged"] = append(v["converged"], fmt.Sprintf("rollouts still active 120s after the heal: %v", left))
	}
	requests, failed := ld.stop()
	samples := smp.stop()

	// Linearizability of each service's calls.
	for _, svc := range c.services {
		if r := check.Linearizable(svc.name, starts[svc.name], calls, 60*time.Second); r != "" {
			v["linearizable"] = append(v["linearizable"], r)
		}
	}
	// Acknowledged deploys on every coordinator, once they agree.
	var held map[string][]check.Release
	err := testenv.Poll(30*time.Second, func() error {
		held = map[string][]check.Release{}
		n := -1
		for i := range c.coords {
			rs, err := c.releases(i, c.services)
			if err != nil {
				return fmt.Errorf("c%d: %w", i, err)
			}
			if n >= 0 && len(rs) != n {
				return fmt.Errorf("coordinators hold different numbers of releases")
			}
			n = len(rs)
			held[fmt.Sprintf("c%d", i)] = rs
		}
		return nil
	})
	if err != nil {
		v["acked-present"] = append(v["acked-present"], "coordinators did not converge within 30s: "+err.Error())
	}
	v["acked-present"] = append(v["acked-present"], check.AckedPresent(calls, held)...)

	// Allocations and fencing tokens from the agents' logs (whole logs:
	// an instance may have started in an earlier episode).
	var events []check.AgentEvent
	var tokens []check.Token
	for _, a := range c.agents {
		ev, tk := agentLog(a.logPath, a.node)
		events, tokens = append(events, ev...), append(tokens, tk...)
	}
	started := check.StartedOnce(events)
	v["started-once"] = append(v["started-once"], started[min(c.startedReported, len(started)):]...)
	c.startedReported = len(started)
	stale := check.TokensMonotonic(tokens)
	v["stale-tokens"] = append(v["stale-tokens"], stale[min(c.tokensReported, len(stale)):]...)
	c.tokensReported = len(stale)

	var boundExcused []check.Window
	for _, w := range e.windows {
		if !p.strictBound {
			boundExcused = append(boundExcused, w)
		}
	}
	v["serving-bound"] = append(v["serving-bound"], check.ServingBound(samples, boundExcused)...)

	// Orphans: registrations and instances no allocation owns, given the
	// agents a few seconds to finish stopping what they were told to stop.
	cl := c.consulClient()
	var orphans []string
	_ = testenv.Poll(30*time.Second, func() error {
		regs, err := registrations(cl, c.services)
		if err != nil {
			orphans = []string{"consul: " + err.Error()}
			return err
		}
		live, running := map[string][]string{}, map[string][]string{}
		for _, a := range c.agents {
			ids, err := c.liveAllocations(a)
			if err != nil {
				orphans = []string{a.name + ": " + err.Error()}
				return err
			}
			live[a.node] = ids
			if running[a.node], err = runningInstances(a); err != nil {
				return err
			}
		}
		orphans = check.Orphans(regs, live, running)
		if len(orphans) > 0 {
			return fmt.Errorf("%d orphans", len(orphans))
		}
		return nil
	})
	v["orphans"] = append(v["orphans"], orphans...)

	edgeV := check.EdgeFailures(failed, e.windows)
	v["edge-failures"] = append(v["edge-failures"], edgeV...)
	excused := len(failed) - len(edgeV)

	for k, list := range v {
		if len(list) == 0 {
			delete(v, k)
		}
	}
	nOK := 0
	for _, call := range calls {
		if call.Outcome == check.OK {
			nOK++
		}
	}
	slices.SortFunc(e.windows, func(a, b check.Window) int { return a.From.Compare(b.From) })
	t.Logf("%s run %d: %s; %d calls (%d ok), %d edge requests, %d failed (%d excused), %s", s.name, run,
		fmt.Sprint(e.notes), len(calls), nOK, requests, len(failed), excused, time.Since(began).Round(time.Second))
	return v, requests, len(failed), excused
}
