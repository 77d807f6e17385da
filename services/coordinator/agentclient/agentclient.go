// Package agentclient is the leader engine's adapter to node agents: it
// sends each node its whole desired set with a fencing token and reads the
// status of its allocations, over gRPC connections built by platform/rpc
// and kept per agent address.
package agentclient

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/engine"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// Client implements engine.Agents.
type Client struct {
	creds *rpc.Creds
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by node id and address
}

// Interface guard.
var _ engine.Agents = (*Client)(nil)

// New returns a client with no connection yet. It reaches agents with creds
// and accepts only an agent whose certificate names the node it means to
// reach (role nodeagent, name = node id): a Consul entry alone does not make
// a node.
func New(creds *rpc.Creds) *Client {
	return &Client{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

func (c *Client) client(node engine.Node) (agentv1.NodeAgentServiceClient, error) {
	key := node.ID + "@" + node.Addr
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil {
		c.conns = map[string]*grpc.ClientConn{}
	}
	conn, ok := c.conns[key]
	if !ok {
		var err error
		conn, err = rpc.Dial(node.Addr, c.creds, rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: node.ID})
		if err != nil {
			return nil, fmt.Errorf("agentclient: dial %s at %s: %w", node.ID, node.Addr, err)
		}
		c.conns[key] = conn
	}
	return agentv1.NewNodeAgentServiceClient(conn), nil
}

// Sync sends node its whole desired set, fenced by token.
func (c *Client) Sync(ctx context.Context, node engine.Node, token *agentv1.FencingToken, allocs []*agentv1.Allocation) ([]*agentv1.AllocationStatus, error) {
	cl, err := c.client(node)
	if err != nil {
		return nil, err
	}
	resp, err := cl.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node.ID, Token: token, Allocations: allocs})
	if status.Code(err) == codes.FailedPrecondition {
		// The agent has seen a newer leader's token.
		return nil, fmt.Errorf("agentclient: sync %s at %s: %w: %w", node.ID, node.Addr, engine.ErrStaleToken, err)
	}
	if err != nil {
		return nil, fmt.Errorf("agentclient: sync %s at %s: %w", node.ID, node.Addr, err)
	}
	return resp.GetAllocations(), nil
}

// Status returns the node's allocations as its agent reports them.
func (c *Client) Status(ctx context.Context, node engine.Node) ([]*agentv1.AllocationStatus, error) {
	cl, err := c.client(node)
	if err != nil {
		return nil, err
	}
	resp, err := cl.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("agentclient: status of %s at %s: %w", node.ID, node.Addr, err)
	}
	if resp.GetNodeId() != "" && resp.GetNodeId() != node.ID {
		return nil, fmt.Errorf("agentclient: %s answers as node %q, not %q", node.Addr, resp.GetNodeId(), node.ID)
	}
	return resp.GetAllocations(), nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, conn := range c.conns {
		_ = conn.Close()
		delete(c.conns, addr)
	}
	return nil
}
