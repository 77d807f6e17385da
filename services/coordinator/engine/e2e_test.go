package engine_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// buildDemo builds the demo app as process-driver executables
// <dir>/slipway_demo_<v> for image slipway/demo:<v>.
func buildDemo(t testing.TB, dir string, versions ...string) {
	t.Helper()
	root := testenv.RepoRoot(t)
	for _, v := range versions {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+v, "-o", filepath.Join(dir, "slipway_demo_"+v), ".")
		cmd.Dir = filepath.Join(root, "deployments", "demo")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build demo %s: %v\n%s", v, err, out)
		}
	}
	// A root agent runs them as nobody, who must reach them: a t.TempDir's
	// parent is 0700.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
}

// agentProc is a real node agent process with the process driver.
type agentProc struct {
	t                        testing.TB
	bin, addr, nodeID        string
	consulAddr, dir, dataDir string
	args                     []string
	logf                     *os.File
	cmd                      *exec.Cmd
	exited                   chan struct{}
}

// startAgent runs a real node agent with the process driver. Cleanup
// restarts it if it was killed (it adopts its instances), stops its
// instances (an empty desired set under a token no leader reaches), then
// stops the agent.
func startAgent(t testing.TB, consulAddr, processDir string) *agentProc {
	t.Helper()
	return startAgentWith(t, consulAddr, processDir)
}

// startAgentWith is startAgent with extra flags (e.g. -coordinators).
func startAgentWith(t testing.TB, consulAddr, processDir string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{t: t, bin: testenv.BuildBinary(t, "./services/nodeagent/cmd/slipway-nodeagent"), addr: testenv.FreeAddr(t), args: args,
		consulAddr: consulAddr, dir: processDir, dataDir: t.TempDir(), nodeID: fmt.Sprintf("node-%d", time.Now().UnixNano()%1e6)}
	logPath := filepath.Join(t.TempDir(), "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	a.logf = logf
	a.start()
	t.Cleanup(func() {
		if a.cmd == nil {
			a.start()
		}
		a.empty(t, 30*time.Second)
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("node agent %s log:\n%s", a.nodeID, testenv.Tail(b, 8000))
		}
	})
	return a
}

func (a *agentProc) start() {
	a.t.Helper()
	cmd := exec.Command(a.bin, "-node-id", a.nodeID, "-grpc-addr", a.addr, "-consul-addr", a.consulAddr, "-driver", "process",
		"-process-dir", a.dir, "-data-dir", a.dataDir, "-drain-window", "200ms", "-drain-timeout", "3s", "-advertise", "127.0.0.1")
	cmd.Args = append(cmd.Args, testenv.TLSFlags(a.t, pki.RoleNodeAgent, a.nodeID)...)
	cmd.Args = append(cmd.Args, testenv.ConsulFlagsFor(a.t, a.consulAddr, "nodeagent")...) // its token under ConsulACL
	cmd.Args = append(cmd.Args, a.args...)
	cmd.Stdout, cmd.Stderr = a.logf, a.logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.cmd, a.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, a.exited)
}

// empty sends the agent an empty desired set under a token no leader
// reaches and waits, within timeout, until it reports no allocation. It
// runs in cleanups: what goes wrong is logged.
func (a *agentProc) empty(t testing.TB, timeout time.Duration) {
	conn, err := rpc.Dial(a.addr, testenv.Creds(t, pki.RoleCoordinator, "test"), rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: a.nodeID})
	if err != nil {
		t.Errorf("cleanup: dial node agent: %v", err)
		return
	}
	defer conn.Close()
	cl := agentv1.NewNodeAgentServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := cl.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: a.nodeID, Token: &agentv1.FencingToken{Term: 1 << 62}},
		grpc.WaitForReady(true)); err != nil {
		t.Logf("cleanup: empty sync: %v", err)
		return
	}
	deadline, _ := ctx.Deadline()
	if err := testenv.Poll(time.Until(deadline), func() error {
		st, err := cl.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
		if err != nil {
			return err
		}
		if len(st.GetAllocations()) > 0 {
			return fmt.Errorf("it still reports %v", st.GetAllocations())
		}
		return nil
	}); err != nil {
		t.Logf("cleanup: node agent %s not emptied: %v", a.nodeID, err)
	}
}

// kill SIGKILLs the agent alone: its instances keep running, as when a
// host's agent dies.
func (a *agentProc) kill() {
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
	a.cmd = nil
}

type e2e struct {
	t      testing.TB
	deploy deployv1.DeployServiceClient
	consul *api.Client
	name   string
}

