package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestVolumeDataSurvivesARelease runs a real coordinator, Consul and a
// node agent with Docker. The demo writes a line per start into STATE_DIR,
// a named volume of the service: after a rolling update from v1 to v2 the
// v2 instance reads v1's line from the same volume, which the agent
// created once (labelled with the node, service and volume) and kept; a
// read-only volume is mounted read-only; the spec's entrypoint, stop
// signal and labels are the container's.
func TestVolumeDataSurvivesARelease(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator and a node agent with Docker containers")
	}
	requireDocker(t)
	name := unique("vol")
	// Registered first, so it runs last: after the agent's containers
	// are gone, their volumes can be removed.
	t.Cleanup(func() {
		out, _ := exec.Command("docker", "volume", "ls", "-q", "--filter", "label=slipway.service="+name).Output()
		for _, v := range strings.Fields(string(out)) {
			if out, err := exec.Command("docker", "volume", "rm", "-f", v).CombinedOutput(); err != nil {
				t.Logf("cleanup: docker volume rm %s: %v %s", v, err, out)
			}
		}
	})
	c := testenv.StartConsul(t, testenv.ConsulACL())
	node := startAgent(t, c.Addr())
	s := &scenario{t: t, deploy: startCoordinator(t, c.Addr()), consul: c.AdminClient(t), name: name}
	deploy := func(version string) string {
		var id string
		s.rpc("deploy "+version, func(ctx context.Context) error {
			resp, err := s.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{
				Name: s.name, Image: "slipway/demo:" + version, Count: 1, Port: 8080,
				Env: map[string]string{"STATE_DIR": "/data"},
				Check: &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(500 * time.Millisecond),
					Timeout: durationpb.New(500 * time.Millisecond)},
				KillTimeout: durationpb.New(2 * time.Second),
				Volumes:     []*deployv1.VolumeMount{{Name: "data", Target: "/data"}, {Name: "seed", Target: "/seed", ReadOnly: true}},
				Entrypoint:  []string{"/demo"}, Labels: map[string]string{"team": "notes"}, StopSignal: "SIGINT",
				Update: quick(&deployv1.UpdateStrategy{}),
			}, RequestId: s.name + "/" + version, CreatedBy: "e2e"})
			id = resp.GetRollout().GetId()
			return err
		})
		return id
	}
	state := func(release uint64) string {
		var body string
		testenv.Until(t, 30*time.Second, fmt.Sprintf("/state of release %d", release), func() string {
			entries, _, err := s.consul.Health().Service(s.name, catalog.Tag, true, nil)
			if err != nil {
				return err.Error()
			}
			for _, en := range entries {
				if r, err := catalog.ReleaseFromTags(en.Service.Tags); err != nil || r != release {
					continue
				}
				resp, err := http.Get(fmt.Sprintf("http://%s:%d/state", en.Service.Address, en.Service.Port))
				if err != nil {
					return err.Error()
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
				return ""
			}
			return "no passing instance"
		})
		return body
	}

	s.waitState(deploy("v1"), deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	if got := state(1); got != "started v1\n" {
		t.Fatalf("v1's /state = %q, want its own start", got)
	}
	s.waitState(deploy("v2"), deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	if got := state(2); got != "started v1\nstarted v2\n" {
		t.Fatalf("v2's /state = %q, want v1's start kept in the volume, then v2's", got)
	}

	out, err := exec.Command("docker", "volume", "ls", "-q", "--filter", "label=slipway.service="+s.name, "--filter", "label=slipway.node="+node).Output()
	if err != nil {
		t.Fatal(err)
	}
	vols := strings.Fields(string(out))
	if want := []string{"slipway-" + node + "-" + s.name + "-data", "slipway-" + node + "-" + s.name + "-seed"}; strings.Join(vols, " ") != strings.Join(want, " ") {
		t.Errorf("docker volumes %v, want %v", vols, want)
	}
	var ids []byte
	testenv.Until(t, 30*time.Second, "v1's container stopped", func() string {
		var err error
		ids, err = exec.Command("docker", "ps", "-q", "--filter", "label=slipway.service="+s.name).Output()
		if err != nil || len(strings.Fields(string(ids))) != 1 {
			return fmt.Sprintf("running containers %q %v", ids, err)
		}
		return ""
	})
	mounts, err := exec.Command("docker", "inspect", "-f", `{{range .Mounts}}{{.Name}}:{{.Destination}}:{{.RW}} {{end}}`, strings.TrimSpace(string(ids))).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-data:/data:true", "-seed:/seed:false"} {
		if !strings.Contains(string(mounts), want) {
			t.Errorf("mounts %q lack %q", mounts, want)
		}
	}
	// The spec's container fields reach Docker.
	cfg, err := exec.Command("docker", "inspect", "-f", `{{json .Config.Entrypoint}} {{.Config.StopSignal}} {{index .Config.Labels "team"}}`, strings.TrimSpace(string(ids))).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(cfg)); got != `["/demo"] SIGINT notes` {
		t.Errorf("entrypoint, stop signal, label = %q, want [\"/demo\"] SIGINT notes", got)
	}
}
