package e2e_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

const previewHeader = "X-Slipway-Preview"

// TestRolloutsUnderLoad is issue 5's end-to-end show, once per edge mode:
// real Consul, a real coordinator, a real node agent running the demo
// images on Docker and a real slipway-edge, under continuous keep-alive
// load through the edge. It deploys v1, canaries to v2 (a timed 20% step
// held by pause/resume, a manual 50% step promoted by the operator) with
// the weights checked from the traffic itself, switches blue/green to v3
// (the preview header reaches v3 first), aborts in the warm period (traffic
// back to v2), deploys a v4 whose health check fails (auto-reverted, never
// served) and rolls back to release 1 with RollbackService. No request may
// fail.
func TestRolloutsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator, a node agent with Docker containers and an edge")
	}
	requireDocker(t)
	began := time.Now()
	var summaries []string
	for _, mode := range []string{"proxy", "nginx"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "nginx" {
				if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
					t.Skipf("nginx mode needs /usr/sbin/nginx with the Lua module (make tools): %v", err)
				}
			}
			start := time.Now()
			tr := runRollouts(t, mode)
			non2xx, transport, errs := tr.failures()
			line := fmt.Sprintf("%s: %s in %s", mode, tr.summary(), time.Since(start).Round(time.Second))
			summaries = append(summaries, line)
			t.Log(line)
			if non2xx != 0 || transport != 0 {
				t.Errorf("%d non-2xx answers and %d transport errors, first: %v", non2xx, transport, errs)
			}
		})
	}
	t.Logf("summary (%s): %s", time.Since(began).Round(time.Second), strings.Join(summaries, "; "))
}

// scenario drives one service through the rollouts.
type scenario struct {
	t      testing.TB
	deploy deployv1.DeployServiceClient
	consul *api.Client
	edge   *edge
	tr     *traffic
	name   string
}

