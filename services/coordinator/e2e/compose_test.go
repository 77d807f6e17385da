package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
)

// TestImportedComposeServiceDeploys imports one service of a Compose file
// with slipctl import compose (interpolating ${GREETING} from the
// environment, warning about the other service's key it cannot carry) and
// deploys the spec it wrote with slipctl deploy --wait to a real
// coordinator, Consul and a node agent running Docker: the rollout
// succeeds, both replicas pass their check (the Compose healthcheck's HTTP
// probe) in Consul, and an instance answers with the interpolated value.
func TestImportedComposeServiceDeploys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator and a node agent with Docker containers")
	}
	requireDocker(t)
	c := testenv.StartConsul(t, testenv.ConsulACL())
	startAgent(t, c.Addr())
	co := coordtest.Start(t, c.Addr(), nil)
	name := unique("compose")
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`services:
  %s:
    image: slipway/demo:${DEMO_TAG:-v1}
    ports: ["80:8080"]
    environment:
      - GREETING=${GREETING}
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost:8080/healthz"]
      interval: 500ms
      timeout: 500ms
    deploy:
      replicas: 2
      update_config: {parallelism: 1, order: start-first, failure_action: rollback}
    stop_grace_period: 2s
    depends_on: [db]
  db:
    image: postgres:16
    ports: ["5432"]
`, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	slipctl := testenv.BuildBinary(t, "./cli/cmd/slipctl")
	files := testenv.ProcessPKI(t).Files(t, pki.RoleClient, "test")
	env := append(os.Environ(), "GREETING=hello from compose", "SLIPWAY_ADDR="+co.Config.GRPCAddr, "SLIPWAY_TOKEN="+co.Secret,
		"SLIPWAY_TLS_CA="+files.CA, "SLIPWAY_TLS_CERT="+files.Cert, "SLIPWAY_TLS_KEY="+files.Key)
	out := filepath.Join(dir, "specs")
	cmd := exec.Command(slipctl, "import", "compose", file, "--service", name, "--out", out)
	cmd.Env = env
	b, err := cmd.CombinedOutput()
	t.Logf("slipctl import compose:\n%s", b)
	if err != nil {
		t.Fatalf("slipctl import compose: %v", err)
	}
	for _, want := range []string{"service " + name + ": depends_on: not imported", "wrote " + filepath.Join(out, name+".yaml")} {
		if !strings.Contains(string(b), want) {
			t.Errorf("import output lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "db.yaml")); err == nil {
		t.Error("db.yaml written though only --service " + name + " was asked for")
	}

	cmd = exec.Command(slipctl, "deploy", "-f", filepath.Join(out, name+".yaml"), "--wait", "--reason", "imported from compose")
	cmd.Env = env
	done := make(chan struct{})
	var deployOut []byte
	go func() { deployOut, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("slipctl deploy --wait still running after 120s:\n%s", deployOut)
	}
	t.Logf("slipctl deploy --wait:\n%s", deployOut)
	if err != nil {
		t.Fatalf("slipctl deploy --wait of the imported spec: %v", err)
	}

	admin := c.AdminClient(t)
	testenv.Until(t, 30*time.Second, "2 passing instances answering with the interpolated GREETING", func() string {
		entries, _, err := admin.Health().Service(name, catalog.Tag, true, nil)
		if err != nil {
			return err.Error()
		}
		if len(entries) != 2 {
			return fmt.Sprintf("%d passing instances", len(entries))
		}
		for _, en := range entries {
			resp, err := http.Get(fmt.Sprintf("http://%s:%d/", en.Service.Address, en.Service.Port))
			if err != nil {
				return err.Error()
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "hello from compose from v1") {
				return fmt.Sprintf("instance answered %q", body)
			}
		}
		return ""
	})
}
