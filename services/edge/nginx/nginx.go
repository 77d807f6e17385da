package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/edge/controller"
	"slipway.dev/edge/internal/h1server"
	"slipway.dev/edge/routetable"
)

// ErrConfigRejected means `nginx -t` refused a rendered config; the last good
// config stays in place.
var ErrConfigRejected = errors.New("nginx: config rejected")

// ErrExited means the supervised nginx exited before it served the config
// the runner waited for (a listen address already in use, say); the error
// carries the end of nginx's error log.
var ErrExited = errors.New("nginx: exited")

// Config configures a Runner.
type Config struct {
	// Binary is the nginx executable (default /usr/sbin/nginx).
	Binary string
	// Dir is nginx's prefix directory; nginx.conf, lua/, logs/ live there.
	Dir string
	// Listen is the client listener, e.g. ":8080".
	Listen string
	// ControlAddr is the loopback control endpoint, e.g. "127.0.0.1:7421".
	ControlAddr string
	// Workers is worker_processes (default 2).
	Workers int
	// WorkerShutdownTimeout (default 30s).
	WorkerShutdownTimeout time.Duration
	// External drives a master already running from Dir (its pid file)
	// instead of starting and supervising one.
	External  bool
	AccessLog bool
	// Limits are the client limits (zero fields: h1server's defaults).
	Limits h1server.Limits
	Logger *slog.Logger
	// Registerer receives metrics; optional.
	Registerer prometheus.Registerer
}

// Runner owns an nginx master and applies route tables to it.
type Runner struct {
	cfg    Config
	client *http.Client

	mu       sync.Mutex // serialises Apply, reload and restart
	version  uint64     // config version in effect
	hosts    []string   // hosts of the config in effect
	gen      uint64     // routes generation posted
	lastBody []byte
	cmd      *exec.Cmd
	exited   chan struct{}

	mReloads *prometheus.CounterVec
	mRestart prometheus.Counter
}

// Interface guards.
var _ controller.Applier = (*Runner)(nil)

// New prepares a runner; Start starts nginx.
func New(cfg Config) (*Runner, error) {
	if cfg.Binary == "" {
		cfg.Binary = "/usr/sbin/nginx"
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.WorkerShutdownTimeout == 0 {
		cfg.WorkerShutdownTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil || cfg.Dir == "" {
		return nil, fmt.Errorf("nginx: dir %q: want a directory", cfg.Dir)
	}
	cfg.Dir = dir
	if cfg.Listen == "" || cfg.ControlAddr == "" {
		return nil, errors.New("nginx: listen and control addresses are required")
	}
	if !strings.HasPrefix(cfg.ControlAddr, "127.0.0.1:") {
		return nil, fmt.Errorf("nginx: control address %q: must be 127.0.0.1:port", cfg.ControlAddr)
	}
	r := &Runner{
		cfg:    cfg,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		mReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "edge", Name: "nginx_reloads_total",
			Help: "nginx config reloads, by result."}, []string{"result"}),
		mRestart: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "edge", Name: "nginx_restarts_total",
			Help: "Times the supervised nginx died and was restarted."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(r.mReloads, r.mRestart)
	}
	return r, nil
}

// Start writes the initial config, starts nginx (unless External) and
// supervises it until ctx is done, when it stops it gracefully.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range []string{"lua", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(r.cfg.Dir, d), 0o755); err != nil {
			return fmt.Errorf("nginx: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(r.cfg.Dir, "lua", "slipway.lua"), luaModule, 0o644); err != nil {
		return fmt.Errorf("nginx: write lua module: %w", err)
	}
	if r.cfg.External {
		if err := r.reloadLocked(ctx, nil); err != nil {
			return err
		}
		return nil
	}
	conf, err := r.render(1, nil)
	if err != nil {
		return err
	}
	if err := r.install(conf); err != nil {
		return err
	}
	if err := r.spawnLocked(); err != nil {
		return err
	}
	if err := r.waitVersion(ctx, 1); err != nil {
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL) // never left running unsupervised
		<-r.exited
		return err
	}
	r.version = 1
	go r.supervise(ctx)
	return nil
}

