package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// portsImage is the demo built from this tree's sources (with its
// METRICS_PORT) by buildDemoImage.
const portsImage = "slipway/demo:p1"

// hostGet GETs http://127.0.0.1:port/path from outside the containers.
func hostGet(port int, path string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET :%d%s: status %d", port, path, resp.StatusCode)
	}
	return string(b), err
}

// TestNamedPorts runs a real coordinator, Consul, a Docker node agent and
// an edge. A service with two named ports, "metrics" listed first and
// "http" routed (route_port), health-checked on "metrics": the rollout
// succeeds; each instance answers on both host ports from outside its
// container (the app on http, /metrics on metrics); Consul holds the
// routed host port as the service port, both as port_<name> meta, and a
// check probing the metrics port; the edge routes to the http port.
// A spec whose route_port names no port is refused with a field error.
func TestNamedPorts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator, a node agent with Docker containers and an edge; skipped by -short")
	}
	requireDocker(t)
	buildDemoImage(t, "p1", "teal")
	c := testenv.StartConsul(t, testenv.ConsulACL())
	ed := startEdge(t, c.Addr(), "proxy")
	startAgent(t, c.Addr())
	s := &scenario{t: t, deploy: startCoordinator(t, c.Addr()), consul: c.AdminClient(t), edge: ed, name: unique("ports")}
	host := s.name + ".test"
	spec := func() *deployv1.ServiceSpec {
		return &deployv1.ServiceSpec{
			Name: s.name, Image: portsImage, Count: 2,
			Ports:     []*deployv1.Port{{Name: "metrics", Port: 9100}, {Name: "http", Port: 8080, Protocol: "tcp"}},
			RoutePort: "http",
			Check: &deployv1.HealthCheck{Http: "/healthz", Port: "metrics", Interval: durationpb.New(500 * time.Millisecond),
				Timeout: durationpb.New(500 * time.Millisecond)},
			Route:       &deployv1.Route{Host: host},
			KillTimeout: durationpb.New(time.Second),
			Update:      quick(&deployv1.UpdateStrategy{}),
		}
	}

	bad := spec()
	bad.RoutePort = "web"
	_, err := s.deploy.Deploy(context.Background(), &deployv1.DeployRequest{Spec: bad, RequestId: s.name + "/bad", CreatedBy: "e2e"})
	if d := fieldError(t, err, "spec.route_port"); !strings.Contains(d, `"web" is not the name of a port`) {
		t.Errorf("spec.route_port: %s", d)
	}

	var id string
	s.rpc("deploy", func(ctx context.Context) error {
		resp, err := s.deploy.Deploy(ctx, &deployv1.DeployRequest{Spec: spec(), RequestId: s.name, CreatedBy: "e2e"})
		id = resp.GetRollout().GetId()
		return err
	})
	s.waitState(id, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)

	entries, _, err := s.consul.Health().Service(s.name, "", true, nil)
	if err != nil || len(entries) != 2 {
		t.Fatalf("passing instances of %s: %d (%v), want 2", s.name, len(entries), err)
	}
	for _, e := range entries {
		svc := e.Service
		httpPort, _ := strconv.Atoi(svc.Meta["port_http"])
		metricsPort, _ := strconv.Atoi(svc.Meta["port_metrics"])
		if httpPort != svc.Port || metricsPort == 0 || metricsPort == httpPort {
			t.Fatalf("%s: service port %d, meta %v; want port_http the service port and port_metrics another", svc.ID, svc.Port, svc.Meta)
		}
		if body, err := hostGet(httpPort, "/"); err != nil || !strings.Contains(body, "from p1 (teal)") {
			t.Errorf("%s: http port %d answers %q, %v", svc.ID, httpPort, body, err)
		}
		if body, err := hostGet(metricsPort, "/metrics"); err != nil || !strings.Contains(body, `demo_requests_total{version="p1",colour="teal"}`) {
			t.Errorf("%s: metrics port %d answers %q, %v", svc.ID, metricsPort, body, err)
		}
		// Consul's own check probes the metrics port: its output names the
		// URL once it has run (the local agent's view: the catalog syncs
		// an unchanged status's output only every few minutes).
		want := "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/healthz"
		testenv.Until(t, 10*time.Second, svc.ID+" check probing "+want, func() string {
			checks, err := s.consul.Agent().Checks()
			if err != nil {
				return err.Error()
			}
			ch, ok := checks[svc.ID+":check"]
			if !ok {
				return "no check " + svc.ID + ":check"
			}
			if !strings.Contains(ch.Output, want) || ch.Status != "passing" {
				return fmt.Sprintf("check %s: %q", ch.Status, ch.Output)
			}
			return ""
		})
	}

	// The edge routes to the http port: only the app answers with its
	// version header (the metrics port's handler sets none).
	testenv.Until(t, 30*time.Second, "edge serves p1 on the http port", func() string {
		got := (&traffic{byVersion: map[string]int{}}).probe(ed.httpAddr, host, nil, 4)
		if got["p1"] != 4 {
			return fmt.Sprintf("answers %v", got)
		}
		return ""
	})
	// The metrics handler counted what the edge sent to the app.
	served := 0
	for _, e := range entries {
		p, _ := strconv.Atoi(e.Service.Meta["port_metrics"])
		body, _ := hostGet(p, "/metrics")
		var n int
		if i := strings.LastIndexByte(strings.TrimSpace(body), ' '); i >= 0 {
			n, _ = strconv.Atoi(strings.TrimSpace(body)[i+1:])
		}
		served += n
	}
	if served < 4 {
		t.Errorf("the instances' metrics count %d requests served, want at least the edge's 4", served)
	}
}
