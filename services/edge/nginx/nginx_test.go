package nginx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"slipway.dev/edge/routetable"
	"slipway.dev/platform/specrules"
	"slipway.dev/platform/testenv"
)

func startRunner(t *testing.T) (*Runner, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: real nginx")
	}
	if _, err := exec.LookPath("/usr/sbin/nginx"); err != nil {
		t.Skip("nginx not installed (make tools)")
	}
	listen := testenv.FreeAddr(t)
	r, err := New(Config{Dir: t.TempDir(), Listen: listen, ControlAddr: testenv.FreeAddr(t), Workers: 1,
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
	return r, listen
}

func backend(t *testing.T, name string) routetable.Upstream {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(s.Close)
	return routetable.Upstream{ID: name, Address: strings.TrimPrefix(s.URL, "http://")}
}

func tableFor(hosts map[string]routetable.Upstream) routetable.Table {
	t := routetable.Table{Routes: map[string]routetable.Route{}}
	for h, u := range hosts {
		t.Routes[h] = routetable.Route{Service: h, Host: h, Path: "/", Generation: 1,
			Backends: []routetable.Backend{{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{u}}}}
	}
	return t
}

func fetch(listen, host string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunnerReloadsOnlyWhenHostsChange(t *testing.T) {
	r, listen := startRunner(t)
	ctx := context.Background()
	a, b := backend(t, "a"), backend(t, "b")
	if err := r.Apply(ctx, tableFor(map[string]routetable.Upstream{"one.test": a})); err != nil {
		t.Fatal(err)
	}
	if code, body := fetch(listen, "one.test"); code != 200 || body != "a" {
		t.Fatalf("one.test: %d %q", code, body)
	}
	reloads := testutil.ToFloat64(r.mReloads.WithLabelValues("ok"))
	// Same host, new instance: posted at run time, no reload.
	if err := r.Apply(ctx, tableFor(map[string]routetable.Upstream{"one.test": b})); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.mReloads.WithLabelValues("ok")); got != reloads {
		t.Fatalf("reloads %v -> %v for an instance change", reloads, got)
	}
	if code, body := fetch(listen, "one.test"); code != 200 || body != "b" {
		t.Fatalf("after instance change: %d %q", code, body)
	}
	// New host: one reload, verified.
	if err := r.Apply(ctx, tableFor(map[string]routetable.Upstream{"one.test": b, "two.test": a})); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.mReloads.WithLabelValues("ok")); got != reloads+1 {
		t.Fatalf("reloads %v -> %v for a new host", reloads, got)
	}
	if code, body := fetch(listen, "two.test"); code != 200 || body != "a" {
		t.Fatalf("two.test: %d %q", code, body)
	}
}

func TestRunnerKeepsLastGoodConfigWhenRejected(t *testing.T) {
	r, listen := startRunner(t)
	a := backend(t, "a")
	if err := r.Apply(context.Background(), tableFor(map[string]routetable.Upstream{"one.test": a})); err != nil {
		t.Fatal(err)
	}
	version := r.version
	// Hosts are checked before rendering (specrules.RouteHost), so make
	// nginx itself reject the config: a port it refuses.
	r.mu.Lock()
	good := r.cfg.Listen
	r.cfg.Listen = "127.0.0.1:99999"
	err := r.reloadLocked(context.Background(), []string{"one.test", "two.test"})
	r.cfg.Listen = good
	r.mu.Unlock()
	if !errors.Is(err, ErrConfigRejected) {
		t.Fatalf("err = %v, want ErrConfigRejected", err)
	}
	if r.version != version || testutil.ToFloat64(r.mReloads.WithLabelValues("rejected")) != 1 {
		t.Fatalf("version %d (was %d), rejected metric not counted", r.version, version)
	}
	if code, body := fetch(listen, "one.test"); code != 200 || body != "a" {
		t.Fatalf("after rejection: %d %q", code, body)
	}
}

