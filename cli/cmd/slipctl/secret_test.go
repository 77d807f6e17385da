package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

// TestSlipctlSecretScopes drives slipctl secret against a real coordinator
// with a keyring (made by slipway-coordinator keyring init): create with
// --service globs, list and show display them, a plan and a deploy of a
// service the scope does not allow are refused (exit 2) naming the secret
// and the service at the spec's line, update --service alone widens the scope without a new version,
// and the deploy is then accepted.
func TestSlipctlSecretScopes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coordinator")
	}
	kfile := filepath.Join(t.TempDir(), "keyring.json")
	init := exec.Command(testenv.BuildBinary(t, "./services/coordinator/cmd/slipway-coordinator"), "keyring", "init", "-file", kfile)
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("keyring init: %v\n%s", err, out)
	}
	coord := startCoordinator(t, "-keyring-file", kfile)
	c := &cli{t: t, bin: testenv.BuildBinary(t, "./cli/cmd/slipctl"), addr: coord.addr, env: coord.clientEnv}
	testenv.Eventually(t, 30*time.Second, "a raft leader", func() error {
		if r := c.run("cluster", "leader", "--timeout", "1s"); r.code != 0 {
			return r.failed()
		}
		return nil
	})
	var boot struct {
		Secret string `json:"secret"`
	}
	c.mustJSON(&boot, "acl", "bootstrap")
	c.env = append(c.env, "SLIPWAY_TOKEN="+boot.Secret)

	r := c.must(0, "secret", "create", "db", "--from-literal", "hunter2", "--service", "shop", "--service", "shop-*")
	contains(t, "secret create", r.stdout, "may be mounted by: shop, shop-*")
	r = c.must(0, "secret", "create", "loose", "--from-literal", "x")
	contains(t, "secret create without --service", r.stderr, "may be mounted by no service")
	r = c.must(0, "secret", "list")
	contains(t, "secret list", r.stdout, "SERVICES", "shop,shop-*", "none")

	spec := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(spec, []byte("name: web\nimage: slipway/demo:v1\ncount: 1\nport: 8080\nsecrets: [{name: db}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = c.must(2, "plan", "-f", spec)
	contains(t, "plan of a service outside the scope", r.stderr, "web.yaml:5: secrets[0].name", `secret "db" may not be mounted by service "web"`)
	r = c.must(2, "deploy", "-f", spec)
	contains(t, "deploy of a service outside the scope", r.stderr, "web.yaml:5: secrets[0].name", `secret "db" may not be mounted by service "web"`,
		"it allows shop, shop-*", "slipctl secret update db --service shop --service 'shop-*' --service web")

	r = c.must(0, "secret", "update", "db", "--service", "shop,web")
	contains(t, "secret update --service", r.stdout, "version 1", "may be mounted by: shop, web")
	c.must(0, "plan", "-f", spec)
	c.must(0, "deploy", "-f", spec)
	r = c.must(0, "secret", "show", "db")
	contains(t, "secret show", r.stdout, "used by: web", "may be mounted by: shop, web")
	r = c.must(0, "secret", "update", "db", "--no-service")
	contains(t, "secret update --no-service", r.stdout, "may be mounted by: no service", "outside its scope: web")
}
