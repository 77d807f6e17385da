package state_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"slipway.dev/coordinator/state"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

func tokenRecord(accessor, secret, desc string, policies ...aclv1.Policy) *statev1.TokenRecord {
	sum := sha256.Sum256([]byte(secret))
	return &statev1.TokenRecord{
		Token:        &aclv1.Token{AccessorId: accessor, Description: desc, Policies: policies, Services: []string{"web-*"}},
		SecretSha256: sum[:],
	}
}

func bootstrapCmd(rec *statev1.TokenRecord) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_AclBootstrap{AclBootstrap: &statev1.AclBootstrapOp{Token: rec}}}
}

func createTokenCmd(rec *statev1.TokenRecord, by string) *statev1.Command {
	rec.Token.CreatedBy = by
	return &statev1.Command{Op: &statev1.Command_CreateToken{CreateToken: &statev1.CreateTokenOp{Token: rec}}}
}

func revokeCmd(accessor, by string) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_RevokeToken{RevokeToken: &statev1.RevokeTokenOp{AccessorId: accessor, By: by}}}
}

func TestACLBootstrapOnce(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	if f.ACLBootstrapped() {
		t.Fatal("a new FSM is bootstrapped")
	}
	res := apply(t, f, l.add(bootstrapCmd(tokenRecord("acc-admin", "s3cret-admin", "bootstrap token", aclv1.Policy_POLICY_ADMIN)))).(state.TokenResult)
	if res.Token.GetAccessorId() != "acc-admin" || res.Token.GetCreatedAt() == nil {
		t.Fatalf("bootstrap result %v: want the token with its commit time", res.Token)
	}
	if !f.ACLBootstrapped() {
		t.Fatal("not bootstrapped after the bootstrap entry")
	}
	// A second bootstrap is refused, and refused again once the first
	// token is revoked: bootstrap works once per cluster.
	err := applyErr(f, l.add(bootstrapCmd(tokenRecord("acc-2", "other", "again", aclv1.Policy_POLICY_ADMIN))))
	if !errors.Is(err, state.ErrACLBootstrapped) {
		t.Fatalf("second bootstrap: %v, want ErrACLBootstrapped", err)
	}
	apply(t, f, l.add(revokeCmd("acc-admin", "acc-admin")))
	if err := applyErr(f, l.add(bootstrapCmd(tokenRecord("acc-3", "other3", "again", aclv1.Policy_POLICY_ADMIN)))); !errors.Is(err, state.ErrACLBootstrapped) {
		t.Fatalf("bootstrap after revoking the first token: %v, want ErrACLBootstrapped", err)
	}
	if got := len(f.Tokens()); got != 0 {
		t.Fatalf("%d tokens after the refused bootstraps, want 0", got)
	}
}

func TestTokenHashStoredNotSecret(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	const secret = "0123456789abcdef-the-secret-itself"
	apply(t, f, l.add(bootstrapCmd(tokenRecord("acc-admin", "admin-secret", "bootstrap token", aclv1.Policy_POLICY_ADMIN))))
	apply(t, f, l.add(createTokenCmd(tokenRecord("acc-ci", secret, "ci", aclv1.Policy_POLICY_DEPLOY), "acc-admin")))

	snap, err := f.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range l.entries {
		if bytes.Contains(e.Data, []byte(secret)) {
			t.Fatalf("log entry %d holds the secret", e.Index)
		}
	}
	if bytes.Contains(snap, []byte(secret)) {
		t.Fatal("the snapshot holds the secret")
	}
	sum := sha256.Sum256([]byte(secret))
	if !bytes.Contains(snap, sum[:]) {
		t.Fatal("the snapshot does not hold the secret's SHA-256")
	}
	tok, ok := f.TokenBySecretHash(sum)
	if !ok || tok.GetAccessorId() != "acc-ci" || tok.GetCreatedBy() != "acc-admin" {
		t.Fatalf("TokenBySecretHash = %v, %v; want acc-ci created by acc-admin", tok, ok)
	}
	if _, ok := f.TokenBySecretHash(sha256.Sum256([]byte("wrong"))); ok {
		t.Fatal("a wrong secret found a token")
	}

	// The snapshot restores tokens, their hash index and the bootstrap mark.
	g := state.New()
	if err := g.RestoreBytes(snap); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(f.Tokens(), g.Tokens(), protocmp.Transform()); d != "" {
		t.Errorf("tokens differ after restore (-orig +restored):\n%s", d)
	}
	if _, ok := g.TokenBySecretHash(sum); !ok || !g.ACLBootstrapped() {
		t.Fatal("restored FSM lost the hash index or the bootstrap mark")
	}
}

