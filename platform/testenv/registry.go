package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registry is a real image registry (the CNCF distribution registry, built
// into ./bin by make tools) on loopback, with basic authentication (htpasswd)
// for one user. The Docker Engine treats 127.0.0.0/8 as an insecure
// registry, so it pulls from it over plain HTTP.
type Registry struct {
	// Addr is host:port, the registry part of image references.
	Addr string
	// User and Password are the one account it accepts.
	User, Password string
	dir            string
}

// StartRegistry starts a registry with a fresh storage directory and the
// account user/password; it is stopped (and its directory removed) when
// the test ends.
func StartRegistry(tb testing.TB, user, password string) *Registry {
	tb.Helper()
	bin := Binary(tb, "registry")
	dir := tb.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	r := &Registry{Addr: FreeAddr(tb), User: user, Password: password, dir: dir}
	cfg := fmt.Sprintf(`version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: %q}, delete: {enabled: true}}
http: {addr: %q}
auth: {htpasswd: {realm: slipway-test, path: %q}}
`, filepath.Join(dir, "data"), r.Addr, htpasswd)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		logf.Close()
		if tb.Failed() {
			b, _ := os.ReadFile(logf.Name())
			tb.Logf("registry log:\n%s", Tail(b, 4000))
		}
	})
	Eventually(tb, 20*time.Second, "registry answering", func() error {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/ without credentials: %s, want 401", resp.Status)
		}
		return nil
	})
	return r
}

// Push copies the local image into the registry as repo:tag (repo without
// the registry host) with the docker CLI under a private client config
// (the machine's own is not touched), removes the local tag it made, and
// returns the pushable reference host:port/repo:tag.
func (r *Registry) Push(tb testing.TB, local, repoTag string) string {
	tb.Helper()
	ref := r.Addr + "/" + repoTag
	cfg := tb.TempDir()
	run := func(stdin string, args ...string) {
		tb.Helper()
		cmd := exec.Command("docker", append([]string{"--config", cfg}, args...)...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("", "tag", local, ref)
	defer run("", "rmi", ref)
	run(r.Password, "login", "-u", r.User, "--password-stdin", r.Addr)
	run("", "push", ref)
	return ref
}

// PushRandom pushes a new image of one layer holding size random bytes
// (so no Engine has its layer: a pull must download it all) as repo:tag,
// removes the local copy, and returns its reference. The image has no
// command: it is for pulls, not for running.
func (r *Registry) PushRandom(tb testing.TB, repoTag string, size int) string {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		tb.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "random.bin", Mode: 0o644, Size: int64(size), ModTime: time.Unix(0, 0)}); err != nil {
		tb.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	local := "slipway-test/random-" + strings.NewReplacer("/", "-", ":", "-").Replace(repoTag) + fmt.Sprintf(":%d", os.Getpid())
	cmd := exec.Command("docker", "import", "-", local)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("docker import: %v\n%s", err, out)
	}
	defer func() {
		if out, err := exec.Command("docker", "rmi", local).CombinedOutput(); err != nil {
			tb.Logf("docker rmi %s: %v\n%s", local, err, out)
		}
	}()
	return r.Push(tb, local, repoTag)
}

// ThrottledProxy serves the HTTP server at target (host:port) on a new
// loopback address, sending response bodies at about bytesPerSecond: a slow
// registry. It stops when the test ends.
func ThrottledProxy(tb testing.TB, target string, bytesPerSecond int) string {
	tb.Helper()
	u := &url.URL{Scheme: "http", Host: target}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // write through: the throttle decides the pace
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rp.ServeHTTP(&throttled{ResponseWriter: w, ctx: req.Context(), rate: bytesPerSecond}, req)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
	})
	return l.Addr().String()
}

// throttled writes at most rate bytes per second, in chunks of a tenth of
// that.
type throttled struct {
	http.ResponseWriter
	ctx  context.Context
	rate int
}

func (t *throttled) Write(p []byte) (int, error) {
	chunk := max(t.rate/10, 1)
	n := 0
	for len(p) > 0 {
		k := min(chunk, len(p))
		w, err := t.ResponseWriter.Write(p[:k])
		n += w
		if err != nil {
			return n, err
		}
		if f, ok := t.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[k:]
		select { // pacing the bandwidth, not synchronising
		case <-time.After(100 * time.Millisecond):
		case <-t.ctx.Done():
			return n, t.ctx.Err()
		}
	}
	return n, nil
}

// Interface guard.
var _ io.Writer = (*throttled)(nil)

// RemoveImageRefs removes the local image references (repository:tag) that
// match a docker "reference" filter such as "*/repo". It removes the names,
// not the images by id: an image pulled from a test registry has the same
// id as the local image pushed to it (slipway/demo:v1), and removing by id
// with -f would take that name away from every other test too.
func RemoveImageRefs(filter string) {
	out, _ := exec.Command("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+filter).Output()
	var refs []string
	for _, ref := range strings.Fields(string(out)) {
		if !strings.HasSuffix(ref, ":<none>") {
			refs = append(refs, ref)
		}
	}
	if len(refs) > 0 {
		_ = exec.Command("docker", append([]string{"rmi", "-f"}, refs...)...).Run() // by name: only these tags go
	}
}
