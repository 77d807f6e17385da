package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestCrashedContainerIsRestartedAndReported runs a real coordinator, Consul
// and a node agent with Docker. A release whose container exits at once
// (bad configuration) is restarted in place by the agent under its restart
// policy (2 attempts, 300ms delay doubling, mode fail); every restart is an
// event of the rollout naming the exit, and once the attempts are used the
// rollout fails with the policy's verdict and the container's last output.
func TestCrashedContainerIsRestartedAndReported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator and a node agent with Docker containers")
	}
	requireDocker(t)
	c := testenv.StartConsul(t, testenv.ConsulACL())
	startAgent(t, c.Addr())
	s := &scenario{t: t, deploy: startCoordinator(t, c.Addr()), consul: c.AdminClient(t), name: unique("crash")}

	var id string
	s.rpc("deploy", func(ctx context.Context) error {
		resp, err := s.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{
			Name: s.name, Image: "slipway/demo:v1", Count: 1, Port: 8080,
			Env:         map[string]string{"HEALTH_FAIL_AFTER": "soon"}, // the demo exits with code 1 on bad config
			Check:       &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(500 * time.Millisecond), Timeout: durationpb.New(500 * time.Millisecond)},
			KillTimeout: durationpb.New(time.Second),
			Restart: &deployv1.RestartPolicy{Attempts: proto.Int32(2), Delay: durationpb.New(300 * time.Millisecond),
				Mode: deployv1.RestartMode_RESTART_MODE_FAIL},
			Update: quick(&deployv1.UpdateStrategy{}),
		}, RequestId: s.name, CreatedBy: "e2e"})
		id = resp.GetRollout().GetId()
		return err
	})
	ro := s.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_FAILED, 60*time.Second)
	const verdict = "exited 3 times within 5m0s, more than the restart policy's 2 attempts (mode fail)"
	const exit, output = "instance exited with code 1; last output: ", `demo: HEALTH_FAIL_AFTER "soon"`
	named := func(m string) bool { return strings.Contains(m, exit) && strings.Contains(m, output) }
	if m := ro.GetMessage(); !strings.Contains(m, verdict) || !named(m) {
		t.Errorf("rollout message %q, want the restart policy's verdict %q and the exit", m, verdict)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := s.deploy.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	var restarts []string
	for {
		ev, err := stream.Recv()
		if err != nil {
			break // the stream ends after the final event
		}
		if ev.GetEvent().GetKind() == "restarted" {
			restarts = append(restarts, ev.GetEvent().GetMessage())
		}
	}
	t.Logf("restart events: %q", restarts)
	if len(restarts) == 0 {
		t.Fatal("no restarted event in the rollout")
	}
	// The engine polls the agent; it may see both restarts at once, but the
	// last event it records names the last restart, its exit and its
	// backoff (300ms doubled).
	last := restarts[len(restarts)-1]
	if !strings.Contains(last, "restarted by its agent (restart 2)") || !named(last) || !strings.Contains(last, "restart 2 of 2 in 600ms") {
		t.Errorf("last restart event %q, want restart 2 after 600ms naming the exit", last)
	}
}
