package grpcapi

import (
	"context"
	"slices"
	"testing"
	"time"

	"slipway.dev/nodeagent/agent"
	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/consul"
	"slipway.dev/platform/nodepolicy"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// idle is a driver and registry with nothing in them.
type idle struct{}

func (idle) Name() string { return "docker" }
func (idle) Start(context.Context, allocation.Spec) (allocation.Instance, error) {
	return allocation.Instance{}, nil
}
func (idle) Stop(context.Context, allocation.Instance, time.Duration) error { return nil }
func (idle) List(context.Context) ([]allocation.Instance, error)            { return nil, nil }
func (idle) Watch(context.Context, func(allocation.Event))                  {}
func (idle) Deregister(context.Context, string) error                       { return nil }
func (idle) Owned(context.Context) (map[string]bool, bool, error)           { return nil, true, nil }
func (idle) Checks(context.Context) (map[string]consul.Health, error)       { return nil, nil }
func (idle) RegisterAgent(context.Context, consul.Node) error               { return nil }
func (idle) SetImageHealth(context.Context, string, string) error           { return nil }
func (idle) WaitRoutes(context.Context, string, string, time.Duration, time.Duration) error {
	return nil
}
func (idle) Register(context.Context, allocation.Spec, allocation.Instance, string, bool) error {
	return nil
}

func TestNodeStatusReportsPolicy(t *testing.T) {
	a, err := agent.New(agent.Config{NodeID: "n1", Address: "127.0.0.1", DataDir: t.TempDir(),
		Policy: nodepolicy.Policy{Privileged: true, Caps: []string{"NET_ADMIN"}, HostPaths: []string{"/data"}, Images: []string{"slipway/*"}}}, idle{}, idle{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := New(a).GetNodeStatus(context.Background(), &agentv1.GetNodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p := st.GetPolicy()
	if !p.GetPrivileged() || !slices.Equal(p.GetCaps(), []string{"NET_ADMIN"}) || !slices.Equal(p.GetHostPaths(), []string{"/data"}) || !slices.Equal(p.GetImages(), []string{"slipway/*"}) {
		t.Errorf("policy = %v", p)
	}
}
