package state_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/state"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// putSecret stores version of secret name; on a create, services are its
// scope.
func putSecret(name string, version uint64, services ...string) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Name: name, Services: services, Version: &statev1.SecretVersionRecord{
		Meta: &deployv1.SecretVersion{Version: version, KeyId: "k1", Digest: "hmac-sha256:x", Size: 3}, Ciphertext: []byte("ct")}}}}
}

// scopeSecret replaces the scope of secret name (no new version).
func scopeSecret(name string, services ...string) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Name: name, SetServices: true, Services: services, By: "acc-admin"}}}
}

// mounting is spec name mounting secret db, unversioned.
func mounting(name, image string) *deployv1.ServiceSpec {
	s := spec(name, image)
	s.Secrets = []*deployv1.FileMount{{Name: "db", Target: "/run/secrets/db", Mode: 0o400}}
	return s
}

// older re-encodes e as an entry of schema version v.
func older(t *testing.T, e *raft.Log, v uint32) *raft.Log {
	t.Helper()
	cmd := &statev1.Command{}
	if err := proto.Unmarshal(e.Data, cmd); err != nil {
		t.Fatal(err)
	}
	cmd.Version = v
	b, err := state.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	e.Data = b
	return e
}

func scopeError(t *testing.T, err error, field string, names ...string) {
	t.Helper()
	var me *state.MountError
	if !errors.Is(err, state.ErrSecretScope) || !errors.As(err, &me) || me.Field != field {
		t.Fatalf("got %v, want a MountError on %s wrapping ErrSecretScope", err, field)
	}
	for _, n := range names {
		if !strings.Contains(me.Description, n) {
			t.Errorf("%q does not name %s", me.Description, n)
		}
	}
}

// TestSecretScope: a secret is mounted only by the services its globs
// match; one created without services by none; a narrowed scope refuses
// the next deploy and a rollback, while the releases made before keep
// their pinned versions; a secret created by an entry older than scopes
// (or read from an older snapshot) may be mounted by every service.
func TestSecretScope(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(putSecret("db", 1, "shop", "shop-*")))
	if got, _ := f.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "db"); !slices.Equal(got.GetServices(), []string{"shop", "shop-*"}) {
		t.Fatalf("services = %v", got.GetServices())
	}
	scopeError(t, applyErr(f, l.add(deploy(mounting("web", "slipway/demo:v1"), "w1", false))), "spec.secrets[0].name", `"web"`, `"db"`, "shop, shop-*")
	if _, err := f.Service("web"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("refused deploy left service web: %v", err)
	}
	res := apply(t, f, l.add(deploy(mounting("shop-eu", "slipway/demo:v1"), "s1", false))).(state.DeployResult)
	if v := res.Release.GetSpec().GetSecrets()[0].GetVersion(); v != 1 {
		t.Fatalf("unversioned mount pinned to %d, want 1 (the latest when applied)", v)
	}
	// A config of the same name is another record: not allowed by db's scope.
	s := mounting("shop", "slipway/demo:v1")
	s.Configs, s.Secrets = s.Secrets, nil
	if err := applyErr(f, l.add(deploy(s, "c1", false))); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("config db: %v, want ErrNotFound", err)
	}

	// Narrowed: the next deploy of shop-eu is refused, a rollback too.
	apply(t, f, l.add(putSecret("db", 2)))
	apply(t, f, l.add(deploy(mounting("shop-eu", "slipway/demo:v2"), "s2", true)))
	apply(t, f, l.add(scopeSecret("db", "shop")))
	scopeError(t, applyErr(f, l.add(deploy(mounting("shop-eu", "slipway/demo:v3"), "s3", true))), "spec.secrets[0].name", `"shop-eu"`, "shop")
	scopeError(t, applyErr(f, l.add(rollback("shop-eu", 1, "s4", true))), "spec.secrets[0].name", `"shop-eu"`)
	rels, _, err := f.Releases("shop-eu", 0)
	if err != nil || len(rels) != 2 || rels[0].GetSpec().GetSecrets()[0].GetVersion() != 2 || rels[1].GetSpec().GetSecrets()[0].GetVersion() != 1 {
		t.Fatalf("releases of shop-eu = %v, %v; want 2 releases pinning versions 2 and 1", rels, err)
	}
	if got, _ := f.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "db"); !slices.Equal(got.GetUsedBy(), []string{"shop-eu"}) {
		t.Fatalf("used_by = %v: the latest release of shop-eu still mounts it", got.GetUsedBy())
	}
	apply(t, f, l.add(deploy(mounting("shop", "slipway/demo:v1"), "p1", false)))
	// A bad glob is refused whole.
	if err := applyErr(f, l.add(scopeSecret("db", "ok", "[bad"))); !errors.Is(err, state.ErrInvalid) || !strings.Contains(err.Error(), "services[1]") {
		t.Fatalf("bad glob: %v, want ErrInvalid naming services[1]", err)
	}
	if got, _ := f.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "db"); !slices.Equal(got.GetServices(), []string{"shop"}) {
		t.Fatalf("services after a refused change = %v", got.GetServices())
	}

	// No services: no service may mount it.
	apply(t, f, l.add(putSecret("none", 1)))
	s = spec("shop", "slipway/demo:v2")
	s.Secrets = []*deployv1.FileMount{{Name: "none", Target: "/run/secrets/none"}}
	scopeError(t, applyErr(f, l.add(deploy(s, "n1", true))), "spec.secrets[0].name", "no service")
	apply(t, f, l.add(scopeSecret("none", "*")))
	apply(t, f, l.add(deploy(s, "n2", true)))

	// Older entries: created for every service, deploys unchecked.
	g := state.New()
	ol := &log{tb: t}
	apply(t, g, older(t, ol.add(putSecret("db", 1)), 6))
	if got, _ := g.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "db"); !slices.Equal(got.GetServices(), []string{"*"}) {
		t.Fatalf("secret of a version 6 entry: services %v, want [*]", got.GetServices())
	}
	if err := applyErr(g, older(t, ol.add(scopeSecret("db", "x")), 6)); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("scope change in a version 6 entry: %v, want ErrInvalid", err)
	}
	apply(t, g, l.add(deploy(mounting("anything", "slipway/demo:v1"), "a1", false)))
}