// TestRunnerTakesAnyAcceptedHost: nginx takes the longest host Deploy
// accepts and thousands of hosts (with nginx's default server name hash a
// 68-byte host made it reject the config, which blocked every new host).
func TestRunnerTakesAnyAcceptedHost(t *testing.T) {
	r, listen := startRunner(t)
	a := backend(t, "a")
	long := strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 61)
	if d := specrules.RouteHost(long); d != "" || len(long) != specrules.MaxHostBytes {
		t.Fatalf("%d-byte host: %s", len(long), d)
	}
	routes := map[string]routetable.Upstream{long: a}
	for i := range 3000 {
		routes[fmt.Sprintf("%s-%d.example.com", strings.Repeat("h", 50), i)] = a
	}
	if err := r.Apply(context.Background(), tableFor(routes)); err != nil {
		t.Fatalf("apply %d hosts, one of %d bytes: %v", len(routes), len(long), err)
	}
	if code, body := fetch(listen, long); code != 200 || body != "a" {
		t.Fatalf("%d-byte host: %d %q", len(long), code, body)
	}
}

// TestRunnerRetriesOnNewerTable: a request routed on one table whose
// connection fails after a newer table was posted is chosen again from the
// newer one. This is the route barrier's race: the edge acknowledged the
// newer table and the agent stopped the old instance while the request was
// on its way to it. Expect: 100-continue holds the request between routing
// (nginx answers 100 after the rewrite phase) and connecting (after the
// body), so the table changes exactly in that window. Run with the host's
// only route on "/" and with a second route on another path, where the
// request is routed again by its path (read in the balancer).
func TestRunnerRetriesOnNewerTable(t *testing.T) {
	for _, withPaths := range []bool{false, true} {
		t.Run(fmt.Sprintf("paths=%v", withPaths), func(t *testing.T) { testRetriesOnNewerTable(t, withPaths) })
	}
}

func testRetriesOnNewerTable(t *testing.T, withPaths bool) {
	r, listen := startRunner(t)
	ctx := context.Background()
	oldSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "old") }))
	defer oldSrv.Close()
	old := routetable.Upstream{ID: "old", Address: strings.TrimPrefix(oldSrv.URL, "http://")}
	other := backend(t, "other")
	table := func(u routetable.Upstream) routetable.Table {
		tb := tableFor(map[string]routetable.Upstream{"one.test": u})
		if withPaths {
			tb.Routes["other"] = routetable.Route{Service: "other", Host: "one.test", Path: "/other", Generation: 1,
				Backends: []routetable.Backend{{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{other}}}}
		}
		return tb
	}
	if err := r.Apply(ctx, table(old)); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(conn, "PUT /app HTTP/1.1\r\nHost: one.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, " 100 ") {
		t.Fatalf("want 100 Continue, got %q, %v", line, err)
	}
	br.ReadString('\n') // blank line after the interim response

	oldSrv.Close() // the old instance is gone: connections to it are refused
	if err := r.Apply(ctx, table(backend(t, "new"))); err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "new" {
		t.Fatalf("request routed before the table changed: %d %q, want 200 \"new\"", resp.StatusCode, body)
	}
}

