package e2e_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/server"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// chromium finds a Chromium (Debian's chromium, installed by make tools).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on PATH (Debian package chromium; make tools installs it)")
	return ""
}

// artifactDir is where the test keeps its screenshots: $SLIPWAY_ARTIFACTS
// (make test sets it) or the test's artifact directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := t.ArtifactDir()
	if base := os.Getenv("SLIPWAY_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// servedSPKI returns the base64 SHA-256 of the public key the dashboard at
// addr serves, after checking that its certificate is the coordinator's
// from the test CA: Chromium is told to accept exactly that key.
func servedSPKI(t *testing.T, addr string) string {
	t.Helper()
	files := testenv.ProcessPKI(t).Files(t, pki.RoleCoordinator, "c1")
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("test CA does not parse")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("dashboard TLS with the coordinator certificate: %v", err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	certPEM, _ := os.ReadFile(files.Cert)
	if b, _ := pem.Decode(certPEM); b == nil || string(b.Bytes) != string(leaf.Raw) {
		t.Fatal("the dashboard does not serve the coordinator's certificate")
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browser starts headless Chromium with its profile in a temporary
// directory, trusting only the dashboard's key.
func browser(t *testing.T, spki string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.WindowSize(1366, 900),
		// The defaults' list plus the password manager's leak check, which
		// has no business looking at a pasted token.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,PasswordLeakDetection"),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// run runs browser actions with a timeout.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		dumpPage(t, ctx)
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// dumpPage logs the page's location and text, for a failed step.
func dumpPage(t *testing.T, ctx context.Context) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(c, chromedp.Location())
	text, _ := chromedp.Run(c, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	t.Logf("page %s:\n%s", loc, text)
}

// get runs one browser action returning a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// screenshot saves a PNG of the page under dir.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// pageWeights reads the weights bar of the rollout region as the page
// shows it now, e.g. "1:80 2:20".
const pageWeights = `Array.from(document.querySelectorAll('[data-region="rollout"] #weights .wbar span')).map(e => e.dataset.release + ":" + e.dataset.weight).join(" ")`

// waitPage polls a JavaScript expression in the page until it returns want.
func waitPage(t *testing.T, ctx context.Context, what, expr, want string, d time.Duration) {
	t.Helper()
	testenv.Eventually(t, d, what, func() error {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		got, err := chromedp.Run(c, chromedp.Evaluate[string](expr))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("page shows %q, want %q", got, want)
		}
		return nil
	})
}

// confirmAction clicks an action button and confirms it in the dialog.
func confirmAction(t *testing.T, ctx context.Context, action string) {
	t.Helper()
	sel := chromedp.CSS(fmt.Sprintf(`[data-region="rollout"] button[data-action=%q]`, action))
	run(t, ctx, action,
		chromedp.Evaluate[chromedp.Void](`delete document.body.dataset.lastAction`),
		chromedp.WaitEnabled(sel),
		chromedp.Click(sel),
		chromedp.WaitVisible(chromedp.ID("confirm-ok")),
		chromedp.SendKeys(chromedp.ID("confirm-reason"), "from the browser test"),
		chromedp.Click(chromedp.ID("confirm-ok")),
	)
	waitPage(t, ctx, action+" answered", `JSON.parse(document.body.dataset.lastAction || "{}").action + ":" + JSON.parse(document.body.dataset.lastAction || "{}").ok`,
		action+":true", 15*time.Second)
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against
// a real stack: Consul with ACLs and TLS, a coordinator on mutual TLS with
// tokens serving the dashboard over HTTPS, a node agent running Docker
// containers and an edge under traffic. The page lists the service, shows
// a canary's weights change live (no reload) while traffic runs, promotes
// with the button (the API confirms) and shows an abort's revert.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator, a node agent with Docker containers, an edge and Chromium")
	}
	chromium(t)
	requireDocker(t)
	shots := artifactDir(t)
	t.Logf("screenshots go to %s", shots)

	c := testenv.StartConsul(t, testenv.ConsulACL(), testenv.ConsulTLS())
	// The edge reports its golden signals (requests, errors per release)
	// to the coordinator, which charts them.
	grpcAddr, dashAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	ed := startEdge(t, c.Addr(), "proxy", "-coordinators", grpcAddr, "-signals-interval", "500ms")
	startAgent(t, c.Addr())
	cl, secret := startCoordinatorWith(t, c.Addr(), func(cfg *server.Config) { cfg.GRPCAddr, cfg.DashboardAddr = grpcAddr, dashAddr })
	s := &scenario{t: t, deploy: cl, consul: c.AdminClient(t), edge: ed, name: unique("shop")}
	host := s.name + ".test"

	v1 := s.deployVersion("v1", nil, quick(&deployv1.UpdateStrategy{}))
	s.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	testenv.Until(t, 30*time.Second, "edge serves v1", func() string {
		if got := (&traffic{byVersion: map[string]int{}}).probe(ed.httpAddr, host, nil, 1); got["v1"] != 1 {
			return fmt.Sprintf("answers %v", got)
		}
		return ""
	})
	s.tr = startTraffic(ed.httpAddr, host, 3, 40)
	t.Cleanup(s.tr.stop)

	ctx := browser(t, servedSPKI(t, dashAddr))
	base := "https://" + dashAddr

	// Without a token every page leads to the login; a wrong token is
	// refused with the API's reason.
	run(t, ctx, "open without a token", chromedp.Navigate(base+"/services/"+s.name), chromedp.WaitVisible(chromedp.ID("token")))
	loc := get(t, ctx, "location", chromedp.Location())
	if !strings.HasPrefix(loc, base+"/login") {
		t.Fatalf("without a token the page is %s, want the login", loc)
	}
	run(t, ctx, "wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-a-token"), chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("login-error")))
	errText := get(t, ctx, "login error", chromedp.Text(chromedp.ID("login-error")))
	if !strings.Contains(errText, "unknown or revoked token") {
		t.Fatalf("wrong token error = %q, want the API's reason", errText)
	}

	// 1. Log in: the overview lists the service with its current release.
	rowSel := chromedp.CSS(fmt.Sprintf(`tr[data-service=%q]`, s.name))
	run(t, ctx, "log in", chromedp.SendKeys(chromedp.ID("token"), secret), chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(rowSel))
	row := get(t, ctx, "service row", chromedp.Text(rowSel))
	if !strings.Contains(row, "#1") || !strings.Contains(row, "v1") {
		t.Fatalf("service row = %q, want current release #1 v1", row)
	}
	screenshot(t, ctx, shots, "1-services")

	// 2. A canary while traffic runs: the weights change on the open page.
	run(t, ctx, "open the service", chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/services/%s"]`, s.name))),
		chromedp.WaitVisible(chromedp.CSS(`[data-region="rollout"] #rollout`)),
		chromedp.Evaluate[chromedp.Void](`window.sameDocument = "yes"`))
	waitPage(t, ctx, "live stream connected", `document.getElementById("live").className`, "live on", 15*time.Second)
	canary := quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
			{Weight: 20, Pause: durationpb.New(time.Hour)}, {Weight: 50, Manual: true}, {Weight: 100}}}})
	v2 := s.deployVersion("v2", nil, canary)
	waitPage(t, ctx, "page shows 20% canary", pageWeights, "1:80 2:20", 60*time.Second)
	// The timed pause counts down; the promote button skips it.
	waitPage(t, ctx, "pause countdown", `String((document.getElementById("pause-left") || {textContent: ""}).textContent.startsWith("Pause ends in 59m"))`, "true", 15*time.Second)
	screenshot(t, ctx, shots, "2-canary-20")
	confirmAction(t, ctx, "promote")
	waitPage(t, ctx, "page shows 50% canary", pageWeights, "1:50 2:50", 60*time.Second)
	waitPage(t, ctx, "page waits for promote", `document.getElementById("rollout-state").textContent`, "waiting for promote", 30*time.Second)
	waitPage(t, ctx, "chart drawn", `String(document.querySelectorAll("#chart rect.band.c1").length > 0)`, "true", 15*time.Second)
	// #2's requests as the edge measured them.
	waitPage(t, ctx, "chart shows #2's measured requests", `String(document.querySelectorAll("#traffic rect.bar.c1").length > 0)`, "true", 15*time.Second)
	waitPage(t, ctx, "no reload", `window.sameDocument`, "yes", time.Second)
	screenshot(t, ctx, shots, "3-canary-50-waiting")

	// 3. Promote with the button: the API confirms the rollout succeeded.
	confirmAction(t, ctx, "promote")
	s.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	waitPage(t, ctx, "page shows the promotion", pageWeights, "2:100", 30*time.Second)
	waitPage(t, ctx, "page shows succeeded", `document.getElementById("rollout-state").textContent`, "succeeded", 30*time.Second)
	ro := s.rollout(v2)
	if n := len(ro.GetCommands()); n == 0 || !strings.HasPrefix(ro.GetCommands()[n-1].GetBy(), "dashboard: ") ||
		ro.GetCommands()[n-1].GetKind() != deployv1.CommandKind_COMMAND_KIND_PROMOTE {
		t.Fatalf("rollout commands = %v, want the last a promote by the dashboard", ro.GetCommands())
	}

	// 4. Abort a canary at 30%: the page shows all traffic back on #2.
	v3 := s.deployVersion("v3", nil, quick(&deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 30, Manual: true}, {Weight: 100}}}}))
	waitPage(t, ctx, "page shows 30% canary of #3", pageWeights, "2:70 3:30", 60*time.Second)
	confirmAction(t, ctx, "abort")
	s.waitState(v3, deployv1.RolloutState_ROLLOUT_STATE_ABORTED, 30*time.Second)
	waitPage(t, ctx, "page shows the revert", pageWeights, "2:100", 30*time.Second)
	waitPage(t, ctx, "page shows aborted", `document.getElementById("rollout-state").textContent`, "aborted", 30*time.Second)
	waitPage(t, ctx, "chart marks the abort", `String(document.querySelectorAll("#chart .mark").length > 0)`, "true", 15*time.Second)
	waitPage(t, ctx, "audit names the abort", `String(document.querySelector('[data-region="audit"]').textContent.includes("abort"))`, "true", 15*time.Second)
	waitPage(t, ctx, "still no reload", `window.sameDocument`, "yes", time.Second)
	screenshot(t, ctx, shots, "4-aborted")

	s.tr.stop()
	if non2xx, transport, errs := s.tr.failures(); non2xx != 0 || transport != 0 {
		t.Errorf("traffic during the test: %d non-2xx, %d transport errors, first: %v", non2xx, transport, errs)
	}
	t.Logf("traffic: %s", s.tr.summary())
}
