package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/coordinator/keyring"
	"slipway.dev/coordinator/server"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// apiCoordinator starts Consul and one coordinator with a keyring, the
// engine off (rollouts stay pending: only the API's answers matter), over
// mutual TLS with ACLs on.
func apiCoordinator(t *testing.T) *coordtest.Coordinator {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Consul and a coordinator")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL())
	kfile := filepath.Join(t.TempDir(), "keyring.json")
	if _, err := keyring.Init(kfile); err != nil {
		t.Fatal(err)
	}
	return coordtest.Start(t, c.Addr(), func(cfg *server.Config) { cfg.KeyringFile, cfg.Engine = kfile, false })
}

// tokenConn dials co with a new token of policy p scoped to services.
func tokenConn(t *testing.T, co *coordtest.Coordinator, p aclv1.Policy, services ...string) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := aclv1.NewAclServiceClient(co.Conn).CreateToken(ctx, &aclv1.CreateTokenRequest{Policies: []aclv1.Policy{p}, Services: services, Description: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rpc.Dial(co.Config.GRPCAddr, testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleCoordinator), rpc.WithToken(tok.GetSecret()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// fieldError returns the description of the field violation on field, or
// fails the test when err is not INVALID_ARGUMENT with one.
func fieldError(t *testing.T, err error, field string) string {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("got %v, want INVALID_ARGUMENT on %s", err, field)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return v.GetDescription()
				}
			}
		}
	}
	t.Fatalf("%v: no field violation on %s", err, field)
	return ""
}

func mountingSpec(name, secret string) *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{Name: name, Image: "slipway/demo:v1", Count: 1, Port: 8080,
		Secrets: []*deployv1.FileMount{{Name: secret}}}
}

// TestSecretScopeAtDeploy: a secret is mounted only by the services its
// scope names (globs, set by an admin at create and update); Deploy with a
// deploy token for every service refuses any other, naming the secret and
// the service in a field error; a secret created without services is
// mounted by none; narrowing a scope refuses the next deploy of a service
// it no longer allows, while its release keeps its pinned version; only
// an admin changes a scope.
func TestSecretScopeAtDeploy(t *testing.T) {
	co := apiCoordinator(t)
	admin := deployv1.NewSecretServiceClient(co.Conn)
	ci := tokenConn(t, co, aclv1.Policy_POLICY_DEPLOY, "*")
	deploy, ciSecrets := deployv1.NewDeployServiceClient(ci), deployv1.NewSecretServiceClient(ci)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	shop := unique("shop")
	db := "db-" + shop
	if _, err := admin.CreateSecret(ctx, &deployv1.CreateSecretRequest{Name: db, Data: []byte("pw1"), Services: []string{shop, "[bad"}}); fieldError(t, err, "services[1]") == "" {
		t.Fatal("no description")
	}
	created, err := admin.CreateSecret(ctx, &deployv1.CreateSecretRequest{Name: db, Data: []byte("pw1"), Services: []string{shop, shop + "-*"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := created.GetSecret().GetServices(); len(got) != 2 || got[0] != shop || got[1] != shop+"-*" {
		t.Fatalf("created with services %v", got)
	}
	other := unique("web")
	_, err = deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: mountingSpec(other, db), CreatedBy: "ci"})
	if d := fieldError(t, err, "spec.secrets[0].name"); !strings.Contains(d, fmt.Sprintf("%q", db)) || !strings.Contains(d, fmt.Sprintf("service %q", other)) {
		t.Fatalf("refusal %q does not name secret %s and service %s", d, db, other)
	}
	if _, err := deploy.GetService(ctx, &deployv1.GetServiceRequest{Name: other}); status.Code(err) != codes.NotFound {
		t.Fatalf("refused deploy made service %s: %v", other, err)
	}
	eu := shop + "-eu"
	first, err := deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: mountingSpec(eu, db), CreatedBy: "ci"})
	if err != nil {
		t.Fatalf("deploy of %s (allowed by %s-*): %v", eu, shop, err)
	}
	if v := first.GetRelease().GetSpec().GetSecrets()[0].GetVersion(); v != 1 {
		t.Fatalf("release pinned version %d, want 1", v)
	}

	// Only an admin changes a scope.
	if _, err := ciSecrets.UpdateSecret(ctx, &deployv1.UpdateSecretRequest{Name: db, SetServices: true, Services: []string{"*"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("scope change with a deploy token: %v, want PERMISSION_DENIED", err)
	}
	narrowed, err := admin.UpdateSecret(ctx, &deployv1.UpdateSecretRequest{Name: db, SetServices: true, Services: []string{shop}})
	if err != nil {
		t.Fatal(err)
	}
	if narrowed.GetSecret().GetVersion() != 1 || len(narrowed.GetSecret().GetServices()) != 1 {
		t.Fatalf("scope change = %v, want version 1 scoped to %s", narrowed.GetSecret(), shop)
	}
	next := mountingSpec(eu, db)
	next.Image = "slipway/demo:v2"
	_, err = deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: next, Supersede: true, CreatedBy: "ci"})
	if d := fieldError(t, err, "spec.secrets[0].name"); !strings.Contains(d, fmt.Sprintf("service %q", eu)) || !strings.Contains(d, "it allows "+shop) {
		t.Fatalf("refusal after narrowing %q does not name %s and the scope", d, eu)
	}
	rels, err := deploy.ListReleases(ctx, &deployv1.ListReleasesRequest{Service: eu})
	if err != nil || len(rels.GetReleases()) != 1 || rels.GetReleases()[0].GetSpec().GetSecrets()[0].GetVersion() != 1 {
		t.Fatalf("releases of %s after the refusal = %v, %v; want the first, pinning version 1", eu, rels.GetReleases(), err)
	}

	// Created without services: no service may mount it.
	none := "none-" + shop
	if _, err := admin.CreateSecret(ctx, &deployv1.CreateSecretRequest{Name: none, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	_, err = deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: mountingSpec(shop, none), CreatedBy: "ci"})
	if d := fieldError(t, err, "spec.secrets[0].name"); !strings.Contains(d, "no service") {
		t.Fatalf("refusal of an unscoped secret %q does not say it allows no service", d)
	}
	got, err := ciSecrets.GetSecret(ctx, &deployv1.GetSecretRequest{Name: db})
	if err != nil || len(got.GetSecret().GetServices()) != 1 || got.GetSecret().GetServices()[0] != shop || len(got.GetSecret().GetUsedBy()) != 1 {
		t.Fatalf("GetSecret = %v, %v; want scoped to %s, used by %s", got.GetSecret(), err, shop, eu)
	}
}

