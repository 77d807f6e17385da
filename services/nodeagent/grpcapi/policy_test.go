package grpcapi

import (
	"context"
	"slices"
	"testing"

	"slipway.dev/nodeagent/agent"
	"slipway.dev/platform/nodepolicy"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// idleDriver and idleRegistry stand in for what GetNodeStatus does not
// call (the embedded nil interfaces would panic if it did).
type idleDriver struct{ agent.Driver }

func (idleDriver) Name() string { return "docker" }

type idleRegistry struct{ agent.Registry }

func TestNodeStatusReportsPolicy(t *testing.T) {
	a, err := agent.New(agent.Config{NodeID: "n1", Address: "127.0.0.1", DataDir: t.TempDir(),
		Policy: nodepolicy.Policy{Privileged: true, Caps: []string{"NET_ADMIN"}, HostPaths: []string{"/data"}, Images: []string{"slipway/*"}}}, idleDriver{}, idleRegistry{})
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
