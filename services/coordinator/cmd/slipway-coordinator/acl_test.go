package main_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/internal/clusterproc"
	"slipway.dev/platform/testenv"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func bearer(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

// TestTokensAcrossCoordinators runs three coordinator processes with -acl
// over mutual TLS: calls without a token are refused on every one, a
// deploy token for web-* cannot deploy api (the refusal names the missing
// permission), the audit entry of its deploy names its accessor, and once
// revoked it is refused by all three within a second.
func TestTokensAcrossCoordinators(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three coordinator processes")
	}
	bin := testenv.BuildBinary(t, "./services/coordinator/cmd/slipway-coordinator")
	c, err := clusterproc.New(bin, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, p := range c.Procs {
				b, _ := os.ReadFile(p.LogPath)
				t.Logf("==> %s log:\n%s", p.ID, b)
			}
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx, []int{0, 1, 2}) // GetLeader needs no token
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	dep := func(i int) deployv1.DeployServiceClient { return deployv1.NewDeployServiceClient(c.Conn(i)) }
	acl := func(i int) aclv1.AclServiceClient { return aclv1.NewAclServiceClient(c.Conn(i)) }

	// Default deny: nothing but bootstrap without a token, on any node.
	for i := range c.Procs {
		_, err := dep(i).Deploy(ctx, &deployv1.DeployRequest{Spec: webSpec("web-1", "slipway/demo:v1")})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "authorization: Bearer") {
			t.Fatalf("%s: deploy without a token: %v, want Unauthenticated naming the metadata", c.Procs[i].ID, err)
		}
	}

	// Bootstrap through a follower: the leader draws the token, once.
	var boot *aclv1.BootstrapResponse
	testenv.Eventually(t, 20*time.Second, "bootstrap through a follower", func() error {
		var err error
		boot, err = acl(follower).Bootstrap(ctx, &aclv1.BootstrapRequest{})
		return err
	})
	if _, err := acl(leader).Bootstrap(ctx, &aclv1.BootstrapRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second bootstrap: %v, want FailedPrecondition", err)
	}
	admin := bearer(ctx, boot.GetSecret())
	ci, err := acl(follower).CreateToken(admin, &aclv1.CreateTokenRequest{
		Policies: []aclv1.Policy{aclv1.Policy_POLICY_DEPLOY}, Services: []string{"web-*"}, Description: "ci"})
	if err != nil {
		t.Fatalf("create the ci token: %v", err)
	}
	ciCtx := bearer(ctx, ci.GetSecret())
	ciAcc := ci.GetToken().GetAccessorId()

	// Out of scope: refused on every node, naming what is missing and what
	// the token has.
	for i := range c.Procs {
		_, err := dep(i).Deploy(ciCtx, &deployv1.DeployRequest{Spec: webSpec("api", "slipway/demo:v1")})
		want := fmt.Sprintf(`token "ci" (accessor %s…) lacks deploy on service "api"; it has deploy:web-*`, ciAcc[:8])
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), want) {
			t.Fatalf("%s: deploy api with the ci token: %v, want PermissionDenied containing %q", c.Procs[i].ID, err, want)
		}
	}

	// In scope, through a follower: the audit entry names the accessor.
	if _, err := dep(follower).Deploy(ciCtx, &deployv1.DeployRequest{Spec: webSpec("web-1", "slipway/demo:v1"), CreatedBy: "pipeline 42"}); err != nil {
		t.Fatalf("deploy web-1 with the ci token: %v", err)
	}
	for i := range c.Procs {
		testenv.Eventually(t, 5*time.Second, c.Procs[i].ID+": the audit entry names the ci accessor", func() error {
			resp, err := dep(i).ListReleases(ciCtx, &deployv1.ListReleasesRequest{Service: "web-1"})
			if err != nil {
				return err
			}
			for _, a := range resp.GetAudit() {
				if a.GetAction() == "deploy" && a.GetAccessorId() == ciAcc && a.GetActor() == "pipeline 42" {
					return nil
				}
			}
			return fmt.Errorf("audit %v has no deploy entry by accessor %s", resp.GetAudit(), ciAcc)
		})
	}

	// Revoke through the leader; all three refuse the token within 1s of
	// the answer (each applies the revocation; nothing is cached).
	if _, err := acl(leader).RevokeToken(admin, &aclv1.RevokeTokenRequest{AccessorId: ciAcc}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	revoked := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, len(c.Procs))
	for i := range c.Procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			testenv.Eventually(t, time.Second, c.Procs[i].ID+": the revoked token refused", func() error {
				_, err := dep(i).ListServices(ciCtx, &deployv1.ListServicesRequest{})
				if status.Code(err) != codes.Unauthenticated {
					return fmt.Errorf("ListServices with the revoked token: %v", err)
				}
				took[i] = time.Since(revoked)
				return nil
			})
		}()
	}
	wg.Wait()
	t.Logf("revoked token refused after %v (per coordinator)", took)
	// The management token still works everywhere.
	for i := range c.Procs {
		if _, err := acl(i).ListTokens(admin, &aclv1.ListTokensRequest{}); err != nil {
			t.Fatalf("%s: ListTokens as admin: %v", c.Procs[i].ID, err)
		}
	}
}