func (e *e2e) intent() *edgev1.TrafficIntent {
	kv, _, err := e.consul.KV().Get(catalog.RouteKey(e.name), nil)
	if err != nil || kv == nil {
		return nil
	}
	in := &edgev1.TrafficIntent{}
	if err := protojson.Unmarshal(kv.Value, in); err != nil {
		e.t.Fatalf("intent is not protojson: %v", err)
	}
	return in
}

func (e *e2e) weights() string {
	in := e.intent()
	if in == nil {
		return "none"
	}
	var parts []string
	for _, r := range []string{"1", "2", "3"} {
		if w, ok := in.GetWeights()[r]; ok {
			parts = append(parts, r+":"+strconv.Itoa(int(w)))
		}
	}
	return strings.Join(parts, " ")
}

func (e *e2e) rollout(id string) *deployv1.Rollout {
	ro, err := e.getRollout(id)
	if err != nil {
		e.t.Fatalf("get rollout %s: %v", id, err)
	}
	return ro
}

// getRollout reads a rollout from the leader (through whichever
// coordinator the client talks to).
func (e *e2e) getRollout(id string) (*deployv1.Rollout, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.deploy.GetRollout(ctx, &deployv1.GetRolloutRequest{Id: id, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	return resp.GetRollout(), err
}

// waitState waits until rollout id is in state want and returns it.
func (e *e2e) waitState(id string, want deployv1.RolloutState, d time.Duration) *deployv1.Rollout {
	e.t.Helper()
	var last *deployv1.Rollout
	testenv.Until(e.t, d, id+" "+want.String(), func() string {
		ro, err := e.getRollout(id)
		if err != nil {
			return err.Error()
		}
		if ro.GetState() == want {
			last = ro
			return ""
		}
		return fmt.Sprintf("%s (%s), weights %s", ro.GetState(), ro.GetMessage(), e.weights())
	})
	return last
}

func (e *e2e) waitWeights(want string, d time.Duration) {
	e.t.Helper()
	testenv.Until(e.t, d, "weights "+want, func() string {
		if got := e.weights(); got != want {
			return "weights " + got
		}
		return ""
	})
}

// instanceIDs returns the sorted ids of the release's instances registered
// in Consul.
func (e *e2e) instanceIDs(release uint64) []string {
	entries, _, err := e.consul.Health().Service(e.name, catalog.Tag, false, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, en := range entries {
		if r, err := catalog.ReleaseFromTags(en.Service.Tags); err == nil && r == release {
			ids = append(ids, en.Service.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// passing returns the releases of the service's passing instances in Consul.
func (e *e2e) passing() map[uint64]int {
	entries, _, err := e.consul.Health().Service(e.name, catalog.Tag, true, nil)
	if err != nil {
		return nil
	}
	out := map[uint64]int{}
	for _, en := range entries {
		if r, err := catalog.ReleaseFromTags(en.Service.Tags); err == nil {
			out[r]++
		}
	}
	return out
}

func (e *e2e) doDeploy(image string, env map[string]string, u *deployv1.UpdateStrategy) string {
	e.t.Helper()
	return e.deployWith(image, 2, env, u)
}

func (e *e2e) doDeployCount(image string, count int32, u *deployv1.UpdateStrategy) string {
	e.t.Helper()
	return e.deployWith(image, count, nil, u)
}

func (e *e2e) deployWith(image string, count int32, env map[string]string, u *deployv1.UpdateStrategy) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{
		Name: e.name, Image: image, Count: count, Port: 8080, Env: env,
		Check:       &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(time.Second), Timeout: durationpb.New(500 * time.Millisecond)},
		Route:       &deployv1.Route{Host: e.name + ".test"},
		KillTimeout: durationpb.New(time.Second),
		Update:      u,
	}, RequestId: e.name + "/" + image, CreatedBy: "e2e"})
	if err != nil {
		e.t.Fatalf("deploy %s: %v", image, err)
	}
	return resp.GetRollout().GetId()
}

// TestEngineEndToEnd runs a real coordinator (in-process, engine on), a real
// Consul and a real node agent with the process driver running the demo app,
// and drives a first deploy, a canary with pause/resume/promote and an
// auto-reverted bad release.
func TestEngineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent and demo processes")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL()) // default deny; each component with its minimal policy
	imgDir := t.TempDir()
	buildDemo(t, imgDir, "v1", "v2", "v3")
	startAgent(t, c.Addr(), imgDir)

	co := coordtest.Start(t, c.Addr(), nil)
	e := newE2E(t, co, c.Addr())

	quick := func(u *deployv1.UpdateStrategy) *deployv1.UpdateStrategy {
		u.MinHealthyTime = durationpb.New(500 * time.Millisecond)
		u.HealthyDeadline = durationpb.New(8 * time.Second)
		return u
	}

	// 1. First deploy, rolling: every instance placed, 100% to v1.
	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	if got := e.passing(); got[1] != 2 {
		t.Fatalf("passing instances in Consul = %v, want 2 of release 1", got)
	}
	e.waitWeights("1:100", 5*time.Second)
	if in := e.intent(); in.GetHost() != e.name+".test" || in.GetGeneration() == 0 {
		t.Errorf("intent = %v", in)
	}

	// 2. Canary with a timed step, a manual step; pause, resume, promote.
	v2 := e.doDeploy("slipway/demo:v2", nil, quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
			{Weight: 25, Pause: durationpb.New(3 * time.Second)}, {Weight: 50, Manual: true}, {Weight: 100}}}}))
	e.waitWeights("1:75 2:25", 60*time.Second)
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if _, err := e.deploy.PauseRollout(cctx, &deployv1.PauseRolloutRequest{Id: v2, By: "e2e"}); err != nil {
		t.Fatal(err)
	}
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 10*time.Second)
	// Held beyond the step's 3s pause while paused: the 4s window is the
	// test's input (no condition to wait for), sampled every 200ms.
	held := time.Now().Add(4 * time.Second)
	for time.Now().Before(held) {
		if w := e.weights(); w != "1:75 2:25" {
			t.Fatalf("paused rollout moved traffic to %s", w)
		}
		time.Sleep(200 * time.Millisecond) // spacing of the samples in the held window, not a wait
	}
	if _, err := e.deploy.ResumeRollout(cctx, &deployv1.ResumeRolloutRequest{Id: v2, By: "e2e"}); err != nil {
		t.Fatal(err)
	}
	e.waitWeights("1:50 2:50", 30*time.Second)
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_PAUSED, 10*time.Second) // manual step
	before := e.instanceIDs(2)
	if len(before) != 1 {
		t.Fatalf("v2 instances at 50%% of 2 = %v, want 1", before)
	}

	// The coordinator restarts in the middle of the canary: the new leader
	// resumes the same step without placing anything again.
	co.Stop()
	co.Start()
	testenv.Until(t, 30*time.Second, "promote through the new leader", func() string {
		pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer pcancel()
		if _, err := e.deploy.PromoteRollout(pctx, &deployv1.PromoteRolloutRequest{Id: v2, By: "e2e"}); err != nil {
			return err.Error()
		}
		return ""
	})
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	e.waitWeights("2:100", 5*time.Second)
	testenv.Until(t, 30*time.Second, "only v2 in Consul", func() string {
		if got := e.passing(); got[1] != 0 || got[2] != 2 {
			return fmt.Sprintf("passing %v", got)
		}
		return ""
	})
	after := e.instanceIDs(2)
	if len(after) != 2 || !slices.Contains(after, before[0]) {
		t.Errorf("v2 instances after the restart = %v, want 2 including %s (placed before it)", after, before[0])
	}

	// WatchRollout shows the steps with weights and healthy counts.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	stream, err := e.deploy.WatchRollout(wctx, &deployv1.WatchRolloutRequest{Id: v2})
	if err != nil {
		t.Fatal(err)
	}
	sawStep := false
	for {
		msg, err := stream.Recv()
		if err != nil {
			break
		}
		ev := msg.GetEvent()
		if ev.GetWeights()["2"] == 50 && ev.GetHealthy()["2"] > 0 {
			sawStep = true
		}
	}
	if !sawStep {
		t.Error("WatchRollout showed no event at 50% with healthy v2 instances")
	}

	// 3. A release whose health check fails is reverted automatically.
	u := quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, AutoRevert: true,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50}, {Weight: 100}}}})
	u.HealthyDeadline = durationpb.New(4 * time.Second)
	v3 := e.doDeploy("slipway/demo:v3", map[string]string{"FAIL_HEALTH": "1"}, u)
	e.waitState(v3, deployv1.RolloutState_ROLLOUT_STATE_REVERTED, 60*time.Second)
	e.waitWeights("2:100", 5*time.Second)
	testenv.Until(t, 30*time.Second, "v3 gone, v2 still serving", func() string {
		entries, _, err := e.consul.Health().Service(e.name, catalog.Tag, false, nil)
		if err != nil {
			return err.Error()
		}
		for _, en := range entries {
			if r, _ := catalog.ReleaseFromTags(en.Service.Tags); r == 3 {
				return "v3 still registered"
			}
		}
		if got := e.passing(); got[2] != 2 {
			return fmt.Sprintf("passing %v", got)
		}
		return ""
	})
	gctx, gcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer gcancel()
	svcResp, err := e.deploy.GetService(gctx, &deployv1.GetServiceRequest{Name: e.name})
	if err != nil {
		t.Fatal(err)
	}
	if svcResp.GetService().GetStableRelease() != 2 {
		t.Errorf("stable release = %d, want 2", svcResp.GetService().GetStableRelease())
	}
}

