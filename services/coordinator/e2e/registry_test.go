package e2e_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestReleaseFromRegistry deploys an image the node does not have from a
// real registry on loopback (distribution, basic auth, behind a proxy
// sending 512 kB/s so that the pull takes a few seconds). The node agent
// pulls it with the credentials of its -registry-auth-file; the pull's
// progress shows in the rollout's events and the release succeeds. A
// release from the same registry under a user the registry refuses fails
// with the agent's words naming the registry.
func TestReleaseFromRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a registry, a coordinator and a node agent with Docker")
	}
	requireDocker(t)
	reg := testenv.StartRegistry(t, "ci", "s3cret")
	repo := fmt.Sprintf("slipway-test/e2e-%d", os.Getpid())
	reg.Push(t, "slipway/demo:v1", repo+":v1")
	slow := testenv.ThrottledProxy(t, reg.Addr, 512<<10)
	ref := slow + "/" + repo + ":v1"
	t.Cleanup(func() {
		testenv.RemoveImageRefs("*/" + repo)
	})
	// The demo's layer is on this Engine already (slipway/demo:v1), so the
	// pull fetches the manifest and config only; the download progress of
	// layers is tested in the node agent's docker package.
	auth := filepath.Join(t.TempDir(), "auth.json")
	entry := func(host, user, pass string) string {
		return fmt.Sprintf("%q: {%q: %q}", host, "auth", base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
	if err := os.WriteFile(auth, []byte(`{"auths": {`+entry(slow, "ci", "s3cret")+`, `+entry(reg.Addr, "ci", "wrong")+`}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testenv.StartConsul(t, testenv.ConsulACL())
	startAgentWith(t, c.Addr(), "-registry-auth-file", auth, "-pull-timeout", "1m")
	s := &scenario{t: t, deploy: startCoordinator(t, c.Addr()), consul: c.AdminClient(t), name: unique("reg")}
	deploy := func(image string) string {
		var id string
		s.rpc("deploy "+image, func(ctx context.Context) error {
			resp, err := s.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{
				Name: s.name, Image: image, Count: 1, Port: 8080,
				Check:       &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(500 * time.Millisecond), Timeout: durationpb.New(500 * time.Millisecond)},
				KillTimeout: durationpb.New(time.Second),
				Update:      quick(&deployv1.UpdateStrategy{}),
			}, RequestId: s.name + "/" + image, CreatedBy: "e2e", Supersede: true})
			id = resp.GetRollout().GetId()
			return err
		})
		return id
	}
	events := func(id string) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := s.deploy.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for {
			ev, err := stream.Recv()
			if err != nil {
				return out
			}
			out = append(out, ev.GetEvent().GetKind()+": "+ev.GetEvent().GetMessage())
		}
	}

	id := deploy(ref)
	s.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	evs := events(id)
	var pulls []string
	for _, e := range evs {
		if strings.HasPrefix(e, "pulling: ") {
			pulls = append(pulls, e)
		}
	}
	t.Logf("pull events: %q", pulls)
	if len(pulls) == 0 || !strings.Contains(pulls[0], "from registry "+slow) {
		t.Errorf("no pulling event naming the registry %s among %q", slow, evs)
	}

	// The same image straight from the registry, whose entry in the file
	// has a wrong password.
	bad := reg.Addr + "/" + repo + ":v1"
	_ = exec.Command("docker", "rmi", "-f", bad).Run()
	id = deploy(bad)
	ro := s.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_FAILED, 90*time.Second)
	want := fmt.Sprintf("registry %s refused the credentials of user %q from %s", reg.Addr, "ci", auth)
	if !strings.Contains(ro.GetMessage(), want) {
		t.Errorf("rollout message %q, want the agent's reason %q", ro.GetMessage(), want)
	}
}
