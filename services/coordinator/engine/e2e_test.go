package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/server"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// buildDemo builds the demo app as process-driver executables
// <dir>/slipway_demo_<v> for image slipway/demo:<v>.
func buildDemo(t *testing.T, dir string, versions ...string) {
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
}

// startAgent runs a real node agent with the process driver. Cleanup stops
// its instances (an empty desired set under a token no leader reaches), then
// the agent.
func startAgent(t *testing.T, consulAddr, processDir string) string {
	t.Helper()
	bin := testenv.BuildBinary(t, "./services/nodeagent/cmd/slipway-nodeagent")
	addr := testenv.FreeAddr(t)
	dataDir := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	nodeID := fmt.Sprintf("node-%d", time.Now().UnixNano()%1e6)
	cmd := exec.Command(bin, "-node-id", nodeID, "-grpc-addr", addr, "-consul-addr", consulAddr, "-driver", "process",
		"-process-dir", processDir, "-data-dir", dataDir, "-drain-window", "200ms", "-drain-timeout", "3s", "-advertise", "127.0.0.1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if conn, err := rpc.Dial(addr); err == nil {
			cl := agentv1.NewNodeAgentServiceClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := cl.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: nodeID, Token: &agentv1.FencingToken{Term: 1 << 62}}, grpc.WaitForReady(true)); err != nil {
				t.Logf("cleanup: empty sync: %v", err)
			}
			for ctx.Err() == nil {
				st, err := cl.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
				if err == nil && len(st.GetAllocations()) == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			cancel()
			conn.Close()
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("node agent log:\n%s", tailBytes(b, 8000))
		}
	})
	return addr
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// poll calls cond every 100ms until it returns "" or the deadline passes; the
// last non-empty answer is reported.
func poll(t *testing.T, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %s: %s", what, d, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type e2e struct {
	t      *testing.T
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.deploy.GetRollout(ctx, &deployv1.GetRolloutRequest{Id: id})
	if err != nil {
		e.t.Fatalf("get rollout %s: %v", id, err)
	}
	return resp.GetRollout()
}

func (e *e2e) waitState(id string, want deployv1.RolloutState, d time.Duration) {
	e.t.Helper()
	poll(e.t, d, id+" "+want.String(), func() string {
		ro := e.rollout(id)
		if ro.GetState() == want {
			return ""
		}
		return fmt.Sprintf("%s (%s), weights %s", ro.GetState(), ro.GetMessage(), e.weights())
	})
}

func (e *e2e) waitWeights(want string, d time.Duration) {
	e.t.Helper()
	poll(e.t, d, "weights "+want, func() string {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{
		Name: e.name, Image: image, Count: 2, Port: 8080, Env: env,
		Check:       &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(time.Second), Timeout: durationpb.New(500 * time.Millisecond)},
		Route:       &deployv1.Route{Host: e.name + ".test"},
		KillTimeout: durationpb.New(time.Second),
		Update:      u,
	}, RequestId: image, CreatedBy: "e2e"})
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
	c := testenv.StartConsul(t)
	imgDir := t.TempDir()
	buildDemo(t, imgDir, "v1", "v2", "v3")
	startAgent(t, c.Addr(), imgDir)

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := server.Config{ID: "c1", DataDir: t.TempDir(), GRPCAddr: testenv.FreeAddr(t), RaftAddr: testenv.FreeAddr(t),
		Bootstrap: true, Engine: true, ConsulAddr: c.Addr(), EnginePoll: 200 * time.Millisecond, Logger: logger, LogOutput: &bytes.Buffer{}}
	// The coordinator can be restarted on the same data dir (a new term: a
	// new leader re-acts and resumes).
	var (
		mu     sync.Mutex
		cancel context.CancelFunc
		done   chan error
	)
	startCoord := func() {
		mu.Lock()
		defer mu.Unlock()
		ctx, c := context.WithCancel(context.Background())
		cancel, done = c, make(chan error, 1)
		go func(d chan error) { d <- server.Run(ctx, cfg) }(done)
	}
	stopCoord := func() {
		mu.Lock()
		defer mu.Unlock()
		if cancel != nil {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("coordinator: %v", err)
			}
			cancel = nil
		}
	}
	startCoord()
	var conn *grpc.ClientConn
	t.Cleanup(func() {
		stopCoord()
		if conn != nil {
			conn.Close()
		}
		if t.Failed() {
			t.Logf("coordinator log:\n%s", tailBytes(logs.Bytes(), 12000))
		}
	})
	conn, err := rpc.Dial(cfg.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	acfg := api.DefaultConfig()
	acfg.Address = c.Addr()
	raw, err := api.NewClient(acfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e{t: t, deploy: deployv1.NewDeployServiceClient(conn), consul: raw, name: fmt.Sprintf("web%d", time.Now().UnixNano()%1e6)}
	poll(t, 30*time.Second, "coordinator serving", func() string {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		if _, err := e.deploy.ListServices(cctx, &deployv1.ListServicesRequest{}); err != nil {
			return err.Error()
		}
		return ""
	})

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
	// Held beyond the step's 3s pause while paused.
	held := time.Now().Add(4 * time.Second)
	for time.Now().Before(held) {
		if w := e.weights(); w != "1:75 2:25" {
			t.Fatalf("paused rollout moved traffic to %s", w)
		}
		time.Sleep(200 * time.Millisecond)
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
	stopCoord()
	startCoord()
	poll(t, 30*time.Second, "promote through the new leader", func() string {
		pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer pcancel()
		if _, err := e.deploy.PromoteRollout(pctx, &deployv1.PromoteRolloutRequest{Id: v2, By: "e2e"}); err != nil {
			return err.Error()
		}
		return ""
	})
	e.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	e.waitWeights("2:100", 5*time.Second)
	poll(t, 30*time.Second, "only v2 in Consul", func() string {
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
	poll(t, 30*time.Second, "v3 gone, v2 still serving", func() string {
		entries, _, err := raw.Health().Service(e.name, catalog.Tag, false, nil)
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

// syncWriter serialises writes to a buffer shared by goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
