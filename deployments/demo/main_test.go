package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigFromEnvRejectsBadValues(t *testing.T) {
	for _, tc := range []map[string]string{
		{"PORT": "0"}, {"PORT": "x"}, {"FAIL_HEALTH": "maybe"}, {"HEALTH_FAIL_AFTER": "soon"},
		{"ERROR_RATE": "101"}, {"ERROR_RATE": "NaN"}, {"LATENCY": "-1s"}, {"LATENCY": "slow"},
	} {
		if _, err := configFromEnv(env(tc)); err == nil {
			t.Errorf("configFromEnv(%v) = nil error, want one", tc)
		}
	}
}

func TestHandlerReportsVersionAndHealth(t *testing.T) {
	cfg, err := configFromEnv(env(map[string]string{"VERSION": "v2", "COLOUR": "green"}))
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(cfg, time.Now())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if got := rec.Header().Get("X-Slipway-Version"); got != "v2" {
		t.Errorf("version header = %q, want v2", got)
	}
	if !strings.Contains(rec.Body.String(), "v2 (green)") {
		t.Errorf("body = %q, want it to name v2 (green)", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("healthz = %d, want 200", rec.Code)
	}

	cfg.failHealth = true
	rec = httptest.NewRecorder()
	newHandler(cfg, time.Now()).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("healthz with FAIL_HEALTH = %d, want 503", rec.Code)
	}
}

func TestHealthcheckProbesHealthz(t *testing.T) {
	for _, fail := range []bool{false, true} {
		cfg, _ := configFromEnv(env(map[string]string{}))
		cfg.failHealth = fail
		srv := httptest.NewServer(newHandler(cfg, time.Now()))
		port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
		err := healthcheck(env(map[string]string{"PORT": port}))
		srv.Close()
		if (err != nil) != fail {
			t.Errorf("failHealth=%v: healthcheck() = %v", fail, err)
		}
	}
}

// ERROR_RATE answers exactly that share of requests with 500, spread
// evenly, while /healthz passes.
func TestErrorRate(t *testing.T) {
	cfg, err := configFromEnv(env(map[string]string{"VERSION": "v5", "ERROR_RATE": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(cfg, time.Now())
	failed := 0
	for i := 0; i < 200; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code == http.StatusInternalServerError {
			failed++
			if rec.Header().Get("X-Slipway-Version") != "v5" {
				t.Error("a failed answer does not name its version")
			}
		}
	}
	if failed != 10 {
		t.Errorf("%d of 200 requests failed, want 10 (5%%)", failed)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("healthz = %d with ERROR_RATE, want 200", rec.Code)
	}
}

// LATENCY_FILE's duration is read again once it changes (within 100ms);
// missing or garbage means no extra delay.
func TestLatencyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latency")
	f := &fileLatency{path: path}
	now := time.Now()
	if d := f.get(now); d != 0 {
		t.Errorf("missing file: %s, want 0", d)
	}
	if err := os.WriteFile(path, []byte("150ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := f.get(now.Add(50 * time.Millisecond)); d != 0 {
		t.Errorf("re-read within 100ms: %s, want the cached 0", d)
	}
	if d := f.get(now.Add(200 * time.Millisecond)); d != 150*time.Millisecond {
		t.Errorf("after 100ms: %s, want 150ms", d)
	}
	if err := os.WriteFile(path, []byte("slow"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := f.get(now.Add(400 * time.Millisecond)); d != 0 {
		t.Errorf("garbage: %s, want 0", d)
	}
}

// A build with -X main.errorRate=4 (the guide's v5) answers 4% with 500
// unless ERROR_RATE says otherwise.
func TestBakedErrorRate(t *testing.T) {
	defer func(old string) { errorRate = old }(errorRate)
	errorRate = "4"
	cfg, err := configFromEnv(env(map[string]string{}))
	if err != nil || cfg.errorRate != 4 {
		t.Fatalf("baked 4: %v %v", cfg.errorRate, err)
	}
	cfg, err = configFromEnv(env(map[string]string{"ERROR_RATE": "0"}))
	if err != nil || cfg.errorRate != 0 {
		t.Fatalf("ERROR_RATE=0 over baked 4: %v %v", cfg.errorRate, err)
	}
}

func TestServeFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "db"), []byte("hunter2"), 0o400); err != nil {
		t.Fatal(err)
	}
	c, err := configFromEnv(func(k string) string {
		if k == "SERVE_FILES" {
			return dir
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(c, time.Now())
	// "/files/.." is cleaned by the mux into a redirect, never served.
	for path, want := range map[string]int{"/files/db": 200, "/files/missing": 404, "/files/..": 307} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d, want %d", path, rec.Code, want)
		}
		if path == "/files/db" && rec.Body.String() != "hunter2" {
			t.Errorf("GET %s: %q", path, rec.Body.String())
		}
	}
	if _, err := configFromEnv(func(k string) string {
		if k == "SERVE_FILES" {
			return "relative"
		}
		return ""
	}); err == nil {
		t.Error("a relative SERVE_FILES was accepted")
	}
}

// TestHealthFailFor: with HEALTH_FAIL_FOR /healthz fails that long after
// start only.
func TestHealthFailFor(t *testing.T) {
	cfg, err := configFromEnv(env(map[string]string{"HEALTH_FAIL_FOR": "1h"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		started time.Time
		want    int
	}{{time.Now(), http.StatusServiceUnavailable}, {time.Now().Add(-2 * time.Hour), http.StatusOK}} {
		rec := httptest.NewRecorder()
		newHandler(cfg, c.started).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != c.want {
			t.Errorf("healthz started %s ago = %d, want %d", time.Since(c.started).Round(time.Hour), rec.Code, c.want)
		}
	}
	if _, err := configFromEnv(env(map[string]string{"HEALTH_FAIL_FOR": "soon"})); err == nil {
		t.Error("HEALTH_FAIL_FOR=soon accepted")
	}
}

// TestMetricsPort: METRICS_PORT (or PORT_METRICS) configures the second
// port, whose handler counts the app's requests and serves /healthz; the
// app port does not serve /metrics.
func TestMetricsPort(t *testing.T) {
	c, err := configFromEnv(env(map[string]string{"PORT_METRICS": "9100"}))
	if err != nil || c.metricsPort != 9100 {
		t.Fatalf("PORT_METRICS: port %d, %v", c.metricsPort, err)
	}
	c, err = configFromEnv(env(map[string]string{"METRICS_PORT": "9200", "PORT_METRICS": "9100"}))
	if err != nil || c.metricsPort != 9200 {
		t.Fatalf("METRICS_PORT first: port %d, %v", c.metricsPort, err)
	}
	for _, bad := range []string{"x", "0", "8080"} {
		if _, err := configFromEnv(env(map[string]string{"METRICS_PORT": bad})); err == nil {
			t.Errorf("METRICS_PORT=%s accepted", bad)
		}
	}
	app, metrics := newHandlers(c, time.Now())
	for range 3 {
		app.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	rec := httptest.NewRecorder()
	metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `demo_requests_total{version="dev",colour="none"} 3`; rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics = %d %q, want %s", rec.Code, rec.Body.String(), want)
	}
	rec = httptest.NewRecorder()
	metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("metrics /healthz = %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(rec.Body.String(), "demo_requests_total") {
		t.Errorf("the app port serves metrics: %q", rec.Body.String())
	}
}
