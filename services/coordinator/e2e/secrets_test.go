package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/coordinator/keyring"
	"slipway.dev/coordinator/server"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// secretImage is the demo built from this tree's sources (with its
// SERVE_FILES endpoint) by buildDemoImage.
const secretImage = "slipway/demo:s1"

func randomValue(t *testing.T, prefix string) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// serviceContainer returns the id and host port of the one running
// container of release rel of service.
func serviceContainer(t *testing.T, service string, rel uint64) (string, string) {
	t.Helper()
	var id, port string
	testenv.Until(t, 30*time.Second, "container of "+service, func() string {
		out, err := exec.Command("docker", "ps", "-q", "--filter", "label=slipway.service="+service, "--filter", fmt.Sprintf("label=slipway.release=%d", rel)).Output()
		if err != nil {
			return err.Error()
		}
		ids := strings.Fields(string(out))
		if len(ids) != 1 {
			return fmt.Sprintf("%d containers", len(ids))
		}
		p, err := exec.Command("docker", "port", ids[0], "8080/tcp").Output()
		if err != nil {
			return err.Error()
		}
		id, port = ids[0], strings.TrimSpace(strings.Split(string(p), "\n")[0])
		port = port[strings.LastIndexByte(port, ':')+1:]
		return ""
	})
	return id, port
}

func getFile(t *testing.T, port, name string) string {
	t.Helper()
	var body string
	testenv.Until(t, 10*time.Second, "GET /files/"+name, func() string {
		resp, err := http.Get("http://127.0.0.1:" + port + "/files/" + name)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		body = string(b)
		return ""
	})
	return body
}

