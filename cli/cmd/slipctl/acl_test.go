package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

// TestSlipctlTokens runs slipctl against a coordinator with ACLs on (the
// default): without a token every call exits 6; acl bootstrap works once;
// a deploy token for web-* deploys web-1 but not api (the error names the
// missing permission); history names the token; revocation ends it.
func TestSlipctlTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coordinator")
	}
	coord := startCoordinator(t)
	bin := testenv.BuildBinary(t, "./cli/cmd/slipctl")
	anon := &cli{t: t, bin: bin, addr: coord.addr, env: coord.clientEnv}

	// GetLeader needs no token: wait for the leader with it.
	testenv.Eventually(t, 30*time.Second, "a raft leader", func() error {
		if r := anon.run("cluster", "leader", "--timeout", "1s"); r.code != 0 {
			return r.failed()
		}
		return nil
	})
	r := anon.must(6, "services")
	contains(t, "services without a token", r.stderr, "no token", "SLIPWAY_TOKEN")

	var boot struct {
		Token struct {
			AccessorID string `json:"accessorId"`
		} `json:"token"`
		Secret string `json:"secret"`
	}
	anon.mustJSON(&boot, "acl", "bootstrap")
	if len(boot.Secret) != 64 || boot.Token.AccessorID == "" {
		t.Fatalf("bootstrap -o json = %+v, want a 64-hex-digit secret and an accessor", boot)
	}
	r = anon.must(4, "acl", "bootstrap")
	contains(t, "second bootstrap", r.stderr, "bootstrapped already")
	admin := &cli{t: t, bin: bin, addr: coord.addr, env: append(append([]string{}, coord.clientEnv...), "SLIPWAY_TOKEN="+boot.Secret)}

	r = admin.must(0, "acl", "token", "create", "--policy", "deploy", "--service", "web-*", "--description", "ci")
	contains(t, "token create", r.stdout, "accessor:", "secret:", "policies:     deploy", "services:     web-*", "export SLIPWAY_TOKEN=")
	secret, acc := field(r.stdout, "secret:"), field(r.stdout, "accessor:")
	if len(secret) != 64 || acc == "" {
		t.Fatalf("token create printed secret %q, accessor %q:\n%s", secret, acc, r.stdout)
	}
	r = admin.must(2, "acl", "token", "create", "--policy", "deploy", "--description", "no globs")
	contains(t, "deploy token without globs", r.stderr, "at least one service glob")
	r = admin.must(0, "acl", "token", "list")
	contains(t, "token list", r.stdout, "ACCESSOR", acc, "ci", "deploy", "web-*", boot.Token.AccessorID, "bootstrap token", "admin")
	if strings.Contains(r.stdout, secret) {
		t.Fatal("token list shows a secret")
	}
	r = admin.must(0, "acl", "policy", "list")
	contains(t, "policy list", r.stdout, "deploy (scoped by service globs):", "/slipway.deploy.v1.DeployService/Deploy", "read:", "admin:")

	// The ci token, through --token (which wins over the environment's
	// admin token).
	dir := t.TempDir()
	writeSpec := func(name string) string {
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte("name: "+name+"\nimage: slipway/demo:v1\ncount: 1\nport: 8080\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r = admin.must(0, "acl", "token", "self", "--token", secret)
	contains(t, "token self", r.stdout, acc, "ci")
	r = admin.must(6, "deploy", "-f", writeSpec("api"), "--token", secret)
	contains(t, "deploy api with the ci token", r.stderr, `token "ci" (accessor `+acc[:8]+`…) lacks deploy on service "api"; it has deploy:web-*`)
	admin.must(0, "deploy", "-f", writeSpec("web-1"), "--token", secret, "--by", "pipeline")
	r = admin.must(0, "history", "web-1", "--token", secret)
	contains(t, "history", r.stdout, "pipeline (token "+acc[:8]+")", "deploy")
	r = admin.must(0, "services", "--token", secret)
	contains(t, "services with the ci token", r.stdout, "web-1")

	admin.must(0, "acl", "token", "revoke", acc)
	r = admin.must(6, "services", "--token", secret)
	contains(t, "services with the revoked token", r.stderr, "revoked")
	admin.must(3, "acl", "token", "revoke", acc)
}

// field returns the value after label on its line of out.
func field(out, label string) string {
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, label); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}
