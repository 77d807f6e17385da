package e2e_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// BenchmarkRollingFiveDocker measures a rolling update of 5 instances
// (max_parallel 1, min_healthy_time 1s) through a real coordinator, Consul,
// edge (built-in proxy) and node agent with the Docker driver, against the
// sum of its parts measured in the same run: for each of the 5 instances,
// the time from `docker run` of the new image to its first healthy /healthz
// answer, plus min_healthy_time. scripts/bench-rollout.sh runs it:
//
//	go test -run XXX -bench RollingFiveDocker -benchtime 1x ./e2e
func BenchmarkRollingFiveDocker(b *testing.B) {
	requireDocker(b)
	const minHealthy = time.Second
	c := testenv.StartConsul(b)
	ed := startEdge(b, c.Addr(), "proxy")
	coord := coordtest.Start(b, c.Addr(), nil)
	// As deployed: the agent streams its heartbeats and statuses to the
	// leader, which then hears of a passing instance at once instead of at
	// its next poll.
	startAgentWith(b, c.Addr(), "-coordinators", coord.Config.GRPCAddr)
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr()
	raw, err := api.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := &scenario{t: b, deploy: coord.Deploy(), consul: raw, edge: ed, name: unique("roll")}
	roll := func() *deployv1.UpdateStrategy {
		return &deployv1.UpdateStrategy{MaxParallel: 1, MinHealthyTime: durationpb.New(minHealthy),
			HealthyDeadline: durationpb.New(30 * time.Second)}
	}
	v1 := s.deployCount("v1", 5, roll())
	s.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)

	// The parts: 5 container starts of the new image, each until its first
	// healthy answer, on the same Engine.
	node := unique("bench-docker")
	b.Cleanup(func() { removeContainers(b, node) })
	var starts time.Duration
	for range 5 {
		starts += containerStart(b, node, "slipway/demo:v2")
	}
	ideal := starts + 5*minHealthy

	b.ResetTimer()
	began := time.Now()
	v2 := s.deployCount("v2", 5, roll())
	total := succeededAt(b, s.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 180*time.Second)).Sub(began)
	b.StopTimer()
	b.ReportMetric(total.Seconds(), "s_total")
	b.ReportMetric(starts.Seconds()/5, "s_container_start")
	b.ReportMetric(ideal.Seconds(), "s_sum")
	b.ReportMetric(total.Seconds()/ideal.Seconds(), "ratio_vs_sum")
}

// succeededAt is when ro's success was committed, from its history: the
// measurement does not depend on how often the wait looked.
func succeededAt(b *testing.B, ro *deployv1.Rollout) time.Time {
	b.Helper()
	for _, h := range ro.GetHistory() {
		if h.GetState() == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
			return h.GetAt().AsTime()
		}
	}
	b.Fatalf("rollout %s has no SUCCEEDED step in its history: %v", ro.GetId(), ro.GetHistory())
	return time.Time{}
}

// containerStart runs image with docker run (labelled for the node so the
// cleanup removes it) and returns the time until /healthz answers 200; the
// container is removed before it returns.
func containerStart(b *testing.B, node, image string) time.Duration {
	b.Helper()
	port := testenv.FreePort(b)
	began := time.Now()
	out, err := exec.Command("docker", "run", "-d", "--label", "slipway.node="+node, "-p",
		fmt.Sprintf("127.0.0.1:%d:8080", port), image).CombinedOutput()
	if err != nil {
		b.Fatalf("docker run %s: %v\n%s", image, err, out)
	}
	id := strings.TrimSpace(string(out))
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	// Sampled every 5ms, not through the backing-off poll: this is the
	// peer's measured time, and a coarser sample would inflate it.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for last := ""; ; {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-tick.C:
		case <-deadline:
			b.Fatalf("%s not healthy after 30s: %s", image, last)
		}
	}
	took := time.Since(began)
	if out, err := exec.Command("docker", "rm", "-f", id).CombinedOutput(); err != nil {
		b.Fatalf("docker rm %s: %v\n%s", id, err, out)
	}
	return took
}
