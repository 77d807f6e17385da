package e2e_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/server"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// webClient is a browser-like HTTPS client of the dashboard: it trusts the
// test CA, keeps cookies and does not follow redirects.
type webClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newWebClient(t *testing.T, addr string) *webClient {
	t.Helper()
	caPEM, err := os.ReadFile(testenv.ProcessPKI(t).Files(t, pki.RoleCoordinator, "c1").CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 15 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(hc.CloseIdleConnections)
	return &webClient{t: t, base: "https://" + addr, hc: hc}
}

func (w *webClient) do(method, path string, hdr map[string]string, body io.Reader) (*http.Response, string) {
	w.t.Helper()
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (w *webClient) login(secret string) *http.Response {
	w.t.Helper()
	resp, _ := w.do(http.MethodPost, "/login", map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
		strings.NewReader(url.Values{"token": {secret}}.Encode()))
	return resp
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf" content="([0-9a-f]+)">`)

// TestDashboardAccess checks the dashboard's login, cookie, CSRF and token
// checks over HTTPS against a real coordinator: the API's ACLs decide what
// each token sees and may do.
func TestDashboardAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul and a coordinator")
	}
	c := testenv.StartConsul(t, testenv.ConsulACL())
	dashAddr := testenv.FreeAddr(t)
	var grpcAddr string
	cl, mgmt := startCoordinatorWith(t, c.Addr(), func(cfg *server.Config) {
		cfg.DashboardAddr, cfg.Engine = dashAddr, false // rollouts stay pending: only the API's answers matter
		grpcAddr = cfg.GRPCAddr
	})
	conn, err := rpc.Dial(grpcAddr, testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleCoordinator), rpc.WithToken(mgmt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	acls := aclv1.NewAclServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token := func(desc string, services []string, p ...aclv1.Policy) *aclv1.CreateTokenResponse {
		resp, err := acls.CreateToken(ctx, &aclv1.CreateTokenRequest{Policies: p, Services: services, Description: desc})
		if err != nil {
			t.Fatalf("create token %s: %v", desc, err)
		}
		return resp
	}
	reader := token("reader", nil, aclv1.Policy_POLICY_READ)
	other := token("other team", []string{"other-*"}, aclv1.Policy_POLICY_OPERATE)
	operator := token("operator", []string{"*"}, aclv1.Policy_POLICY_OPERATE)

	name := unique("shop")
	dep, err := cl.Deploy(ctx, &deployv1.DeployRequest{Spec: &deployv1.ServiceSpec{Name: name, Image: "slipway/demo:v1", Count: 1, Port: 8080,
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, Canary: &deployv1.CanaryStrategy{
			Steps: []*deployv1.CanaryStep{{Weight: 10, Pause: durationpb.New(time.Hour)}, {Weight: 100}}}}}, RequestId: name, CreatedBy: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	rid := dep.GetRollout().GetId()

	// No cookie: pages go to the login, the stream and actions answer 401.
	anon := newWebClient(t, dashAddr)
	if resp, _ := anon.do(http.MethodGet, "/services/"+name, nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("page without a token: %s to %q, want 303 to /login", resp.Status, resp.Header.Get("Location"))
	}
	if resp, body := anon.do(http.MethodGet, "/events?view=overview", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stream without a token: %s %s, want 401", resp.Status, body)
	}
	if resp := anon.login("0000"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with an unknown token: %s, want 401", resp.Status)
	}

	// The reader logs in: the cookie is HttpOnly, Secure, SameSite=Strict.
	rd := newWebClient(t, dashAddr)
	resp := rd.login(reader.GetSecret())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %s", resp.Status)
	}
	set := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"slipway_token=", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(set, attr) {
			t.Errorf("Set-Cookie %q lacks %s", set, attr)
		}
	}
	resp, page := rd.do(http.MethodGet, "/services/"+name, nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, rid) {
		t.Fatalf("reader's service page: %s, rollout %s shown: %v", resp.Status, rid, strings.Contains(page, rid))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the page")
	}
	csrf := m[1]
	promote := "/api/rollouts/" + rid + "/promote"
	jsonHdr := map[string]string{"Content-Type": "application/json"}

	// Actions need the CSRF token, a same-origin request, and a token the
	// API lets act.
	if resp, body := rd.do(http.MethodPost, promote, jsonHdr, strings.NewReader(`{}`)); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Errorf("promote without the CSRF header: %s %s, want 403 naming CSRF", resp.Status, body)
	}
	cross := map[string]string{"Content-Type": "application/json", "X-Slipway-CSRF": csrf, "Sec-Fetch-Site": "cross-site"}
	if resp, body := rd.do(http.MethodPost, promote, cross, strings.NewReader(`{}`)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site promote: %s %s, want 403", resp.Status, body)
	}
	withCSRF := map[string]string{"Content-Type": "application/json", "X-Slipway-CSRF": csrf}
	resp, body := rd.do(http.MethodPost, promote, withCSRF, strings.NewReader(`{"reason":"try"}`))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "lacks operate") {
		t.Errorf("reader's promote: %s %s, want 403 with the API's reason (lacks operate)", resp.Status, body)
	}
	if resp, body := rd.do(http.MethodPost, "/api/rollouts/"+rid+"/explode", withCSRF, nil); resp.StatusCode != http.StatusNotFound ||
		!strings.Contains(body, "one of promote, pause, resume, abort") {
		t.Errorf("unknown action: %s %s, want 404 listing the actions", resp.Status, body)
	}
	if resp, body := rd.do(http.MethodPost, promote, withCSRF, strings.NewReader(`{"reason":`)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad JSON: %s %s, want 400", resp.Status, body)
	}

	// A token scoped to other services neither lists nor opens this one.
	ot := newWebClient(t, dashAddr)
	ot.login(other.GetSecret())
	if _, page := ot.do(http.MethodGet, "/", nil, nil); strings.Contains(page, name) {
		t.Errorf("the overview of a token for other-* lists %s", name)
	}
	if resp, page := ot.do(http.MethodGet, "/services/"+name, nil, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "lacks") {
		t.Errorf("service page for a token for other-*: %s, want 403 with the API's reason", resp.Status)
	}

	// The operator pauses through the dashboard: the API records it with
	// the operator's token.
	op := newWebClient(t, dashAddr)
	op.login(operator.GetSecret())
	_, page = op.do(http.MethodGet, "/services/"+name, nil, nil)
	opCSRF := csrfMeta.FindStringSubmatch(page)[1]
	if opCSRF == csrf {
		t.Error("two tokens got the same CSRF token")
	}
	resp, body = op.do(http.MethodPost, "/api/rollouts/"+rid+"/pause", map[string]string{"Content-Type": "application/json", "X-Slipway-CSRF": opCSRF},
		strings.NewReader(`{"reason":"look first"}`))
	var ans struct {
		OK      bool   `json:"ok"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil || resp.StatusCode != http.StatusOK || !ans.OK {
		t.Fatalf("operator's pause: %s %s", resp.Status, body)
	}
	ro, err := cl.GetRollout(ctx, &deployv1.GetRolloutRequest{Id: rid})
	if err != nil {
		t.Fatal(err)
	}
	cmds := ro.GetRollout().GetCommands()
	if len(cmds) != 1 || cmds[0].GetKind() != deployv1.CommandKind_COMMAND_KIND_PAUSE || cmds[0].GetAccessorId() != operator.GetToken().GetAccessorId() ||
		cmds[0].GetReason() != "look first" || !strings.HasPrefix(cmds[0].GetBy(), "dashboard: operator") {
		t.Errorf("commands after the dashboard's pause = %v, want one pause by the operator's token", cmds)
	}

	// The live stream sends the service's regions as SSE events, the
	// rollout region naming the rollout with its buttons (the engine is off:
	// the pause is recorded, the rollout still pending); a bad view is
	// refused.
	if resp, body := op.do(http.MethodGet, "/events?view=nonsense", nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("stream of an unknown view: %s %s, want 400", resp.Status, body)
	}
	sreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, op.base+"/events?view=service&name="+url.QueryEscape(name), nil)
	sresp, err := op.hc.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	if ct := sresp.Header.Get("Content-Type"); sresp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream: %s %s", sresp.Status, ct)
	}
	sc := bufio.NewScanner(sresp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var rolloutRegion string
	for sc.Scan() && rolloutRegion == "" {
		var ev struct{ ID, HTML string }
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && json.Unmarshal([]byte(data), &ev) == nil && ev.ID == "rollout" {
			rolloutRegion = ev.HTML
		}
	}
	sresp.Body.Close()
	if !strings.Contains(rolloutRegion, `data-rollout="`+rid+`"`) || !strings.Contains(rolloutRegion, `data-action="abort"`) {
		t.Errorf("the stream's rollout region = %.300q, want %s with its buttons", rolloutRegion, rid)
	}

	// Roll back goes through the API too: refused with its reason (the
	// service has only one release), nothing created.
	resp, body = op.do(http.MethodPost, "/api/services/"+name+"/rollback", map[string]string{"Content-Type": "application/json", "X-Slipway-CSRF": opCSRF},
		strings.NewReader(`{}`))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "only release") {
		t.Errorf("rollback of a service with one release: %s %s, want 409 saying it is the only release", resp.Status, body)
	}
	if svc, err := cl.GetService(ctx, &deployv1.GetServiceRequest{Name: name}); err != nil || svc.GetService().GetLatestRelease() != 1 {
		t.Errorf("after the refused rollback: latest release %d (%v), want 1", svc.GetService().GetLatestRelease(), err)
	}

	// A revoked token is logged out at its next page.
	if _, err := acls.RevokeToken(ctx, &aclv1.RevokeTokenRequest{AccessorId: reader.GetToken().GetAccessorId()}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "revoked token refused", func() error {
		if resp, _ := rd.do(http.MethodGet, "/", nil, nil); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
			return fmt.Errorf("GET / with the revoked token: %s to %q", resp.Status, resp.Header.Get("Location"))
		}
		return nil
	})
}
