package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/nodeagent/internal/nodetest"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
)

// TestAgentNeedsItsConsulToken runs the real agent against Consul with ACLs
// on and default deny: without a token it is refused and says which policy
// and flags it needs, and it never appears in Consul; with a token of
// deployments/consul/nodeagent.hcl in -consul-token-file it registers and
// passes.
func TestAgentNeedsItsConsulToken(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real agent process and Consul; skipped by -short")
	}
	if os.Getenv("CONSUL_HTTP_TOKEN") != "" || os.Getenv("CONSUL_HTTP_TOKEN_FILE") != "" {
		t.Skip("the environment gives every process a Consul token")
	}
	t.Parallel()
	bin := testenv.BuildBinary(t, "./services/nodeagent/cmd/slipway-nodeagent")
	c := testenv.StartConsul(t, testenv.ConsulACL())
	admin := c.AdminClient(t)
	run := func(node string, extra ...string) *agentProc {
		p := &agentProc{t: t, bin: bin, log: filepath.Join(t.TempDir(), "agent.log"), args: append([]string{
			"-node-id", node, "-grpc-addr", testenv.FreeAddr(t), "-consul-addr", c.Addr(), "-driver", "process",
			"-process-dir", t.TempDir(), "-data-dir", t.TempDir(),
		}, append(testenv.TLSFlags(t, pki.RoleNodeAgent, node), extra...)...)}
		p.start()
		t.Cleanup(func() {
			p.kill()
			if t.Failed() {
				b, _ := os.ReadFile(p.log)
				t.Logf("agent %s log:\n%s", node, b)
			}
		})
		return p
	}
	registered := func(node string) (string, error) {
		checks, _, err := admin.Health().Checks(catalog.AgentService, nil)
		if err != nil {
			return "", err
		}
		for _, ch := range checks {
			if ch.ServiceID == catalog.AgentServiceID(node) {
				return ch.Status, nil
			}
		}
		return "", nil
	}

	anon := nodetest.NodeID(t)
	p := run(anon)
	testenv.Eventually(t, 20*time.Second, "the refusal logged with the policy to give", func() error {
		b, _ := os.ReadFile(p.log)
		for _, want := range []string{"refused by Consul ACLs", "deployments/consul/nodeagent.hcl", "-consul-token-file", "service:write",
			"no Consul token"} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("log lacks %q", want)
			}
		}
		return nil
	})
	if st, err := registered(anon); err != nil || st != "" {
		t.Fatalf("agent without a token registered: %q, %v", st, err)
	}

	tokenFile := filepath.Join(t.TempDir(), "consul-token")
	if err := os.WriteFile(tokenFile, []byte(c.ComponentToken(t, "nodeagent")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	named := nodetest.NodeID(t)
	q := run(named, "-consul-token-file", tokenFile)
	testenv.Eventually(t, 20*time.Second, "the agent with its token registered and passing", func() error {
		st, err := registered(named)
		if err != nil {
			return err
		}
		if st != "passing" {
			return errors.New("status " + st)
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, "the token it runs as logged", func() error {
		if b, _ := os.ReadFile(q.log); !strings.Contains(string(b), "policies test-slipway-nodeagent") {
			return errors.New("no 'consul token' line naming its policy")
		}
		return nil
	})
}
