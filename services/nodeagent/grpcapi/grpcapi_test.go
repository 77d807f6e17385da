package grpcapi

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/nodeagent/agent"
	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/consul"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

func TestSpecFromProto(t *testing.T) {
	in := &agentv1.Allocation{
		Id: "a1", NodeId: "n1", Service: "web", Release: 3, Track: "canary", Image: "slipway/demo:v3",
		Env: map[string]string{"A": "1"}, Port: 8080, CpuMhz: 100, MemoryMb: 64, HostPort: 9000,
		Check:       &agentv1.Check{Http: "/healthz", Interval: durationpb.New(2 * time.Second), Timeout: durationpb.New(time.Second)},
		KillTimeout: durationpb.New(3 * time.Second), Args: []string{"-x"},
		DesiredState: agentv1.DesiredState_DESIRED_STATE_STOPPED,
		Privileged:   true, CapAdd: []string{"NET_ADMIN"}, Mounts: []*agentv1.Mount{{HostPath: "/data", ContainerPath: "/d", ReadOnly: true}},
	}
	want := allocation.Spec{
		ID: "a1", NodeID: "n1", Service: "web", Release: 3, Track: "canary", Image: "slipway/demo:v3",
		Env: map[string]string{"A": "1"}, Port: 8080, CPUMHz: 100, MemoryMB: 64, HostPort: 9000,
		Check:       allocation.Check{HTTP: "/healthz", Interval: 2 * time.Second, Timeout: time.Second},
		KillTimeout: 3 * time.Second, Args: []string{"-x"}, Stopped: true,
		Privileged: true, CapAdd: []string{"NET_ADMIN"}, Mounts: []allocation.Mount{{HostPath: "/data", ContainerPath: "/d", ReadOnly: true}},
	}
	if diff := cmp.Diff(want, SpecFromProto(in)); diff != "" {
		t.Errorf("SpecFromProto (-want +got):\n%s", diff)
	}

	// A restart policy: unset fields defaulted, an explicit 0 kept.
	zero := int32(0)
	in.Restart = &agentv1.RestartPolicy{Attempts: &zero, Mode: agentv1.RestartMode_RESTART_MODE_DELAY}
	in.StartDeadline = durationpb.New(20 * time.Second)
	want.Restart = &allocation.Restart{Attempts: 0, Interval: 5 * time.Minute, Delay: time.Second, Mode: allocation.RestartDelay}
	want.StartDeadline = 20 * time.Second
	if diff := cmp.Diff(want, SpecFromProto(in)); diff != "" {
		t.Errorf("SpecFromProto with a restart policy (-want +got):\n%s", diff)
	}
	in.Restart = &agentv1.RestartPolicy{Mode: 9}
	if vs := SpecFromProto(in).Validate("n1"); len(vs) != 1 || vs[0].Field != "restart.mode" {
		t.Errorf("unknown mode: violations %v, want restart.mode", vs)
	}
}

func TestStatusToProto(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	got := StatusToProto(agent.Status{AllocID: "a1", Service: "web", Release: 2, Track: "blue", State: agent.Draining,
		Health: consul.Critical, InstanceID: "c1", HostPort: 31000, Address: "10.0.0.1", Restarts: 2, Error: "boom", UpdatedAt: now})
	if got.GetState() != agentv1.AllocationState_ALLOCATION_STATE_DRAINING || got.GetHealth() != agentv1.Health_HEALTH_CRITICAL ||
		got.GetContainerId() != "c1" || got.GetHostPort() != 31000 || got.GetRestarts() != 2 || got.GetError() != "boom" ||
		!got.GetUpdatedAt().AsTime().Equal(now) || got.GetHealthySince() != nil {
		t.Errorf("StatusToProto = %v", got)
	}
}