// TestSecretScopeOfOlderSnapshot: a snapshot written before scopes
// restores its secrets for every service.
func TestSecretScopeOfOlderSnapshot(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(putSecret("db", 1)))
	b, err := f.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap := &statev1.Snapshot{}
	if err := proto.Unmarshal(b, snap); err != nil {
		t.Fatal(err)
	}
	snap.Version = 6
	b, _ = proto.Marshal(snap)
	g := state.New()
	if err := g.RestoreBytes(b); err != nil {
		t.Fatal(err)
	}
	if got, _ := g.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "db"); !slices.Equal(got.GetServices(), []string{"*"}) {
		t.Fatalf("secret of a version 6 snapshot: services %v, want [*]", got.GetServices())
	}
	h := state.New()
	if err := h.RestoreBytes(mustSnapshot(t, f)); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "db"); len(got.GetServices()) != 0 {
		t.Fatalf("secret of a current snapshot: services %v, want none", got.GetServices())
	}
}

func mustSnapshot(t *testing.T, f *state.FSM) []byte {
	t.Helper()
	b, err := f.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeployRetryAfterSecretUpdate: a deploy retried with its request id
// after the secret it mounts unversioned got a new version replays (the
// spec is compared as sent, not as pinned); a retry that differs in what
// it sent (another version, another image) is refused.
func TestDeployRetryAfterSecretUpdate(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(putSecret("db", 1, "web")))
	first := apply(t, f, l.add(deploy(mounting("web", "slipway/demo:v1"), "r1", false))).(state.DeployResult)
	apply(t, f, l.add(putSecret("db", 2)))
	again := apply(t, f, l.add(deploy(mounting("web", "slipway/demo:v1"), "r1", false))).(state.DeployResult)
	if !again.Replayed || again.Release.GetNumber() != first.Release.GetNumber() || again.Release.GetSpec().GetSecrets()[0].GetVersion() != 1 {
		t.Fatalf("retry after the update = %+v, want a replay of release 1 pinned to version 1", again)
	}
	pinned := mounting("web", "slipway/demo:v1")
	pinned.Secrets[0].Version = 1 // what was pinned, but not what was sent
	for name, s := range map[string]*deployv1.ServiceSpec{"explicit version": pinned, "other image": mounting("web", "slipway/demo:v2")} {
		if err := applyErr(f, l.add(deploy(s, "r1", false))); !errors.Is(err, state.ErrRequestReused) {
			t.Errorf("retry with %s: %v, want ErrRequestReused", name, err)
		}
	}
	// The record survives a snapshot.
	g := state.New()
	if err := g.RestoreBytes(mustSnapshot(t, f)); err != nil {
		t.Fatal(err)
	}
	if res := apply(t, g, l.add(deploy(mounting("web", "slipway/demo:v1"), "r1", false))).(state.DeployResult); !res.Replayed {
		t.Fatalf("retry on a restored state: %+v, want a replay", res)
	}
}

