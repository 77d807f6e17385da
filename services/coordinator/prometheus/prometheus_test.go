package prometheus

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/telemetry"
	"slipway.dev/platform/testenv"
)

// startPrometheus runs a real Prometheus (Debian's package) scraping
// https://target/metrics every second over mutual TLS, as
// deployments/prometheus/prometheus.yml does: tls_config with the CA and a
// scraper's (role metrics) certificate and key from p. It returns its base
// URL.
func startPrometheus(t *testing.T, target string, p *testenv.PKI) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (make tools)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	scraper := p.Files(t, pki.RoleMetrics, "prometheus")
	conf := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: demo
    scheme: https
    tls_config: {ca_file: %q, cert_file: %q, key_file: %q}
    static_configs: [{targets: [%q]}]
`, scraper.CA, scraper.Cert, scraper.Key, target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b[max(0, len(b)-4000):])
		}
	})
	base := "http://" + addr
	// Prometheus answers 503 to queries until it is ready; wait for that
	// here so a test's first query is judged on its result.
	testenv.Eventually(t, 60*time.Second, "prometheus ready", func() error {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	return base
}

func TestAskAgainstRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus")
	}
	reg := promclient.NewRegistry()
	ratio := promclient.NewGaugeVec(promclient.GaugeOpts{Name: "slipway_test_error_ratio", Help: "test"}, []string{"service", "release"})
	reg.MustRegister(ratio)
	ratio.WithLabelValues("web", "2").Set(0.05)
	ratio.WithLabelValues("web", "1").Set(0.001)
	// The target is a Slipway metrics listener as every component runs it:
	// HTTPS, a client certificate from the CA required.
	p := testenv.NewPKI(t)
	target, err := telemetry.ServeMetrics("127.0.0.1:0", reg, p.Creds(t, pki.RoleCoordinator, "c1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close(context.Background()) })
	addr := startPrometheus(t, target.Addr(), p)

	ctx := context.Background()
	vars := Vars{Service: "web", Canary: 2, Stable: 1}
	limit := 0.01
	q := analysis.PromQuery{Name: "errors", Address: addr, Query: `slipway_test_error_ratio{service="{{service}}",release="{{canary}}"}`, Max: &limit, Timeout: 5 * time.Second}
	var g analysis.Gate
	testenv.Eventually(t, 60*time.Second, "prometheus scraped the target", func() error {
		if g = Ask(ctx, q, vars, time.Now()); strings.Contains(g.Detail, "series") || strings.Contains(g.Detail, "connection refused") {
			return fmt.Errorf("%s", g.Detail)
		}
		return nil
	})
	if g.Passed || !strings.Contains(g.Detail, "= 0.05, above max 0.01") {
		t.Errorf("canary at 5%% errors against max 0.01: %+v", g)
	}
	q.Query = `slipway_test_error_ratio{release="{{stable}}"}`
	if g := Ask(ctx, q, vars, time.Now()); !g.Passed {
		t.Errorf("stable at 0.1%% against max 0.01: %+v", g)
	}
	q.Query = `sum(slipway_test_error_ratio)`
	floor := 0.1
	q.Max, q.Min = nil, &floor
	if g := Ask(ctx, q, vars, time.Now()); g.Passed || !strings.Contains(g.Detail, "below min 0.1") {
		t.Errorf("sum 0.051 against min 0.1: %+v", g)
	}
	q.Query = `slipway_test_error_ratio`
	if g := Ask(ctx, q, vars, time.Now()); g.Passed || !strings.Contains(g.Detail, "returned 2 series") {
		t.Errorf("two series: %+v", g)
	}
	q.Query = `slipway_test_error_ratio{`
	if g := Ask(ctx, q, vars, time.Now()); g.Passed || g.Detail == "" {
		t.Errorf("bad PromQL: %+v", g)
	}
}