func TestRevokeToken(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(bootstrapCmd(tokenRecord("acc-admin", "admin-secret", "bootstrap token", aclv1.Policy_POLICY_ADMIN))))
	apply(t, f, l.add(createTokenCmd(tokenRecord("acc-ci", "ci-secret", "ci", aclv1.Policy_POLICY_DEPLOY), "acc-admin")))
	changed := f.Changed()
	res := apply(t, f, l.add(revokeCmd("acc-ci", "acc-admin"))).(state.TokenResult)
	select {
	case <-changed:
	default:
		t.Fatal("revocation did not signal a change")
	}
	if res.Token.GetDescription() != "ci" {
		t.Fatalf("revoke result %v, want the revoked token", res.Token)
	}
	if _, ok := f.TokenBySecretHash(sha256.Sum256([]byte("ci-secret"))); ok {
		t.Fatal("a revoked token's secret still finds it")
	}
	if !f.SecretRevoked(sha256.Sum256([]byte("ci-secret"))) || f.SecretRevoked(sha256.Sum256([]byte("admin-secret"))) {
		t.Fatal("SecretRevoked does not tell the revoked secret from the live one")
	}
	snap, _ := f.MarshalSnapshot()
	g := state.New()
	if err := g.RestoreBytes(snap); err != nil || !g.SecretRevoked(sha256.Sum256([]byte("ci-secret"))) {
		t.Fatalf("restored FSM forgot the revocation (%v)", err)
	}
	// A revoked secret cannot come back as a new token.
	if err := applyErr(f, l.add(createTokenCmd(tokenRecord("acc-again", "ci-secret", "again", aclv1.Policy_POLICY_READ), "acc-admin"))); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("re-used revoked secret: %v, want ErrInvalid", err)
	}
	if f.HasToken("acc-ci") {
		t.Fatal("HasToken after revoke")
	}
	if err := applyErr(f, l.add(revokeCmd("acc-ci", "acc-admin"))); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("revoking twice: %v, want ErrNotFound", err)
	}
	// Re-using an accessor or a secret is refused (the leader draws both).
	if err := applyErr(f, l.add(createTokenCmd(tokenRecord("acc-admin", "x", "dup", aclv1.Policy_POLICY_READ), "acc-admin"))); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("duplicate accessor: %v, want ErrInvalid", err)
	}
	if err := applyErr(f, l.add(createTokenCmd(tokenRecord("acc-new", "admin-secret", "dup", aclv1.Policy_POLICY_READ), "acc-admin"))); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("duplicate secret: %v, want ErrInvalid", err)
	}
	bad := tokenRecord("acc-bad", "y", "short hash", aclv1.Policy_POLICY_READ)
	bad.SecretSha256 = bad.SecretSha256[:8]
	if err := applyErr(f, l.add(createTokenCmd(bad, "acc-admin"))); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("short hash: %v, want ErrInvalid", err)
	}
}

// Every audit entry written for a caller names the caller's token accessor.
func TestAuditNamesAccessor(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(&statev1.Command{Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{
		Spec: spec("web", "slipway/demo:v1"), RequestId: "r1", CreatedBy: "ci", AccessorId: "acc-ci"}}}))
	apply(t, f, l.add(&statev1.Command{Op: &statev1.Command_Operator{Operator: &statev1.OperatorOp{
		RolloutId: "web-1", Kind: deployv1.CommandKind_COMMAND_KIND_PAUSE, By: "alice", AccessorId: "acc-ops"}}}))
	apply(t, f, l.add(&statev1.Command{Op: &statev1.Command_Rollback{Rollback: &statev1.RollbackOp{
		Service: "web", ToRelease: 1, RequestId: "r2", Supersede: true, By: "bob", AccessorId: "acc-ops"}}}))
	_, audit, err := f.Releases("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range audit {
		got = append(got, a.GetAction()+"="+a.GetAccessorId())
	}
	want := []string{"rollback=acc-ops", "pause=acc-ops", "deploy=acc-ci"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("audit accessors (-want +got):\n%s", d)
	}
	// Releases and operator commands name the accessor too.
	rels, _, _ := f.Releases("web", 0)
	if len(rels) != 2 || rels[0].GetAccessorId() != "acc-ops" || rels[1].GetAccessorId() != "acc-ci" {
		t.Errorf("release accessors: %v", rels)
	}
	ro, _ := f.Rollout("web-1")
	if cmds := ro.GetCommands(); len(cmds) != 1 || cmds[0].GetAccessorId() != "acc-ops" {
		t.Errorf("operator command accessors: %v", cmds)
	}
	// Token management is audited too (about no service), with the accessor
	// of the token that asked.
	apply(t, f, l.add(bootstrapCmd(tokenRecord("acc-admin", "a", "bootstrap token", aclv1.Policy_POLICY_ADMIN))))
	apply(t, f, l.add(createTokenCmd(tokenRecord("acc-ci", "b", "ci", aclv1.Policy_POLICY_DEPLOY), "acc-admin")))
	apply(t, f, l.add(revokeCmd("acc-ci", "acc-admin")))
	snap, _ := f.MarshalSnapshot()
	s := &statev1.Snapshot{}
	if err := protoUnmarshal(snap, s); err != nil {
		t.Fatal(err)
	}
	var acl []string
	for _, a := range s.GetAudit() {
		if a.GetService() == "" {
			acl = append(acl, a.GetAction()+"="+a.GetAccessorId())
			if a.GetAction() == "token create" && !strings.Contains(a.GetDetail(), "deploy on web-*") {
				t.Errorf("token create detail %q does not name the grants", a.GetDetail())
			}
		}
	}
	if d := cmp.Diff([]string{"acl bootstrap=acc-admin", "token create=acc-admin", "token revoke=acc-admin"}, acl); d != "" {
		t.Errorf("token audit (-want +got):\n%s", d)
	}
}

func protoUnmarshal(b []byte, m *statev1.Snapshot) error { return proto.Unmarshal(b, m) }