func (r *Runner) confPath() string { return filepath.Join(r.cfg.Dir, "nginx.conf") }

func (r *Runner) render(version uint64, hosts []string) ([]byte, error) {
	user := ""
	if os.Geteuid() == 0 {
		user = "root"
	}
	return Render(ConfigData{Version: version, Dir: r.cfg.Dir, User: user, Workers: r.cfg.Workers, Listen: r.cfg.Listen,
		ControlAddr: r.cfg.ControlAddr, Hosts: hosts, WorkerShutdownTimeout: r.cfg.WorkerShutdownTimeout.String(), AccessLog: r.cfg.AccessLog,
		Limits: NginxLimits(r.cfg.Limits)})
}

// install tests conf with `nginx -t` and atomically renames it into place.
func (r *Runner) install(conf []byte) error {
	tmp := filepath.Join(r.cfg.Dir, "nginx.conf.next")
	if err := os.WriteFile(tmp, conf, 0o644); err != nil {
		return fmt.Errorf("nginx: write config: %w", err)
	}
	out, err := exec.Command(r.cfg.Binary, "-t", "-q", "-p", r.cfg.Dir, "-c", tmp).CombinedOutput()
	if err != nil {
		r.mReloads.WithLabelValues("rejected").Inc()
		return fmt.Errorf("nginx -t: %s: %w", bytes.TrimSpace(out), errors.Join(ErrConfigRejected, err))
	}
	if err := os.Rename(tmp, r.confPath()); err != nil {
		return fmt.Errorf("nginx: install config: %w", err)
	}
	return nil
}

func (r *Runner) spawnLocked() error {
	cmd := exec.Command(r.cfg.Binary, "-p", r.cfg.Dir, "-c", r.confPath())
	// Own process group (signals to the edge's group don't hit nginx);
	// if the edge dies, nginx finishes in-flight requests and exits rather
	// than routing on without anyone maintaining its routes or the ack.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	logf, err := os.OpenFile(filepath.Join(r.cfg.Dir, "logs", "stderr.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("nginx: start: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited
	r.cfg.Logger.Info("nginx started", "pid", cmd.Process.Pid, "dir", r.cfg.Dir)
	return nil
}

