package e2e_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestStartPeriodGrace runs a real coordinator, Consul and a Docker node
// agent. The instance's /healthz fails for its first 8s (HEALTH_FAIL_FOR),
// longer than the agent's own 5s readiness probing, under a check with a
// 15s start_period: while it fails the agent reports it starting, in its
// start period and not critical, Consul never holds a critical check for
// it, it is not restarted, and the rollout succeeds once it passes.
// Without the start period it is registered critical after 5s.
func TestStartPeriodGrace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator and a node agent with Docker containers")
	}
	requireDocker(t)
	c := testenv.StartConsul(t, testenv.ConsulACL())
	node, agentAddr := startAgentAt(t, c.Addr())
	s := &scenario{t: t, deploy: startCoordinator(t, c.Addr()), consul: c.AdminClient(t), name: unique("grace")}

	conn, err := rpc.Dial(agentAddr, testenv.Creds(t, pki.RoleCoordinator, "test"), rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	agent := agentv1.NewNodeAgentServiceClient(conn)

	// Watch Consul and the agent from the deploy until the rollout ends.
	var (
		mu                    sync.Mutex
		critical              []string
		inGrace, criticalSeen int
		restarts              int32
	)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for watchCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(watchCtx, 2*time.Second)
			checks, _, err := s.consul.Health().Checks(s.name, (&api.QueryOptions{}).WithContext(ctx))
			st, serr := agent.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{}, grpc.WaitForReady(true))
			cancel()
			mu.Lock()
			if err == nil {
				for _, ch := range checks {
					if ch.Status == api.HealthCritical {
						critical = append(critical, fmt.Sprintf("%s: %s", ch.CheckID, ch.Output))
					}
				}
			}
			if serr == nil {
				for _, a := range st.GetAllocations() {
					if a.GetService() != s.name {
						continue
					}
					if a.GetInStartPeriod() && a.GetState() == agentv1.AllocationState_ALLOCATION_STATE_STARTING && a.GetHealth() != agentv1.Health_HEALTH_CRITICAL {
						inGrace++
					}
					if a.GetHealth() == agentv1.Health_HEALTH_CRITICAL {
						criticalSeen++
					}
					restarts = max(restarts, a.GetRestarts())
				}
			}
			mu.Unlock()
			select {
			case <-watchCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	var id string
	s.rpc("deploy", func(ctx context.Context) error {
		resp, err := s.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{
			Name: s.name, Image: "slipway/demo:v1", Count: 1, Port: 8080,
			Env: map[string]string{"HEALTH_FAIL_FOR": "8s"},
			Check: &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(500 * time.Millisecond),
				Timeout: durationpb.New(500 * time.Millisecond), StartPeriod: durationpb.New(15 * time.Second)},
			KillTimeout: durationpb.New(time.Second),
			Update:      quick(&deployv1.UpdateStrategy{}),
		}, RequestId: s.name, CreatedBy: "e2e"})
		id = resp.GetRollout().GetId()
		return err
	})
	s.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 40*time.Second)
	stopWatch()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("agent reported the instance in its start period %d times", inGrace)
	if inGrace == 0 {
		t.Error("the agent never reported the instance starting in its start period while /healthz failed")
	}
	if len(critical) > 0 {
		t.Errorf("Consul held critical checks during the start period: %q", critical)
	}
	if criticalSeen > 0 {
		t.Errorf("the agent reported the instance critical %d times during the start period", criticalSeen)
	}
	if restarts > 0 {
		t.Errorf("the instance was restarted %d times", restarts)
	}
	// The image's own HEALTHCHECK got the same grace (its test kept).
	out, err := exec.Command("docker", "ps", "-q", "--filter", "label=slipway.service="+s.name).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("container of %s: %q %v", s.name, out, err)
	}
	hc, err := exec.Command("docker", "inspect", "-f", `{{.Config.Healthcheck.StartPeriod}} {{json .Config.Healthcheck.Test}}`, strings.Fields(string(out))[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(hc)); got != `15s ["CMD","/demo","-healthcheck"]` {
		t.Errorf("container healthcheck start period and test = %s, want 15s and the image's test", got)
	}
	// Consul now has it passing.
	entries, _, err := s.consul.Health().Service(s.name, "", true, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("passing instances of %s: %d (%v), want 1", s.name, len(entries), err)
	}
}