func runRollouts(t *testing.T, mode string) *traffic {
	// Consul as in production: ACLs default deny, each component with its
	// minimal policy (deployments/consul), HTTPS with client certificates.
	c := testenv.StartConsul(t, testenv.ConsulACL(), testenv.ConsulTLS())
	// The edge starts first and stops last, so that the agent's cleanup
	// drains its instances against a live edge.
	ed := startEdge(t, c.Addr(), mode)
	startAgent(t, c.Addr())
	raw := c.AdminClient(t)
	s := &scenario{t: t, deploy: startCoordinator(t, c.Addr()), consul: raw, edge: ed, name: unique("web")}
	host := s.name + ".test"

	// 1. v1, rolling: the edge serves it before the load starts.
	v1 := s.deployVersion("v1", nil, quick(&deployv1.UpdateStrategy{}))
	s.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	testenv.Until(t, 30*time.Second, "edge serves v1", func() string {
		// Answers before the route exists are not counted as failures.
		got := (&traffic{byVersion: map[string]int{}}).probe(ed.httpAddr, host, nil, 1)
		if got["v1"] != 1 {
			return fmt.Sprintf("answers %v", got)
		}
		return ""
	})
	s.tr = startTraffic(ed.httpAddr, host, 6, 150)
	t.Cleanup(s.tr.stop)
	s.checkShares("1:100", map[string]float64{"v1": 1}, 150)

	// 2. Canary to v2: 20% for 4s (held by a pause well beyond that), 50%
	// until promoted, then 100%.
	canary := quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
			{Weight: 20, Pause: durationpb.New(4 * time.Second)}, {Weight: 50, Manual: true}, {Weight: 100}}}})
	v2 := s.deployVersion("v2", nil, canary)
	s.waitWeights("1:80 2:20", 60*time.Second)
	at20 := time.Now()
	s.rpc("pause", func(ctx context.Context) error {
		_, err := s.deploy.PauseRollout(ctx, &deployv1.PauseRolloutRequest{Id: v2, By: "e2e", Reason: "look at 20%"})
		return err
	})
	s.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 10*time.Second)
	s.checkShares("1:80 2:20", map[string]float64{"v1": 0.8, "v2": 0.2}, 400)
	// Held past the step's 4s pause while paused: still 20%, from the
	// traffic of a second window.
	testenv.Until(t, 10*time.Second, "5s at 20%", func() string {
		if d := time.Since(at20); d < 5*time.Second {
			return "at 20% for " + d.String()
		}
		return ""
	})
	s.checkShares("1:80 2:20", map[string]float64{"v1": 0.8, "v2": 0.2}, 150)
	s.rpc("resume", func(ctx context.Context) error {
		_, err := s.deploy.ResumeRollout(ctx, &deployv1.ResumeRolloutRequest{Id: v2, By: "e2e"})
		return err
	})
	s.waitWeights("1:50 2:50", 60*time.Second)
	s.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 10*time.Second) // the manual step
	s.checkShares("1:50 2:50", map[string]float64{"v1": 0.5, "v2": 0.5}, 400)
	s.rpc("promote", func(ctx context.Context) error {
		_, err := s.deploy.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: v2, By: "e2e"})
		return err
	})
	s.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	s.checkShares("2:100", map[string]float64{"v2": 1}, 150)

	// 3. Blue/green to v3: previewed by header, switched on promote, then
	// aborted while v2 is still warm: all traffic back to v2 at once.
	bg := quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN,
		ScaleDownDelay: durationpb.New(time.Minute), BlueGreen: &deployv1.BlueGreenStrategy{PreviewHeader: previewHeader}})
	v3 := s.deployVersion("v3", nil, bg)
	s.waitState(v3, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 60*time.Second) // in preview, waits for promote
	var pinned *edgev1.TrafficIntent
	testenv.Until(t, 10*time.Second, "preview pin on release 3", func() string {
		pinned = s.intent()
		for _, p := range pinned.GetPins() {
			if p.GetRelease() == 3 && strings.EqualFold(p.GetHeader(), previewHeader) {
				return ""
			}
		}
		return fmt.Sprintf("intent %v", pinned)
	})
	s.waitAck(pinned.GetGeneration())
	if got := s.tr.probe(s.edge.httpAddr, host, map[string]string{previewHeader: "1"}, 30); got["v3"] != 30 {
		t.Fatalf("preview requests answered by %v, want all 30 by v3", got)
	}
	s.checkShares("2:100", map[string]float64{"v2": 1}, 150)
	s.rpc("promote", func(ctx context.Context) error {
		_, err := s.deploy.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: v3, By: "e2e"})
		return err
	})
	s.checkShares("3:100", map[string]float64{"v3": 1}, 150)
	if ro := s.rollout(v3); ro.GetState() != deployv1.RolloutState_ROLLOUT_STATE_RUNNING {
		t.Fatalf("blue/green rollout after the switch = %s (%s), want RUNNING while v2 is warm", ro.GetState(), ro.GetMessage())
	}
	if got := s.passing(); got[2] == 0 {
		t.Fatalf("passing instances after the switch = %v, want v2 still warm", got)
	}
	s.rpc("abort", func(ctx context.Context) error {
		_, err := s.deploy.AbortRollout(ctx, &deployv1.AbortRolloutRequest{Id: v3, By: "e2e", Reason: "back to green"})
		return err
	})
	s.waitState(v3, deployv1.RolloutState_ROLLOUT_STATE_ABORTED, 30*time.Second)
	s.checkShares("2:100", map[string]float64{"v2": 1}, 150)
	s.waitStable(2)

	// 4. v4 fails its health check: reverted, never served.
	bad := quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50}, {Weight: 100}}}})
	bad.HealthyDeadline = durationpb.New(4 * time.Second)
	v4 := s.deployVersion("v4", map[string]string{"FAIL_HEALTH": "1"}, bad)
	s.waitState(v4, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, 60*time.Second)
	s.checkShares("2:100", map[string]float64{"v2": 1}, 150)
	s.waitStable(2)
	testenv.Until(t, 30*time.Second, "v4 instances gone", func() string {
		if got := s.registered(); got[4] != 0 {
			return fmt.Sprintf("registered per release %v", got)
		}
		return ""
	})

	// 5. RollbackService to release 1: v1 again as release 5, rolled out
	// with release 1's (rolling) strategy under the same load.
	var back *deployv1.RollbackServiceResponse
	s.rpc("rollback to release 1", func(ctx context.Context) error {
		var err error
		back, err = s.deploy.RollbackService(ctx, &deployv1.RollbackServiceRequest{Service: s.name, ToRelease: 1,
			RequestId: s.name + "/rollback", By: "e2e", Reason: "back to v1"})
		return err
	})
	if rel := back.GetRelease(); rel.GetNumber() != 5 || rel.GetSpec().GetImage() != "slipway/demo:v1" {
		t.Fatalf("rollback release = %d %q, want 5 slipway/demo:v1", rel.GetNumber(), rel.GetSpec().GetImage())
	}
	s.waitState(back.GetRollout().GetId(), deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	s.checkShares("5:100", map[string]float64{"v1": 1}, 150)
	s.waitStable(5)

	s.tr.stop()
	s.tr.mu.Lock()
	defer s.tr.mu.Unlock()
	if s.tr.byVersion["v4"] != 0 {
		t.Errorf("the failing v4 answered %d requests", s.tr.byVersion["v4"])
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if s.tr.byVersion[v] == 0 {
			t.Errorf("%s answered no request: %v", v, s.tr.byVersion)
		}
	}
	return s.tr
}