// TestDeployExpectedRelease: a deploy naming the release it was based on
// is refused, with the current release, once another deploy landed; a
// retry of an accepted one still replays.
func TestDeployExpectedRelease(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	expect := func(cmd *statev1.Command, n uint64) *statev1.Command {
		cmd.GetDeploy().ExpectedRelease = proto.Uint64(n)
		return cmd
	}
	var rc *state.ReleaseChangedError
	if err := applyErr(f, l.add(expect(deploy(spec("web", "slipway/demo:v1"), "r0", false), 1))); !errors.As(err, &rc) || rc.Current != 0 || rc.Expected != 1 {
		t.Fatalf("expected 1 of a new service: %v", err)
	}
	apply(t, f, l.add(expect(deploy(spec("web", "slipway/demo:v1"), "r1", false), 0)))
	apply(t, f, l.add(expect(deploy(spec("web", "slipway/demo:v2"), "r2", true), 1)))
	err := applyErr(f, l.add(expect(deploy(spec("web", "slipway/demo:v3"), "r3", true), 1)))
	if !errors.Is(err, state.ErrReleaseChanged) || !errors.As(err, &rc) || rc.Current != 2 || !strings.Contains(err.Error(), "latest is 2") {
		t.Fatalf("stale expected_release: %v, want ErrReleaseChanged naming release 2", err)
	}
	if svc, _ := f.Service("web"); svc.GetLatestRelease() != 2 {
		t.Fatalf("latest release %d after a refused deploy, want 2", svc.GetLatestRelease())
	}
	if res := apply(t, f, l.add(expect(deploy(spec("web", "slipway/demo:v2"), "r2", true), 1))).(state.DeployResult); !res.Replayed {
		t.Fatalf("retry of r2: %+v, want a replay", res)
	}
}