// grepDir returns the files under dir that hold value.
func grepDir(t *testing.T, dir, value string) []string {
	t.Helper()
	var hits []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(value)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestSecretMountedInContainerOnly runs a real coordinator with a keyring,
// Consul and a node agent with Docker. A secret and a config created
// through SecretService are readable inside the container at their targets,
// and nowhere else: not in docker inspect (env, labels, anything), not in
// any read of the coordinator's API, not in clear in the raft data dir nor
// the agent's state. Updating the secret with redeploy rolls out a new
// release that reads the new value, and the old instance's secret
// directory is removed with it.
func TestSecretMountedInContainerOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator and a node agent with Docker containers")
	}
	requireDocker(t)
	buildDemoImage(t, "s1", "purple")
	c := testenv.StartConsul(t, testenv.ConsulACL())

	secretsDir := filepath.Join("/dev/shm", unique("slipway-secrets"))
	t.Cleanup(func() { os.RemoveAll(secretsDir) })
	agentData := t.TempDir()
	startAgentWith(t, c.Addr(), "-secrets-dir", secretsDir, "-data-dir", agentData)

	kfile := filepath.Join(t.TempDir(), "keyring.json")
	if _, err := keyring.Init(kfile); err != nil {
		t.Fatal(err)
	}
	co := coordtest.Start(t, c.Addr(), func(cfg *server.Config) { cfg.KeyringFile = kfile })
	s := &scenario{t: t, deploy: co.Deploy(), consul: c.AdminClient(t), name: unique("sec")}
	secrets := deployv1.NewSecretServiceClient(co.Conn)

	v1, v2, conf := randomValue(t, "pw1"), randomValue(t, "pw2"), randomValue(t, "conf")
	s.rpc("create secret", func(ctx context.Context) error {
		_, err := secrets.CreateSecret(ctx, &deployv1.CreateSecretRequest{Name: "db-" + s.name, Data: []byte(v1), Services: []string{s.name}})
		return err
	})
	s.rpc("create config", func(ctx context.Context) error {
		_, err := secrets.CreateSecret(ctx, &deployv1.CreateSecretRequest{Kind: deployv1.SecretKind_SECRET_KIND_CONFIG, Name: "app.conf", Data: []byte(conf), Services: []string{"*"}})
		return err
	})
	spec := &deployv1.ServiceSpec{
		Name: s.name, Image: secretImage, Count: 1, Port: 8080, Env: map[string]string{"SERVE_FILES": "/run/secrets"},
		Check:   &deployv1.HealthCheck{Http: "/healthz"},
		Secrets: []*deployv1.FileMount{{Name: "db-" + s.name, Target: "/run/secrets/db"}},
		Configs: []*deployv1.FileMount{{Name: "app.conf", Target: "/run/secrets/app.conf", Mode: 0o444}},
		Update:  quick(&deployv1.UpdateStrategy{}),
	}
	// An unknown secret is refused at the API, naming it.
	s.rpc("deploy with an unknown secret", func(ctx context.Context) error {
		bad := proto.CloneOf(spec)
		bad.Secrets[0].Name = "nope"
		_, err := s.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: bad, CreatedBy: "e2e"})
		if err == nil || !strings.Contains(err.Error(), `secret \"nope\" does not exist`) && !strings.Contains(err.Error(), `secret "nope" does not exist`) {
			return fmt.Errorf("deploy with an unknown secret: %v, want INVALID_ARGUMENT naming it", err)
		}
		return nil
	})
	var id string
	s.rpc("deploy", func(ctx context.Context) error {
		resp, err := s.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: spec, RequestId: s.name, CreatedBy: "e2e"})
		id = resp.GetRollout().GetId()
		if v := resp.GetRelease().GetSpec().GetSecrets()[0].GetVersion(); err == nil && v != 1 {
			return fmt.Errorf("release pinned version %d, want 1", v)
		}
		return err
	})
	s.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	ctr, port := serviceContainer(t, s.name, 1)
	if got := getFile(t, port, "db"); got != v1 {
		t.Fatalf("secret in the container = %q, want %q", got, v1)
	}
	if got := getFile(t, port, "app.conf"); got != conf {
		t.Fatalf("config in the container = %q, want %q", got, conf)
	}

	// Nowhere else: docker inspect (env, labels, mounts: all of it).
	insp, err := exec.Command("docker", "inspect", ctr).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{v1, conf} {
		if bytes.Contains(insp, []byte(v)) {
			t.Errorf("docker inspect shows the value %q", v)
		}
	}
	if !bytes.Contains(insp, []byte(`"Destination": "/run/secrets/db"`)) {
		t.Errorf("docker inspect shows no bind mount at /run/secrets/db:\n%s", insp)
	}
	// The API's reads.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var reads []proto.Message
	for _, call := range []func() (proto.Message, error){
		func() (proto.Message, error) {
			return s.deploy.GetService(ctx, &deployv1.GetServiceRequest{Name: s.name})
		},
		func() (proto.Message, error) {
			return s.deploy.ListReleases(ctx, &deployv1.ListReleasesRequest{Service: s.name})
		},
		func() (proto.Message, error) { return s.deploy.GetRollout(ctx, &deployv1.GetRolloutRequest{Id: id}) },
		func() (proto.Message, error) { return secrets.ListSecrets(ctx, &deployv1.ListSecretsRequest{}) },
		func() (proto.Message, error) {
			return secrets.ListSecrets(ctx, &deployv1.ListSecretsRequest{Kind: deployv1.SecretKind_SECRET_KIND_CONFIG})
		},
		func() (proto.Message, error) {
			return secrets.GetSecret(ctx, &deployv1.GetSecretRequest{Name: "db-" + s.name})
		},
	} {
		m, err := call()
		if err != nil {
			t.Fatal(err)
		}
		reads = append(reads, m)
	}
	for _, m := range reads {
		b, _ := protojson.Marshal(m)
		raw, _ := proto.Marshal(m)
		for _, v := range []string{v1, conf} {
			if bytes.Contains(b, []byte(v)) || bytes.Contains(raw, []byte(v)) {
				t.Errorf("%T shows the value %q", m, v)
			}
		}
	}
	// The raft data dir and the agent's state dir hold no value in clear.
	for _, dir := range []string{co.Config.DataDir, agentData} {
		for _, v := range []string{v1, conf} {
			if hits := grepDir(t, dir, v); len(hits) > 0 {
				t.Errorf("the value %q is in clear in %v", v, hits)
			}
		}
	}

	// Rotation: a new version, redeployed as a new release.
	var upd *deployv1.UpdateSecretResponse
	s.rpc("update secret", func(ctx context.Context) error {
		var err error
		upd, err = secrets.UpdateSecret(ctx, &deployv1.UpdateSecretRequest{Name: "db-" + s.name, Data: []byte(v2), Redeploy: true})
		return err
	})
	if len(upd.GetReleases()) != 1 || upd.GetReleases()[0].GetNumber() != 2 || upd.GetSecret().GetVersion() != 2 {
		t.Fatalf("update: secret version %d, releases %v; want version 2 and release 2 of %s", upd.GetSecret().GetVersion(), upd.GetReleases(), s.name)
	}
	if v := upd.GetReleases()[0].GetSpec().GetSecrets()[0].GetVersion(); v != 2 {
		t.Fatalf("release 2 pins version %d of the secret, want 2", v)
	}
	s.waitState(fmt.Sprintf("%s-2", s.name), deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	_, port2 := serviceContainer(t, s.name, 2)
	if got := getFile(t, port2, "db"); got != v2 {
		t.Fatalf("secret after rotation = %q, want %q", got, v2)
	}
	// The old instance stopped: its secret directory went with it.
	testenv.Until(t, 30*time.Second, "one secret directory left", func() string {
		ents, err := os.ReadDir(secretsDir)
		if err != nil {
			return err.Error()
		}
		if len(ents) != 1 || !strings.Contains(ents[0].Name(), "-v2-") {
			names := make([]string, len(ents))
			for i, e := range ents {
				names[i] = e.Name()
			}
			return fmt.Sprintf("secret dirs %v", names)
		}
		return ""
	})
	if hits := grepDir(t, co.Config.DataDir, v2); len(hits) > 0 {
		t.Errorf("the new value is in clear in %v", hits)
	}
	// In use: the secret cannot be deleted.
	s.rpc("delete in use", func(ctx context.Context) error {
		_, err := secrets.DeleteSecret(ctx, &deployv1.DeleteSecretRequest{Name: "db-" + s.name})
		if err == nil || !strings.Contains(err.Error(), s.name) {
			return fmt.Errorf("delete of a mounted secret: %v, want FAILED_PRECONDITION naming %s", err, s.name)
		}
		return nil
	})
}
