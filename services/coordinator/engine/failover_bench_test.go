package engine_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/coordinator/internal/clusterproc"
	"slipway.dev/platform/testenv"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// BenchmarkFailover SIGKILLs the leader of three real coordinator processes
// (engine on, mutual TLS and tokens, a real Consul and process-driver
// agent) right after it acknowledged a Deploy, FAILOVER_RUNS times (default
// 20), and measures from the kill to (a) a new leader known to a survivor
// and (b) the rollout resumed: the first step of that rollout committed by
// the new leader (its history, stamped with the leader's clock). The killed
// coordinator is restarted before the next run. Reported as p50/p99 in ms,
// beside the configured raft heartbeat timeout (the least a follower waits
// before it may stand). Run it with -benchtime 1x:
//
//	go test -run XXX -bench Failover -benchtime 1x ./engine
func BenchmarkFailover(b *testing.B) {
	runs := 20
	if v, err := strconv.Atoi(os.Getenv("FAILOVER_RUNS")); err == nil && v > 0 {
		runs = v
	}
	c := testenv.StartConsul(b, testenv.ConsulACL())
	imgDir := b.TempDir()
	buildDemo(b, imgDir, "v1")
	startAgent(b, c.Addr(), imgDir)
	bin := testenv.BuildBinary(b, "./services/coordinator/cmd/slipway-coordinator")
	cl, err := clusterproc.NewWithPKI(bin, b.TempDir(), 3, testenv.ProcessPKI(b))
	if err != nil {
		b.Fatal(err)
	}
	cl.Args = append([]string{"-engine=true", "-node-grace", "60s", "-log-level", "warn"}, testenv.ConsulFlagsFor(b, c.Addr(), "coordinator")...)
	// FAILOVER_ARGS: more coordinator flags, e.g. other raft timeouts
	// ("-raft-heartbeat-timeout 300ms -raft-election-timeout 300ms").
	cl.Args = append(cl.Args, strings.Fields(os.Getenv("FAILOVER_ARGS"))...)
	b.Cleanup(cl.Close)
	if err := cl.StartAll(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	all := []int{0, 1, 2}
	if _, err := cl.WaitLeader(ctx, all); err != nil {
		b.Fatal(err)
	}
	if _, err := cl.Bootstrap(ctx); err != nil {
		b.Fatal(err)
	}
	e := &e2e{t: b, consul: testenv.ConsulAdminClientFor(b, c.Addr())}

	var elected, resumed []time.Duration
	b.ResetTimer()
	for run := range runs {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		leader, err := cl.WaitLeader(wctx, all)
		wcancel()
		if err != nil {
			b.Fatal(err)
		}
		survivor := (leader + 1) % 3
		e.deploy = deployv1.NewDeployServiceClient(cl.Conn(survivor))
		e.name = fmt.Sprintf("fo%d-%d", run, time.Now().UnixNano()%1e6)
		id := e.doDeployCount("slipway/demo:v1", 1, quick(&deployv1.UpdateStrategy{}))
		killed := time.Now()
		_ = cl.Signal(leader, syscall.SIGKILL)

		// (a) a new leader, as the survivor sees it.
		for {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			resp, err := clusterv1.NewClusterServiceClient(cl.Conn(survivor)).GetLeader(cctx, &clusterv1.GetLeaderRequest{})
			ccancel()
			if err == nil && resp.GetLeaderId() != "" && resp.GetLeaderId() != cl.Procs[leader].ID {
				elected = append(elected, time.Since(killed))
				break
			}
			if ctx.Err() != nil {
				b.Fatal("no new leader")
			}
			time.Sleep(5 * time.Millisecond) // sampling interval of the measurement, not synchronisation
		}
		// (b) the first step the new leader committed for the rollout.
		ro := e.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 2*time.Minute)
		first := time.Time{}
		for _, h := range ro.GetHistory() {
			if at := h.GetAt().AsTime(); at.After(killed) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		if first.IsZero() {
			b.Fatalf("run %d: rollout %s has no step after the kill: %v", run, id, ro.GetHistory())
		}
		resumed = append(resumed, first.Sub(killed))
		if err := cl.Start(leader); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	ms := func(ds []time.Duration, q float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		i := min(len(s)-1, int(q*float64(len(s))))
		return float64(s[i].Microseconds()) / 1000
	}
	b.ReportMetric(float64(runs), "runs")
	b.ReportMetric(ms(elected, 0.5), "ms_leader_p50")
	b.ReportMetric(ms(elected, 0.99), "ms_leader_p99")
	b.ReportMetric(ms(resumed, 0.5), "ms_resumed_p50")
	b.ReportMetric(ms(resumed, 0.99), "ms_resumed_p99")
}
