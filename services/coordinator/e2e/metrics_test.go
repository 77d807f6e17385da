package e2e_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/coordinator/notify"
	"slipway.dev/coordinator/server"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

var metricName = regexp.MustCompile(`\bslipway_[a-z0-9_]+`)

// namedMetrics returns the metric names the alert rules and the Grafana
// dashboard in deployments/ use, without the histogram suffixes.
func namedMetrics(t *testing.T) []string {
	t.Helper()
	root := testenv.RepoRoot(t)
	set := map[string]bool{}
	for _, f := range []string{"deployments/prometheus/slipway-alerts.yml", "deployments/grafana/slipway-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricName.FindAllString(string(b), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if strings.HasSuffix(m, "_seconds"+suffix) {
					m = strings.TrimSuffix(m, suffix)
				}
			}
			set[m] = true
		}
	}
	var out []string
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	if len(out) < 8 {
		t.Fatalf("only %d metrics named in the rules and the dashboard: %v", len(out), out)
	}
	return out
}

// scrape returns the metric families a /metrics endpoint exposes, read over
// mutual TLS with client (a scraper's certificate from the test CA).
func scrape(client *http.Client, addr string) (map[string]bool, error) {
	resp, err := client.Get("https://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		out[name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			out[strings.TrimSuffix(name, suffix)] = true
		}
	}
	return out, sc.Err()
}

// TestDashboardAndAlertMetricsExist runs a coordinator, a node agent and
// an edge in each mode, takes a release through an analysed canary under
// traffic, and checks that every metric the alert rules and the Grafana
// dashboard name is exported by one of them.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator, a node agent with Docker containers and two edges")
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		t.Skipf("nginx mode needs /usr/sbin/nginx with the Lua module (make tools): %v", err)
	}
	requireDocker(t)
	names := namedMetrics(t)
	c := testenv.StartConsul(t, testenv.ConsulACL())
	startAgent(t, c.Addr())
	coordMetrics := testenv.FreeAddr(t)
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(hook.Close)
	coord := coordtest.Start(t, c.Addr(), func(cfg *server.Config) {
		cfg.MetricsAddr = coordMetrics
		cfg.Notify = notify.Config{Targets: []notify.Target{{URL: hook.URL, Format: notify.JSON}}}
	})
	endpoints := []string{coordMetrics}
	var edges []*edge
	for _, mode := range []string{"proxy", "nginx"} {
		addr := testenv.FreeAddr(t)
		edges = append(edges, startEdge(t, c.Addr(), mode, "-metrics-addr", addr, "-coordinators", coord.Config.GRPCAddr, "-signals-interval", "500ms"))
		endpoints = append(endpoints, addr)
	}
	s := &scenario{t: t, deploy: coord.Deploy(), consul: c.AdminClient(t), name: unique("metrics")}
	v1 := s.deployCount("v1", 1, quick(&deployv1.UpdateStrategy{}))
	s.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	var traffic []*traffic
	for _, ed := range edges {
		tr := startTraffic(ed.httpAddr, s.name+".test", 2, 40)
		traffic = append(traffic, tr)
		t.Cleanup(tr.stop)
	}
	v2 := s.deployCount("v2", 1, quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, Canary: &deployv1.CanaryStrategy{
		Analysis: &deployv1.Analysis{Interval: durationpb.New(2 * time.Second), MinRequests: 1, NoData: deployv1.NoDataPolicy_NO_DATA_POLICY_PASS},
		Steps:    []*deployv1.CanaryStep{{Weight: 50, Pause: durationpb.New(2 * time.Second)}, {Weight: 100}}}}))
	s.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 120*time.Second)
	client := testenv.MetricsClient(t)
	testenv.Until(t, 60*time.Second, "every metric of the rules and the dashboard exported", func() string {
		seen := map[string]bool{}
		for _, ep := range endpoints {
			got, err := scrape(client, ep)
			if err != nil {
				return fmt.Sprintf("scrape %s: %v", ep, err)
			}
			for m := range got {
				seen[m] = true
			}
		}
		var missing []string
		for _, m := range names {
			if !seen[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("not exported: %v", missing)
		}
		return ""
	})
}

// The alert rules pass promtool check rules (Debian's prometheus
// package) and the dashboard is Grafana JSON whose every panel queries.
func TestAlertRulesAndDashboardAreValid(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skipf("promtool not installed (Debian's prometheus package; make tools): %v", err)
	}
	root := testenv.RepoRoot(t)
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(root, "deployments/prometheus/slipway-alerts.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// The example scrape configuration passes promtool check config with
	// its TLS files present: a CA and a metrics-role certificate, named as
	// slipctl tls cert create names them.
	conf, err := os.ReadFile(filepath.Join(root, "deployments/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.NewPKI(t)
	p.Issue(t, pki.RoleMetrics, "prometheus")
	if !strings.Contains(string(conf), "scheme: https") || !strings.Contains(string(conf), "/etc/slipway/tls/metrics-prometheus.pem") {
		t.Fatalf("deployments/prometheus/prometheus.yml does not scrape over HTTPS with the metrics-prometheus certificate")
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"prometheus.yml":     []byte(strings.ReplaceAll(string(conf), "/etc/slipway/tls", p.Path)),
		"slipway-alerts.yml": mustRead(t, filepath.Join(root, "deployments/prometheus/slipway-alerts.yml")),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config deployments/prometheus/prometheus.yml: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(root, "deployments/grafana/slipway-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard: %v (%d panels)", err, len(d.Panels))
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "slipway_") {
				t.Errorf("panel %q queries %q, no Slipway metric", p.Title, tg.Expr)
			}
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
