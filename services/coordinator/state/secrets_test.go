package state_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/state"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

func putSecret(name string, version uint64) *statev1.Command {
	return &statev1.Command{Op: &statev1.Command_PutSecret{PutSecret: &statev1.PutSecretOp{Name: name, Version: &statev1.SecretVersionRecord{
		Meta: &deployv1.SecretVersion{Version: version, KeyId: "k1", Digest: "hmac-sha256:x", Size: 3}, Ciphertext: []byte("ct")}}}}
}

// TestSecretEntries: versions follow each other, a spec mounting a missing
// secret or version is refused by the FSM too, a mounted secret cannot be
// deleted, and a snapshot keeps the ciphertexts.
func TestSecretEntries(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(putSecret("db", 1)))
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
