// Command demo is the tiny HTTP service Slipway's demo and tests deploy: it
// answers with its version and colour and serves a health check that can be
// told to fail.
//
// Settings come from the environment: PORT (default 8080), VERSION and
// COLOUR (defaults baked in at build time with -ldflags "-X main.version=v2"),
// FAIL_HEALTH=1 to fail /healthz, HEALTH_FAIL_AFTER (a duration) to start
// failing it that long after start, HEALTH_FAIL_FOR (a duration) to fail
// it for that long after start only (a slow starter), GREETING for the reply's first word,
// ERROR_RATE (a percentage, e.g. 5) to answer that share of requests (every
// 20th for 5) with 500 while /healthz keeps passing, LATENCY (a
// duration) to delay every answer by that much, and LATENCY_FILE (a file
// holding a duration such as 150ms, re-read at most every 100ms; missing or
// empty means none) to delay every answer by that much more: instances
// reading one file slow down together, as a shared dependency's slowdown
// or a load spike slows every release alike. With STATE_DIR (a
// directory, e.g. a volume), it appends "started <version>" to
// STATE_DIR/starts at every start and serves that file at /state. SERVE_FILES (a directory,
// e.g. /run/secrets) serves its files at GET /files/NAME, so that tests can
// read the secrets and configs mounted into an instance. METRICS_PORT (or,
// without it, PORT_METRICS: what the node agent sets for a port named
// "metrics") opens a second listener serving GET /metrics (the count of
// requests served, in Prometheus' text format) and /healthz: a service
// with two named ports.
//
// "demo -healthcheck" probes http://127.0.0.1:$PORT/healthz once and exits 0
// when it passes, 1 otherwise: the HEALTHCHECK of the FROM-scratch image.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Set with -ldflags "-X main.version=v1 -X main.colour=blue"; errorRate
// ("-X main.errorRate=4") is the ERROR_RATE used when the environment sets
// none: the guide's v5 image is built so, a bad release whatever its spec.
var (
	version   = "dev"
	colour    = "none"
	errorRate = ""
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-healthcheck" || os.Args[1] == "--healthcheck") {
		if err := healthcheck(os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "demo: healthcheck:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

// listen listens on port on every interface: the demo is a workload, run
// in a container whose published ports reach it on the container's own
// interface (or by the process driver, which hands it a free host port);
// it is not one of Slipway's links, which go through platform/rpc.
func listen(port int) (net.Listener, error) {
	return net.Listen("tcp", ":"+strconv.Itoa(port))
}

func run() error {
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	if cfg.stateDir != "" {
		f, err := os.OpenFile(filepath.Join(cfg.stateDir, "starts"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("STATE_DIR: %w", err)
		}
		_, err = fmt.Fprintf(f, "started %s\n", cfg.version)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("STATE_DIR: %w", err)
		}
	}
	lis, err := listen(cfg.port)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	app, metrics := newHandlers(cfg, time.Now())
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()
	log.Printf("demo %s (%s) listening on %s", cfg.version, cfg.colour, lis.Addr())
	if cfg.metricsPort != 0 {
		mlis, err := listen(cfg.metricsPort)
		if err != nil {
			return fmt.Errorf("listen METRICS_PORT: %w", err)
		}
		msrv := &http.Server{Handler: metrics, ReadHeaderTimeout: 5 * time.Second}
		defer msrv.Close()
		go func() { errc <- msrv.Serve(mlis) }()
		log.Printf("demo metrics listening on %s", mlis.Addr())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Finish in-flight requests, as a well-behaved service does on SIGTERM.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// healthcheck probes the local /healthz once.
func healthcheck(getenv func(string) string) error {
	cfg, err := configFromEnv(getenv)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(cfg.port) + "/healthz")
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz answered %d", resp.StatusCode)
	}
	return nil
}

type config struct {
	port            int
	version, colour string
	greeting        string
	failHealth      bool
	failAfter       time.Duration
	failFor         time.Duration
	errorRate       float64
	latency         time.Duration
	stateDir        string
	latencyFile     string
	filesDir        string
	metricsPort     int
}

func configFromEnv(getenv func(string) string) (config, error) {
	c := config{port: 8080, version: version, colour: colour, greeting: "hello"}
	if v := getenv("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return c, fmt.Errorf("PORT %q: want a port number 1-65535", v)
		}
		c.port = p
	}
	if v := getenv("VERSION"); v != "" {
		c.version = v
	}
	if v := getenv("COLOUR"); v != "" {
		c.colour = v
	}
	if v := getenv("GREETING"); v != "" {
		c.greeting = v
	}
	if v := getenv("FAIL_HEALTH"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("FAIL_HEALTH %q: want true or false", v)
		}
		c.failHealth = b
	}
	if v := getenv("HEALTH_FAIL_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return c, fmt.Errorf("HEALTH_FAIL_FOR %q: want a duration such as 10s", v)
		}
		c.failFor = d
	}
	if v := getenv("HEALTH_FAIL_AFTER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return c, fmt.Errorf("HEALTH_FAIL_AFTER %q: want a duration such as 10s", v)
		}
		c.failAfter = d
	}
	if v := getenv("ERROR_RATE"); v != "" || errorRate != "" {
		if v == "" {
			v = errorRate
		}
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r >= 0 && r <= 100) {
			return c, fmt.Errorf("ERROR_RATE %q: want a percentage 0-100", v)
		}
		c.errorRate = r
	}
	if v := getenv("LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			return c, fmt.Errorf("LATENCY %q: want a duration such as 20ms, at most 1m", v)
		}
		c.latency = d
	}
	for _, k := range []string{"METRICS_PORT", "PORT_METRICS"} {
		v := getenv(k)
		if v == "" {
			continue
		}
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 || p == c.port {
			return c, fmt.Errorf("%s %q: want a port number 1-65535 other than PORT", k, v)
		}
		c.metricsPort = p
		break
	}
	c.stateDir = getenv("STATE_DIR")
	c.latencyFile = getenv("LATENCY_FILE")
	if v := getenv("SERVE_FILES"); v != "" {
		if !filepath.IsAbs(v) {
			return c, fmt.Errorf("SERVE_FILES %q: want an absolute directory, e.g. /run/secrets", v)
		}
		c.filesDir = filepath.Clean(v)
	}
	return c, nil
}

