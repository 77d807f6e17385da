// Package acltest bootstraps the ACLs of a coordinator a test started, so
// the test calls it with a real token as a user would.
package acltest

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	aclv1 "slipway.dev/proto/slipway/acl/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
)

// Bootstrap waits, within timeout, until the coordinator behind conn knows a
// leader, then bootstraps its ACLs once and returns the management token's
// secret.
func Bootstrap(ctx context.Context, conn grpc.ClientConnInterface, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl := clusterv1.NewClusterServiceClient(conn)
	for {
		resp, err := cl.GetLeader(ctx, &clusterv1.GetLeaderRequest{}, grpc.WaitForReady(true))
		if err == nil && resp.GetLeaderId() != "" && resp.GetGrpcAddress() != "" {
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("acltest: no leader to bootstrap on: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	resp, err := aclv1.NewAclServiceClient(conn).Bootstrap(ctx, &aclv1.BootstrapRequest{})
	if err != nil {
		return "", fmt.Errorf("acltest: bootstrap: %w", err)
	}
	return resp.GetSecret(), nil
}