// TestDeployRetryAfterSecretUpdateReplays: a deploy retried with its
// request id after the secret it mounts (unversioned) got a new version
// answers the original release (replayed, still pinned to version 1), not
// ALREADY_EXISTS, and so does one after its scope was narrowed (while a
// new deploy is refused); another spec under the id still is refused.
func TestDeployRetryAfterSecretUpdateReplays(t *testing.T) {
	co := apiCoordinator(t)
	admin := deployv1.NewSecretServiceClient(co.Conn)
	deploy := deployv1.NewDeployServiceClient(tokenConn(t, co, aclv1.Policy_POLICY_DEPLOY, "*"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := unique("retry")
	if _, err := admin.CreateSecret(ctx, &deployv1.CreateSecretRequest{Name: "db-" + name, Data: []byte("pw1"), Services: []string{name}}); err != nil {
		t.Fatal(err)
	}
	req := &deployv1.DeployRequest{Spec: mountingSpec(name, "db-"+name), RequestId: name, CreatedBy: "ci"}
	first, err := deploy.Deploy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdateSecret(ctx, &deployv1.UpdateSecretRequest{Name: "db-" + name, Data: []byte("pw2")}); err != nil {
		t.Fatal(err)
	}
	again, err := deploy.Deploy(ctx, req)
	if err != nil {
		t.Fatalf("retry after the secret update: %v, want a replay", err)
	}
	if !again.GetReplayed() || again.GetRelease().GetNumber() != first.GetRelease().GetNumber() || again.GetRelease().GetSpec().GetSecrets()[0].GetVersion() != 1 {
		t.Fatalf("retry = replayed %v, release %d pinning %d; want the replay of release %d pinning 1",
			again.GetReplayed(), again.GetRelease().GetNumber(), again.GetRelease().GetSpec().GetSecrets()[0].GetVersion(), first.GetRelease().GetNumber())
	}
	// Also after its scope no longer allows the service: the original
	// deploy was committed, so its retry answers it.
	if _, err := admin.UpdateSecret(ctx, &deployv1.UpdateSecretRequest{Name: "db-" + name, SetServices: true}); err != nil {
		t.Fatal(err)
	}
	if again, err := deploy.Deploy(ctx, req); err != nil || !again.GetReplayed() || again.GetRelease().GetNumber() != first.GetRelease().GetNumber() {
		t.Fatalf("retry after the scope was narrowed: %v, %v; want the replay of release %d", again, err, first.GetRelease().GetNumber())
	}
	fresh := proto.CloneOf(req)
	fresh.RequestId = name + "-2"
	if _, err := deploy.Deploy(ctx, fresh); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a new deploy after the scope was narrowed: %v, want INVALID_ARGUMENT", err)
	}
	changed := proto.CloneOf(req)
	changed.Spec.Image = "slipway/demo:v2"
	if _, err := deploy.Deploy(ctx, changed); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("another spec under the request id: %v, want ALREADY_EXISTS", err)
	}
}