func (r *Runner) supervise(ctx context.Context) {
	for {
		r.mu.Lock()
		exited := r.exited
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			r.stop()
			return
		case <-exited:
		}
		r.mRestart.Inc()
		r.cfg.Logger.Error("nginx exited; restarting it", "log", filepath.Join(r.cfg.Dir, "logs", "error.log"))
		for ctx.Err() == nil {
			if err := r.restart(ctx); err != nil {
				r.cfg.Logger.Error("nginx restart failed", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			break
		}
	}
}

func (r *Runner) restart(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.spawnLocked(); err != nil {
		return err
	}
	if err := r.waitVersion(ctx, r.version); err != nil {
		return err
	}
	if r.lastBody != nil {
		return r.post(ctx, r.lastBody)
	}
	return nil
}

// stop asks nginx to finish in-flight requests and exit (SIGQUIT).
func (r *Runner) stop() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(r.cfg.WorkerShutdownTimeout + 5*time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Wait blocks until the supervised nginx has exited (after ctx of Start is done).
func (r *Runner) Wait() {
	r.mu.Lock()
	exited := r.exited
	r.mu.Unlock()
	if exited != nil {
		<-exited
	}
}

// Apply reloads nginx if the set of hosts changed, then posts the table to
// the control endpoint and reads it back. The table is in effect for every
// new request when Apply returns nil.
func (r *Runner) Apply(ctx context.Context, t routetable.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	hosts := t.Hosts()
	if !sameHosts(hosts, r.hosts) {
		if err := r.reloadLocked(ctx, hosts); err != nil {
			return err
		}
	}
	r.gen++
	body := Encode(r.gen, t)
	if err := r.post(ctx, body); err != nil {
		return err
	}
	r.lastBody = body
	return nil
}

func (r *Runner) reloadLocked(ctx context.Context, hosts []string) error {
	version := r.version + 1
	if r.cfg.External && r.version == 0 {
		version = uint64(time.Now().UnixMilli()) // above any version a previous edge rendered; exact in Lua
	}
	conf, err := r.render(version, hosts)
	if err != nil {
		return err
	}
	if err := r.install(conf); err != nil {
		r.cfg.Logger.Error("nginx config rejected; keeping the last good one", "err", err)
		return err
	}
	master, err := r.masterPID()
	if err != nil {
		return err
	}
	oldWorkers := children(master)
	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		return fmt.Errorf("nginx: reload: %w", err)
	}
	if err := r.waitVersion(ctx, version); err != nil {
		r.mReloads.WithLabelValues("unverified").Inc()
		return err
	}
	if err := waitShuttingDown(ctx, oldWorkers); err != nil {
		r.mReloads.WithLabelValues("unverified").Inc()
		return err
	}
	r.mReloads.WithLabelValues("ok").Inc()
	r.cfg.Logger.Info("nginx reloaded", "version", version, "hosts", hosts)
	r.version, r.hosts = version, hosts
	return nil
}

func (r *Runner) masterPID() (int, error) {
	if !r.cfg.External {
		if r.cmd == nil {
			return 0, errors.New("nginx: not running")
		}
		return r.cmd.Process.Pid, nil
	}
	b, err := os.ReadFile(filepath.Join(r.cfg.Dir, "nginx.pid"))
	if err != nil {
		return 0, fmt.Errorf("nginx: external master: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("nginx: external master pid %q: %w", b, err)
	}
	return pid, nil
}

// children lists the processes whose parent is pid (from /proc).
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// waitShuttingDown waits until every old worker has exited or taken its
// QUIT (its title says "shutting down"), after which it has closed its
// listening sockets and every new connection reaches a new worker.
func waitShuttingDown(ctx context.Context, workers []int) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		pending := 0
		for _, w := range workers {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(w), "cmdline"))
			if err != nil || len(b) == 0 || bytes.Contains(b, []byte("shutting down")) {
				continue
			}
			pending++
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nginx: %d old workers still accepting after reload: %w", pending, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitVersion polls the control endpoint until it serves config version.
func (r *Runner) waitVersion(ctx context.Context, version uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	want := strconv.FormatUint(version, 10)
	var exited <-chan struct{} // nil for an external master: never fires
	if !r.cfg.External {
		exited = r.exited
	}
	var last string
	for {
		got, err := r.get(ctx, "/config")
		if err == nil && strings.TrimSpace(got) == want {
			return nil
		}
		last = fmt.Sprint(strings.TrimSpace(got), err)
		select {
		case <-exited:
			return fmt.Errorf("%w before serving config version %s: %s", ErrExited, want, r.logTail())
		case <-ctx.Done():
			return fmt.Errorf("nginx: config version %s not served (last: %s): %w", want, last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// logTail returns the last lines nginx wrote to its error log and stderr,
// for an error that says why it stopped.
func (r *Runner) logTail() string {
	var lines []string
	for _, name := range []string{"error.log", "stderr.log"} {
		b, _ := os.ReadFile(filepath.Join(r.cfg.Dir, "logs", name))
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	if len(lines) == 0 {
		return "no log output"
	}
	return strings.Join(lines, "; ")
}

func (r *Runner) get(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.cfg.ControlAddr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("nginx control GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

// post stores body in nginx's shared dict and reads it back.
func (r *Runner) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.cfg.ControlAddr+"/routes", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("nginx: post routes: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("nginx: post routes: %s", resp.Status)
	}
	got, err := r.get(ctx, "/routes")
	if err != nil {
		return fmt.Errorf("nginx: read routes back: %w", err)
	}
	if got != string(body) {
		return errors.New("nginx: routes read back differ from those posted")
	}
	return nil
}