// quick shortens the health timings so a rollout takes seconds.
func quick(u *deployv1.UpdateStrategy) *deployv1.UpdateStrategy {
	u.MinHealthyTime = durationpb.New(time.Second)
	u.HealthyDeadline = durationpb.New(20 * time.Second)
	return u
}

func (s *scenario) deployVersion(version string, env map[string]string, u *deployv1.UpdateStrategy) string {
	s.t.Helper()
	return s.deploySpec(version, 2, env, u)
}

func (s *scenario) deployCount(version string, count int32, u *deployv1.UpdateStrategy) string {
	s.t.Helper()
	return s.deploySpec(version, count, nil, u)
}

func (s *scenario) deploySpec(version string, count int32, env map[string]string, u *deployv1.UpdateStrategy) string {
	s.t.Helper()
	var id string
	s.rpc("deploy "+version, func(ctx context.Context) error {
		resp, err := s.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{
			Name: s.name, Image: "slipway/demo:" + version, Count: count, Port: 8080, Env: env,
			Check: &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(500 * time.Millisecond),
				Timeout: durationpb.New(500 * time.Millisecond)},
			Route:       &deployv1.Route{Host: s.name + ".test"},
			KillTimeout: durationpb.New(2 * time.Second),
			Update:      u,
		}, RequestId: s.name + "/" + version, CreatedBy: "e2e"})
		id = resp.GetRollout().GetId()
		return err
	})
	s.t.Logf("deployed %s: rollout %s", version, id)
	return id
}

// rpc calls a DeployService method with a timeout and fails the test on
// error.
func (s *scenario) rpc(what string, call func(ctx context.Context) error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := call(ctx); err != nil {
		s.t.Fatalf("%s: %v", what, err)
	}
}

func (s *scenario) rollout(id string) *deployv1.Rollout {
	s.t.Helper()
	var ro *deployv1.Rollout
	s.rpc("get rollout "+id, func(ctx context.Context) error {
		resp, err := s.deploy.GetRollout(ctx, &deployv1.GetRolloutRequest{Id: id, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
		ro = resp.GetRollout()
		return err
	})
	return ro
}

// waitState waits until rollout id is in state want and returns it.
func (s *scenario) waitState(id string, want deployv1.RolloutState, d time.Duration) *deployv1.Rollout {
	s.t.Helper()
	var last *deployv1.Rollout
	testenv.Until(s.t, d, id+" "+want.String(), func() string {
		ro := s.rollout(id)
		if ro.GetState() != want {
			return fmt.Sprintf("%s (%s), weights %s", ro.GetState(), ro.GetMessage(), weights(s.intent()))
		}
		last = ro
		return ""
	})
	return last
}

func (s *scenario) waitStable(release uint64) {
	s.t.Helper()
	testenv.Until(s.t, 10*time.Second, "stable release "+strconv.FormatUint(release, 10), func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := s.deploy.GetService(ctx, &deployv1.GetServiceRequest{Name: s.name})
		if err != nil {
			return err.Error()
		}
		if got := resp.GetService().GetStableRelease(); got != release {
			return fmt.Sprintf("stable release %d", got)
		}
		return ""
	})
}

// intent reads the service's traffic intent from Consul KV (nil if none).
func (s *scenario) intent() *edgev1.TrafficIntent {
	kv, _, err := s.consul.KV().Get(catalog.RouteKey(s.name), nil)
	if err != nil || kv == nil {
		return nil
	}
	in := &edgev1.TrafficIntent{}
	if err := protojson.Unmarshal(kv.Value, in); err != nil {
		s.t.Fatalf("intent is not protojson: %v", err)
	}
	return in
}

// weights formats an intent's weights as "1:80 2:20", by release.
func weights(in *edgev1.TrafficIntent) string {
	if in == nil {
		return "none"
	}
	rs := make([]string, 0, len(in.GetWeights()))
	for r := range in.GetWeights() {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool {
		a, _ := strconv.Atoi(rs[i])
		b, _ := strconv.Atoi(rs[j])
		return a < b
	})
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s:%d", r, in.GetWeights()[r]))
	}
	return strings.Join(parts, " ")
}