// TestSecretEntries: versions follow each other, a spec mounting a missing
// secret or version is refused by the FSM too, a mounted secret cannot be
// deleted, and a snapshot keeps the ciphertexts.
func TestSecretEntries(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(putSecret("db", 1, "web")))
	if err := applyErr(f, l.add(putSecret("db", 1))); !errors.Is(err, state.ErrSecretExists) {
		t.Fatalf("second create: %v, want ErrSecretExists", err)
	}
	if err := applyErr(f, l.add(putSecret("db", 3))); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("version 3 after 1: %v, want ErrInvalid", err)
	}
	if err := applyErr(f, l.add(putSecret("other", 2))); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("update of a missing secret: %v, want ErrNotFound", err)
	}
	apply(t, f, l.add(putSecret("db", 2)))

	s := spec("web", "slipway/demo:v1")
	s.Secrets = []*deployv1.FileMount{{Name: "db", Target: "/run/secrets/db", Mode: 0o400, Version: 9}}
	if err := applyErr(f, l.add(deploy(s, "r1", false))); !errors.Is(err, state.ErrNotFound) || !strings.Contains(err.Error(), "no version 9") {
		t.Fatalf("deploy of a missing version: %v", err)
	}
	s = proto.CloneOf(s)
	s.Secrets[0].Version = 2
	apply(t, f, l.add(deploy(s, "r2", false)))
	if err := applyErr(f, l.add(&statev1.Command{Op: &statev1.Command_DeleteSecret{DeleteSecret: &statev1.DeleteSecretOp{Name: "db"}}})); !errors.Is(err, state.ErrSecretInUse) || !strings.Contains(err.Error(), "web") {
		t.Fatalf("delete of a mounted secret: %v, want ErrSecretInUse naming web", err)
	}
	got, err := f.Secret(deployv1.SecretKind_SECRET_KIND_UNSPECIFIED, "db")
	if err != nil || got.GetVersion() != 2 || len(got.GetVersions()) != 2 || len(got.GetUsedBy()) != 1 {
		t.Fatalf("Secret(db) = %v, %v", got, err)
	}
	b, err := f.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := state.New()
	if err := g.RestoreBytes(b); err != nil {
		t.Fatal(err)
	}
	if v, err := g.SecretVersion(deployv1.SecretKind_SECRET_KIND_SECRET, "db", 2); err != nil || string(v.GetCiphertext()) != "ct" {
		t.Fatalf("restored version 2: %v, %v", v, err)
	}
	// An entry of an older schema version cannot carry a secret op.
	old := putSecret("x", 1)
	e := l.add(old)
	old.Version = 3
	e.Data, _ = state.EncodeCommand(old)
	if err := applyErr(f, e); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("secret entry of version 3: %v, want ErrInvalid", err)
	}
}

// TestSecretVersionsPruned: storing a version keeps the newest
// SecretVersionsKept versions and any older one a release pins (here
// version 2, mounted by release 1 of shop); the rest are deleted by the
// entry itself, so every replica agrees, and replaying the same entries
// gives the same versions. Entries older than the pruning schema version
// keep every version, as they did.
func TestSecretVersionsPruned(t *testing.T) {
	versions := func(f *state.FSM) []uint64 {
		t.Helper()
		s, err := f.Secret(deployv1.SecretKind_SECRET_KIND_SECRET, "db")
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, v := range s.GetVersions() {
			out = append(out, v.GetVersion())
		}
		return out
	}
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(putSecret("db", 1, "shop")))
	apply(t, f, l.add(putSecret("db", 2)))
	apply(t, f, l.add(deploy(mounting("shop", "slipway/demo:v1"), "p1", false))) // pins version 2
	for n := uint64(3); n <= 9; n++ {
		apply(t, f, l.add(putSecret("db", n)))
	}
	want := []uint64{2, 5, 6, 7, 8, 9}
	if got := versions(f); !slices.Equal(got, want) {
		t.Fatalf("versions %v, want %v (the %d newest and the pinned 2)", got, want, state.SecretVersionsKept)
	}
	// Pruned versions are gone for deploys too, with a clear error.
	s := mounting("shop", "slipway/demo:v2")
	s.Secrets[0].Version = 3
	if err := applyErr(f, l.add(deploy(s, "p2", true))); !errors.Is(err, state.ErrNotFound) || !strings.Contains(err.Error(), "no version 3") {
		t.Fatalf("deploy pinning pruned version 3: %v, want ErrNotFound naming it", err)
	}
	// A replica replaying the log reaches the same versions.
	g := state.New()
	for _, e := range l.entries {
		g.Apply(e)
	}
	if got := versions(g); !slices.Equal(got, want) {
		t.Fatalf("replayed: versions %v, want %v", got, want)
	}
	// Older entries do not prune.
	o := state.New()
	ol := &log{tb: t}
	for n := uint64(1); n <= 9; n++ {
		apply(t, o, older(t, ol.add(putSecret("db", n, "shop")), 7))
	}
	if got := versions(o); len(got) != 9 {
		t.Fatalf("version 7 entries: versions %v, want all 9 kept", got)
	}
}
