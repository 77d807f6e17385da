package docker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/docker"
	"slipway.dev/nodeagent/internal/nodetest"
	"slipway.dev/platform/testenv"
)

// progress records what the driver reports about pulls.
type progress struct {
	mu   sync.Mutex
	msgs []string
}

func (p *progress) add(_, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msg)
}

func (p *progress) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.msgs...)
}

// TestPullFromRegistry pulls a FROM-scratch demo image from a real registry
// on loopback (distribution, basic auth) through the real Docker Engine:
// with the right credentials it runs and the pull's progress is reported;
// a wrong password, no credentials and a pull slower than the pull timeout
// each fail with an error naming the registry and the cause.
func TestPullFromRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry and pulls through the Docker Engine")
	}
	nodetest.ImagesDir(t) // builds slipway/demo:v1..v4 into the Docker Engine when missing
	reg := testenv.StartRegistry(t, "ci", "s3cret")
	repo := fmt.Sprintf("slipway-test/pull-%d", os.Getpid())
	ref := reg.Push(t, "slipway/demo:v1", repo+":v1")
	cli, err := docker.Dial(context.Background(), 5*time.Second)
	if err != nil {
		t.Skipf("Docker Engine: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	node := fmt.Sprintf("pulltest-%d", os.Getpid())
	t.Cleanup(func() {
		// The containers and the pulled images of this test only.
		if out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=slipway.node="+node).Output(); len(out) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f"}, strings.Fields(string(out))...)...).Run()
		}
		testenv.RemoveImageRefs("*/" + repo)
	})
	authFile := func(user, pass string, hosts ...string) string {
		var entries []string
		for _, h := range hosts {
			entries = append(entries, fmt.Sprintf("%q: {%q: %q}", h, "auth", base64.StdEncoding.EncodeToString([]byte(user+":"+pass))))
		}
		p := filepath.Join(t.TempDir(), "auth.json")
		if err := os.WriteFile(p, []byte(`{"auths": {`+strings.Join(entries, ", ")+`}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	forget := func(ref string) { _ = exec.Command("docker", "rmi", "-f", ref).Run() }
	spec := func(id, image string) allocation.Spec {
		return allocation.Spec{ID: id, NodeID: node, Service: "pull", Release: 1, Image: image, Port: 8080, MemoryMB: 64}
	}
	start := func(d *docker.Driver, s allocation.Spec) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		inst, err := d.Start(ctx, s)
		if err == nil {
			if err := d.Stop(ctx, inst, time.Second); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
		return err
	}

	t.Run("with credentials", func(t *testing.T) {
		forget(ref)
		var p progress
		d := docker.New(cli, node, "127.0.0.1", nil, docker.WithRegistryAuthFile(authFile("ci", "s3cret", reg.Addr)))
		d.OnProgress(p.add)
		if err := start(d, spec("ok", ref)); err != nil {
			t.Fatalf("start from the registry: %v", err)
		}
		msgs := p.all()
		t.Logf("progress: %q", msgs)
		if len(msgs) < 2 || !strings.HasPrefix(msgs[0], "pulling "+ref+" from registry "+reg.Addr) ||
			!strings.HasPrefix(msgs[len(msgs)-1], "pulled "+ref+" from registry "+reg.Addr+" in ") {
			t.Errorf("progress %q, want the pull's start and end naming the registry", msgs)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		forget(ref)
		file := authFile("ci", "wrong", reg.Addr)
		d := docker.New(cli, node, "127.0.0.1", nil, docker.WithRegistryAuthFile(file))
		err := start(d, spec("badpw", ref))
		want := fmt.Sprintf("registry %s refused the credentials of user %q from %s", reg.Addr, "ci", file)
		if !errors.Is(err, docker.ErrImageMissing) || err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("start = %v, want ErrImageMissing saying %q", err, want)
		}
		t.Logf("wrong password: %v", err)
	})

	t.Run("no credentials", func(t *testing.T) {
		forget(ref)
		d := docker.New(cli, node, "127.0.0.1", nil)
		err := start(d, spec("nocreds", ref))
		want := fmt.Sprintf("registry %s asks for credentials and the agent has none for it", reg.Addr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("start = %v, want %q", err, want)
		}
	})

	// The same registry behind a proxy sending 64 kB/s: the pull reports
	// its progress, and a pull timeout shorter than the pull fails it.
	slow := testenv.ThrottledProxy(t, reg.Addr, 64<<10)
	reg.PushRandom(t, repo+":random", 1<<20) // 1 MiB no Engine has: 16s at 64 kB/s
	slowRef := slow + "/" + repo + ":random"
	t.Run("slow pull times out", func(t *testing.T) {
		forget(slowRef)
		var p progress
		d := docker.New(cli, node, "127.0.0.1", nil, docker.WithRegistryAuthFile(authFile("ci", "s3cret", slow)),
			docker.WithPullTimeout(3*time.Second))
		d.OnProgress(p.add)
		err := start(d, spec("slow", slowRef))
		want := fmt.Sprintf("could not be pulled: registry %s: the pull did not finish within the pull timeout 3s (-pull-timeout)", slow)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("start = %v, want %q", err, want)
		}
		var during []string
		for _, m := range p.all() {
			if strings.Contains(m, " of ") && strings.Contains(m, "layers downloaded") {
				during = append(during, m)
			}
		}
		t.Logf("progress while pulling: %q", during)
		if len(during) == 0 {
			t.Errorf("no progress reported during a 3s pull: %q", p.all())
		}
	})

	t.Run("slow pull succeeds", func(t *testing.T) {
		faster := testenv.ThrottledProxy(t, reg.Addr, 400<<10)
		reg.PushRandom(t, repo+":random2", 1<<20) // about 2.5s at 400 kB/s
		ref := faster + "/" + repo + ":random2"
		var p progress
		d := docker.New(cli, node, "127.0.0.1", nil, docker.WithRegistryAuthFile(authFile("ci", "s3cret", faster)),
			docker.WithPullTimeout(time.Minute))
		d.OnProgress(p.add)
		err := start(d, spec("slowok", ref))
		// The image has no command: it is pulled, then refused by the
		// Engine at create or start; the pull itself must have finished.
		msgs := p.all()
		t.Logf("start: %v; progress: %q", err, msgs)
		if len(msgs) < 3 || !strings.HasPrefix(msgs[len(msgs)-1], "pulled "+ref) || !strings.Contains(strings.Join(msgs, "\n"), "layers downloaded") {
			t.Errorf("progress %q, want updates while downloading and the end of the pull", msgs)
		}
	})
}