// TestRunnerStartFailsWhenListenTaken: nginx that cannot bind exits at
// once; Start says so with nginx's own reason instead of waiting out its
// deadline, and leaves nothing running.
func TestRunnerStartFailsWhenListenTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real nginx")
	}
	if _, err := exec.LookPath("/usr/sbin/nginx"); err != nil {
		t.Skip("nginx not installed (make tools)")
	}
	taken, err := net.Listen("tcp", testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	r, err := New(Config{Dir: t.TempDir(), Listen: taken.Addr().String(), ControlAddr: testenv.FreeAddr(t), Workers: 1,
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r.Start(ctx)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("Start = %v, want ErrExited naming the address in use", err)
	}
	select {
	case <-r.exited:
	default:
		t.Fatal("nginx still running after a failed Start")
	}
}

func TestRunnerRestartsDeadNginx(t *testing.T) {
	r, listen := startRunner(t)
	a := backend(t, "a")
	if err := r.Apply(context.Background(), tableFor(map[string]routetable.Upstream{"one.test": a})); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	pid := r.cmd.Process.Pid
	r.mu.Unlock()
	syscall.Kill(-pid, syscall.SIGKILL) // master and workers
	testenv.Eventually(t, 20*time.Second, "nginx restarted with its routes", func() error {
		if code, body := fetch(listen, "one.test"); code != 200 || body != "a" {
			return fmt.Errorf("one.test answers %d %q", code, body)
		}
		return nil
	})
	if testutil.ToFloat64(r.mRestart) != 1 {
		t.Fatal("restart not counted")
	}
}

// TestRunnerDrivesExternalMaster: with External the runner does not start
// nginx; it re-renders the config of a master already running from Dir,
// reloads it by the pid file and posts routes to it.
func TestRunnerDrivesExternalMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real nginx")
	}
	if _, err := exec.LookPath("/usr/sbin/nginx"); err != nil {
		t.Skip("nginx not installed (make tools)")
	}
	dir, listen, control := t.TempDir(), testenv.FreeAddr(t), testenv.FreeAddr(t)
	// An operator's nginx, started from the same template.
	seed, err := New(Config{Dir: dir, Listen: listen, ControlAddr: control, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := seed.render(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"lua", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lua", "slipway.lua"), luaModule, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := seed.install(conf); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	if err := seed.waitVersion(context.Background(), 1); err != nil {
		t.Fatal(err)
	}

	r, err := New(Config{Dir: dir, Listen: listen, ControlAddr: control, Workers: 1, External: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := backend(t, "a")
	if err := r.Apply(context.Background(), tableFor(map[string]routetable.Upstream{"ext.test": a})); err != nil {
		t.Fatal(err)
	}
	if code, body := fetch(listen, "ext.test"); code != 200 || body != "a" {
		t.Fatalf("ext.test: %d %q", code, body)
	}
	if cmd.ProcessState != nil {
		t.Fatal("external master exited")
	}
}

func TestRunnerPassesUpgrade(t *testing.T) {
	r, listen := startRunner(t)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	}))
	t.Cleanup(s.Close)
	up := routetable.Upstream{ID: "ws", Address: strings.TrimPrefix(s.URL, "http://")}
	if err := r.Apply(context.Background(), tableFor(map[string]routetable.Upstream{"ws.test": up})); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo:ping\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
}

// TestRunnerRoutesByPath: a host with several routes sends each request to
// the route of the longest matching path prefix (a prefix matches itself
// and what follows a '/'), a host with a single "/" route takes every path,
// a path no route of its host matches is 404, and the Host header's case
// does not matter.
func TestRunnerRoutesByPath(t *testing.T) {
	r, listen := startRunner(t)
	route := func(svc, host, path string, u routetable.Upstream) routetable.Route {
		return routetable.Route{Service: svc, Host: host, Path: path, Generation: 1,
			Backends: []routetable.Backend{{Release: 1, Weight: 100, Upstreams: []routetable.Upstream{u}}}}
	}
	tbl := routetable.Table{Routes: map[string]routetable.Route{
		"root":   route("root", "paths.local", "/", backend(t, "root")),
		"api":    route("api", "paths.local", "/api", backend(t, "api")),
		"static": route("static", "paths.local", "/static/", backend(t, "static")),
		"only":   route("only", "only.local", "/", backend(t, "only")),
		"sub":    route("sub", "sub.local", "/sub", backend(t, "sub")),
	}}
	if err := r.Apply(context.Background(), tbl); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, path string
		code       int
		body       string
	}{
		{"paths.local", "/", 200, "root"},
		{"paths.local", "/api", 200, "api"},
		{"paths.local", "/api/v1", 200, "api"},
		{"paths.local", "/apix", 200, "root"},
		{"paths.local", "/static/a.css", 200, "static"},
		{"paths.local", "/static", 200, "root"},
		{"PATHS.Local", "/api", 200, "api"},
		{"only.local", "/any/path", 200, "only"},
		{"sub.local", "/sub/x", 200, "sub"},
		{"sub.local", "/", 404, ""},
		{"sub.local", "/subway", 404, ""},
	} {
		code, body := fetchPath(listen, tc.host, tc.path)
		if code != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("%s%s: got %d %q, want %d %q", tc.host, tc.path, code, body, tc.code, tc.body)
		}
	}
}

func fetchPath(listen, host, path string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+listen+path, nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