func newE2E(t testing.TB, co *coordtest.Coordinator, consulAddr string) *e2e {
	t.Helper()
	raw := testenv.ConsulAdminClientFor(t, consulAddr)
	e := &e2e{t: t, deploy: deployv1.NewDeployServiceClient(co.Conn), consul: raw, name: fmt.Sprintf("web%d", time.Now().UnixNano()%1e6)}
	testenv.Until(t, 30*time.Second, "coordinator serving", func() string {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		if _, err := e.deploy.ListServices(cctx, &deployv1.ListServicesRequest{}); err != nil {
			return err.Error()
		}
		return ""
	})
	return e
}

func quick(u *deployv1.UpdateStrategy) *deployv1.UpdateStrategy {
	u.MinHealthyTime = durationpb.New(500 * time.Millisecond)
	u.HealthyDeadline = durationpb.New(8 * time.Second)
	return u
}

// TestEngineReplacesLostNode runs two real node agents; when one dies its
// allocation is placed again on the other.
func TestEngineReplacesLostNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, two node agents and demo processes")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL()) // default deny; each component with its minimal policy
	imgDir := searchableDir(t)
	buildDemo(t, imgDir, "v1")
	a := startAgent(t, c.Addr(), imgDir)
	b := startAgent(t, c.Addr(), imgDir)
	co := coordtest.Start(t, c.Addr(), nil)
	e := newE2E(t, co, c.Addr())
	testenv.Until(t, 30*time.Second, "both nodes known", func() string {
		resp, err := clusterv1.NewClusterServiceClient(co.Conn).ListNodes(context.Background(), &clusterv1.ListNodesRequest{})
		if err != nil || len(resp.GetNodes()) != 2 {
			return fmt.Sprintf("nodes %v, %v", resp.GetNodes(), err)
		}
		return ""
	})
	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	if got := e.passingOn(); got[a.nodeID] != 1 || got[b.nodeID] != 1 {
		t.Fatalf("passing instances per node = %v, want one on each", got)
	}
	b.kill()
	// Its instance still runs and answers its own check, but nobody manages
	// it: it leaves the passing set within seconds (its alias check on the
	// dead agent's own check), so edges stop routing to it and no more than
	// count instances ever pass.
	t0 := time.Now()
	testenv.Until(t, 10*time.Second, "the dead agent's instance out of the passing set", func() string {
		if got := e.passingOn(); got[b.nodeID] != 0 || got[a.nodeID]+got[b.nodeID] > 2 {
			return fmt.Sprintf("passing per node %v", got)
		}
		return ""
	})
	t.Logf("the dead agent's instance left the passing set after %s", time.Since(t0).Round(100*time.Millisecond))
	testenv.Until(t, 60*time.Second, "the lost node's instance replaced on the other", func() string {
		if got := e.passingOn(); got[a.nodeID] != 2 || got[b.nodeID] != 0 {
			return fmt.Sprintf("passing per node %v", got)
		}
		return ""
	})
	resp, err := clusterv1.NewClusterServiceClient(co.Conn).ListNodes(context.Background(), &clusterv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range resp.GetNodes() {
		if n.GetId() == b.nodeID && n.GetStatus() != clusterv1.NodeStatus_NODE_STATUS_DOWN {
			t.Errorf("lost node = %v, want DOWN", n)
		}
	}
	if w := e.weights(); w != "1:100" {
		t.Errorf("weights = %s", w)
	}
}

// passingOn counts the service's passing instances per node.
func (e *e2e) passingOn() map[string]int {
	entries, _, err := e.consul.Health().Service(e.name, catalog.Tag, true, nil)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, en := range entries {
		out[en.Service.Meta[catalog.MetaNode]]++
	}
	return out
}
