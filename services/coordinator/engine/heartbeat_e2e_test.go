package engine_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/coordinator/server"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// streamingFleet runs a real Consul, a coordinator (in-process, engine on)
// with nodeTTL and nodeGrace, and two real node agents streaming
// heartbeats to it (-coordinators), and deploys two demo instances, one on
// each; it returns once both nodes are judged by their streams.
func streamingFleet(t *testing.T, nodeTTL, nodeGrace time.Duration) (*e2e, *coordtest.Coordinator, *agentProc, *agentProc) {
	t.Helper()
	c := testenv.StartConsul(t, testenv.ConsulACL())
	imgDir := searchableDir(t)
	buildDemo(t, imgDir, "v1")
	co := coordtest.Start(t, c.Addr(), func(cfg *server.Config) { cfg.NodeTTL, cfg.NodeGrace = nodeTTL, nodeGrace })
	a := startAgentWith(t, c.Addr(), imgDir, "-coordinators", co.Config.GRPCAddr)
	b := startAgentWith(t, c.Addr(), imgDir, "-coordinators", co.Config.GRPCAddr)
	e := newE2E(t, co, c.Addr())
	testenv.Until(t, 30*time.Second+2*nodeTTL, "both nodes up by their heartbeats", func() string {
		for _, id := range []string{a.nodeID, b.nodeID} {
			if !logged(co, "node up by its heartbeats", "node="+id) {
				return id + " not up by its heartbeats yet"
			}
		}
		return ""
	})
	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	if got := e.passingOn(); got[a.nodeID] != 1 || got[b.nodeID] != 1 {
		t.Fatalf("passing instances per node = %v, want one on each", got)
	}
	return e, co, a, b
}

// logged says whether a line of co's log holds every one of parts.
func logged(co *coordtest.Coordinator, parts ...string) bool {
	for _, line := range strings.Split(string(co.Logs.Bytes()), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

func nodeStatusOf(t *testing.T, co *coordtest.Coordinator, id string) clusterv1.NodeStatus {
	t.Helper()
	resp, err := clusterv1.NewClusterServiceClient(co.Conn).ListNodes(context.Background(), &clusterv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range resp.GetNodes() {
		if n.GetId() == id {
			return n.GetStatus()
		}
	}
	return clusterv1.NodeStatus_NODE_STATUS_UNSPECIFIED
}

// TestEngineStreamingAgentGoneIsDownAfterTTL: a streaming agent killed is
// down once its stream has been silent for the -node-ttl (3s), and its
// instance is replaced on the other node, although the node grace that
// judges agents by Consul alone is 10 minutes.
func TestEngineStreamingAgentGoneIsDownAfterTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, two node agents and demo processes")
	}
	e, co, a, b := streamingFleet(t, 3*time.Second, 10*time.Minute)
	b.kill()
	testenv.Until(t, 60*time.Second, "the dead node's instance replaced on the other", func() string {
		if got := e.passingOn(); got[a.nodeID] != 2 || got[b.nodeID] != 0 {
			return fmt.Sprintf("passing per node %v", got)
		}
		return ""
	})
	if st := nodeStatusOf(t, co, b.nodeID); st != clusterv1.NodeStatus_NODE_STATUS_DOWN {
		t.Errorf("dead node %s is %s, want DOWN", b.nodeID, st)
	}
}

// TestEngineStreamingAgentPauseWithinTTLChangesNothing: a streaming agent
// frozen (SIGSTOP) long enough for its Consul check to fail for more than
// the node grace (1s), but less than the -node-ttl (12s), is not marked
// down and its instance is not replaced.
func TestEngineStreamingAgentPauseWithinTTLChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, two node agents and demo processes")
	}
	const grace = time.Second
	e, co, a, b := streamingFleet(t, 12*time.Second, grace)
	before := e.instanceIDs(1)
	if err := syscall.Kill(b.cmd.Process.Pid, syscall.SIGSTOP); err != nil { // the agent alone: its instances run on
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(b.cmd.Process.Pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	check := "service:" + catalog.AgentServiceID(b.nodeID)
	testenv.Until(t, 20*time.Second, "the frozen agent's Consul check critical", func() string {
		checks, err := e.consul.Agent().Checks()
		if err != nil {
			return err.Error()
		}
		if c := checks[check]; c == nil || c.Status != api.HealthCritical {
			return fmt.Sprintf("check %s = %v", check, c)
		}
		return ""
	})
	// The fault lasts twice the node grace past the failed check: judged
	// by Consul the node would be lost now.
	time.Sleep(2 * grace)
	thaw()
	testenv.Until(t, 30*time.Second, "the agent's instances passing again", func() string {
		if got := e.passingOn(); got[a.nodeID] != 1 || got[b.nodeID] != 1 {
			return fmt.Sprintf("passing per node %v", got)
		}
		return ""
	})
	if st := nodeStatusOf(t, co, b.nodeID); st != clusterv1.NodeStatus_NODE_STATUS_READY {
		t.Errorf("paused node %s is %s, want READY", b.nodeID, st)
	}
	if logged(co, "node down") || logged(co, "moved allocations off lost") || logged(co, "no heartbeat for the TTL") {
		t.Errorf("the pause took the node down or moved its allocations:\n%s", testenv.Tail(co.Logs.Bytes(), 4000))
	}
	if after := e.instanceIDs(1); !slices.Equal(before, after) {
		t.Errorf("instances %v after the pause, want the same %v (none replaced)", after, before)
	}
}
