package nginx

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/edge/internal/abuse"
	"slipway.dev/edge/routetable"
	"slipway.dev/platform/testenv"
)

// TestAbuseCorpus sends each smuggling and abuse case to nginx mode and
// checks the client's answer and what reaches the backend.
func TestAbuseCorpus(t *testing.T) {
	r, listen := startRunner(t)
	be := abuse.StartBackend(t)
	if err := r.Apply(context.Background(), tableFor(map[string]routetable.Upstream{abuse.Host: {ID: "a", Address: be.Addr}})); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "nginx routes "+abuse.Host, func() error {
		if code, body := fetch(listen, abuse.Host); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	for _, c := range abuse.Cases {
		t.Run(c.Name, func(t *testing.T) {
			want := c.Proxy
			if c.Nginx != nil {
				want = *c.Nginx
			}
			if err := abuse.Check(listen, be, c, want); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestAccessLogNamesServiceAndRelease: with the access log on, each line
// names the route's service and release (the Lua sets those variables only
// then).
func TestAccessLogNamesServiceAndRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real nginx")
	}
	dir, listen := t.TempDir(), testenv.FreeAddr(t)
	r, err := New(Config{Dir: dir, Listen: listen, ControlAddr: testenv.FreeAddr(t), Workers: 1, AccessLog: true,
		WorkerShutdownTimeout: 5 * time.Second, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); r.Wait() })
	if err := r.Apply(context.Background(), tableFor(map[string]routetable.Upstream{"logged": backend(t, "a")})); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an access log line with service and release", func() error {
		fetch(listen, "logged")
		b, _ := os.ReadFile(filepath.Join(dir, "logs", "access.log"))
		if !strings.Contains(string(b), "service=logged release=1") {
			return fmt.Errorf("access log %q", b)
		}
		return nil
	})
}