func (s *scenario) waitWeights(want string, d time.Duration) *edgev1.TrafficIntent {
	s.t.Helper()
	var in *edgev1.TrafficIntent
	testenv.Until(s.t, d, "weights "+want, func() string {
		in = s.intent()
		if got := weights(in); got != want {
			return "weights " + got
		}
		return ""
	})
	return in
}

// waitAck waits until the edge acknowledged generation gen (or a later
// one) of the service.
func (s *scenario) waitAck(gen uint64) {
	s.t.Helper()
	testenv.Until(s.t, 20*time.Second, fmt.Sprintf("edge ack of generation %d", gen), func() string {
		a := s.edge.ack(s.t, s.consul)
		if got := a.GetGenerations()[s.name]; got < gen {
			return fmt.Sprintf("acked generation %d", got)
		}
		return ""
	})
}

// checkShares waits for the intent to carry the weights want, for the edge
// to acknowledge it, then for n answers to requests sent after the ack, and
// checks the share of each version in them: exact for 0% and 100%, within
// 4.5 binomial standard deviations (+2 points) otherwise. The routing
// (weights and pins) must not change during the window.
func (s *scenario) checkShares(want string, shares map[string]float64, n int) {
	s.t.Helper()
	in := s.waitWeights(want, 60*time.Second)
	s.waitAck(in.GetGeneration())
	from := time.Now()
	var got map[string]int
	var total int
	testenv.Until(s.t, 30*time.Second, fmt.Sprintf("%d answers at %s", n, want), func() string {
		if got, total = s.tr.since(from); total < n {
			return fmt.Sprintf("%d answers %v", total, got)
		}
		return ""
	})
	// A later generation with the same routing is fine (the engine writes
	// one when it drains instances, e.g. right after a revert).
	if after := s.intent(); weights(after) != want || len(after.GetPins()) != len(in.GetPins()) {
		s.t.Fatalf("intent moved from %s (generation %d, %d pins) to %s (generation %d, %d pins) during the window", want,
			in.GetGeneration(), len(in.GetPins()), weights(after), after.GetGeneration(), len(after.GetPins()))
	}
	versions := make([]string, 0, len(got)+len(shares))
	for v := range got {
		versions = append(versions, v)
	}
	for v := range shares {
		if _, ok := got[v]; !ok {
			versions = append(versions, v)
		}
	}
	slices.Sort(versions)
	var line []string
	for _, v := range versions {
		p, share := shares[v], float64(got[v])/float64(total)
		line = append(line, fmt.Sprintf("%s %.1f%% (want %.0f%%)", v, 100*share, 100*p))
		tol := 4.5*math.Sqrt(p*(1-p)/float64(total)) + 0.02
		if p == 0 || p == 1 {
			tol = 0
		}
		if math.Abs(share-p) > tol {
			s.t.Errorf("at weights %s, %s served %d of %d answers (%.1f%%), want %.0f%% ± %.1f", want, v, got[v], total,
				100*share, 100*p, 100*tol)
		}
	}
	s.t.Logf("weights %s (generation %d acked): %d answers: %s", want, in.GetGeneration(), total, strings.Join(line, ", "))
}

// passing counts the service's passing instances in Consul per release.
func (s *scenario) passing() map[uint64]int { return s.instances(true) }

// registered counts the service's registered instances per release.
func (s *scenario) registered() map[uint64]int { return s.instances(false) }

func (s *scenario) instances(passingOnly bool) map[uint64]int {
	entries, _, err := s.consul.Health().Service(s.name, catalog.Tag, passingOnly, nil)
	if err != nil {
		s.t.Fatalf("consul: %v", err)
	}
	out := map[uint64]int{}
	for _, en := range entries {
		if r, err := catalog.ReleaseFromTags(en.Service.Tags); err == nil {
			out[r]++
		}
	}
	return out
}