// TestDeployExpectedRelease: a deploy conditional on the release it was
// based on is refused with FAILED_PRECONDITION (reason RELEASE_CHANGED,
// the current release in the metadata) when a deploy landed between the
// read and the deploy; of concurrent deploys based on the same release,
// exactly one is accepted (the condition is checked when raft applies
// the entry).
func TestDeployExpectedRelease(t *testing.T) {
	co := apiCoordinator(t)
	deploy := deployv1.NewDeployServiceClient(tokenConn(t, co, aclv1.Policy_POLICY_DEPLOY, "*"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := unique("cond")
	spec := func(image string) *deployv1.ServiceSpec {
		return &deployv1.ServiceSpec{Name: name, Image: image, Count: 1, Port: 8080}
	}
	if _, err := deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("slipway/demo:v1"), ExpectedRelease: proto.Uint64(0), CreatedBy: "ci"}); err != nil {
		t.Fatalf("deploy expecting no release of a new service: %v", err)
	}
	// A reads release 1; B deploys release 2; A's deploy based on 1 is refused.
	svc, err := deploy.GetService(ctx, &deployv1.GetServiceRequest{Name: name, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil {
		t.Fatal(err)
	}
	base := svc.GetService().GetLatestRelease()
	if _, err := deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("slipway/demo:v2"), Supersede: true, CreatedBy: "b"}); err != nil {
		t.Fatal(err)
	}
	_, err = deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: spec("slipway/demo:v3"), Supersede: true, ExpectedRelease: proto.Uint64(base), CreatedBy: "a"})
	reason, md := rpc.Reason(err)
	if status.Code(err) != codes.FailedPrecondition || reason != rpc.ReasonReleaseChanged || md[rpc.MetaCurrentRelease] != "2" || !strings.Contains(err.Error(), "latest is 2") {
		t.Fatalf("deploy based on release %d after release 2 landed: %v (reason %q, metadata %v), want FAILED_PRECONDITION RELEASE_CHANGED naming release 2", base, err, reason, md)
	}
	if svc, _ := deploy.GetService(ctx, &deployv1.GetServiceRequest{Name: name}); svc.GetService().GetLatestRelease() != 2 || svc.GetService().GetSpec().GetImage() != "slipway/demo:v2" {
		t.Fatalf("after the refusal: release %d of %s, want release 2 of v2", svc.GetService().GetLatestRelease(), svc.GetService().GetSpec().GetImage())
	}

	// Concurrent deploys based on release 2: one wins.
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: spec(fmt.Sprintf("slipway/demo:c%d", i)), Supersede: true, ExpectedRelease: proto.Uint64(2), CreatedBy: "race"})
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		if err == nil {
			won++
			continue
		}
		if reason, _ := rpc.Reason(err); reason != rpc.ReasonReleaseChanged {
			t.Errorf("deploy %d: %v, want accepted or RELEASE_CHANGED", i, errors.Unwrap(err))
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent deploys based on release 2 were accepted, want exactly 1", won, n)
	}
	if svc, _ := deploy.GetService(ctx, &deployv1.GetServiceRequest{Name: name}); svc.GetService().GetLatestRelease() != 3 {
		t.Fatalf("latest release %d after the race, want 3", svc.GetService().GetLatestRelease())
	}
}