// fileLatency is the extra delay LATENCY_FILE holds, re-read at most every
// 100ms.
type fileLatency struct {
	path string
	mu   sync.Mutex
	read time.Time
	d    time.Duration
}

func (f *fileLatency) get(now time.Time) time.Duration {
	if f.path == "" {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.read) < 100*time.Millisecond {
		return f.d
	}
	f.read, f.d = now, 0
	if b, err := os.ReadFile(f.path); err == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil && d > 0 && d <= time.Minute {
			f.d = d
		}
	}
	return f.d
}

func newHandler(c config, started time.Time) http.Handler {
	app, _ := newHandlers(c, started)
	return app
}

// newHandlers returns the app's handler and the metrics port's: GET
// /metrics (requests served by the app) and /healthz.
func newHandlers(c config, started time.Time) (http.Handler, http.Handler) {
	var served atomic.Int64
	extra := &fileLatency{path: c.latencyFile}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	healthz := func(w http.ResponseWriter, r *http.Request) {
		failing := c.failHealth || (c.failAfter > 0 && time.Since(started) > c.failAfter) ||
			(c.failFor > 0 && time.Since(started) < c.failFor)
		if failing {
			http.Error(w, "unhealthy (FAIL_HEALTH)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("/healthz", healthz)
	metrics := http.NewServeMux()
	metrics.HandleFunc("/healthz", healthz)
	metrics.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE demo_requests_total counter\ndemo_requests_total{version=%q,colour=%q} %d\n", c.version, c.colour, served.Load())
	})
	if c.stateDir != "" {
		mux.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) {
			b, err := os.ReadFile(filepath.Join(c.stateDir, "starts"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Write(b)
		})
	}
	if c.filesDir != "" {
		// GET /files/NAME answers the file NAME of SERVE_FILES: how the
		// tests see the secrets and configs mounted into an instance.
		mux.HandleFunc("/files/{name}", func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\") {
				http.Error(w, "bad file name", http.StatusBadRequest)
				return
			}
			b, err := os.ReadFile(filepath.Join(c.filesDir, name))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			_, _ = w.Write(b)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if d := c.latency + extra.get(time.Now()); d > 0 {
			time.Sleep(d)
		}
		w.Header().Set("X-Slipway-Version", c.version)
		if failNth(n, c.errorRate) {
			http.Error(w, "injected error (ERROR_RATE)", http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Slipway-Colour", c.colour)
		fmt.Fprintf(w, "%s from %s (%s) on %s, request %d\n", c.greeting, c.version, c.colour, host, n)
	})
	return mux, metrics
}

// failNth reports whether request n (from 1) is one of the rate percent
// that fail: spread evenly, exactly rate% of any run of 100/rate requests.
func failNth(n int64, rate float64) bool {
	if rate <= 0 {
		return false
	}
	return int64(float64(n)*rate/100) > int64(float64(n-1)*rate/100)
}
