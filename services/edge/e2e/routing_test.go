package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/edge/loadgen"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

var modes = []string{"proxy", "nginx"}

// TestRouting: instances and intent written into Consul are routed by
// weight (90/10 over 2,000 requests) and pins, and a deregistered instance
// gets no request once the edge's ack no longer lists it.
func TestRouting(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ed := e.startEdge(mode)
			a1, a2 := e.startInstance("web", 1), e.startInstance("web", 1)
			b1 := e.startInstance("web", 2)
			e.writeIntent("web", intent{gen: 1, host: "web.test", weights: map[uint64]int32{1: 90, 2: 10}, pins: []*edgev1.Pin{
				{Header: "X-Canary", Value: "yes", Release: 2}, {Cookie: "stable", Release: 1}}})
			e.ackedGen(ed.id, "web", 1, a1, a2, b1)

			client := &http.Client{Timeout: 5 * time.Second}
			versions := map[string]int{}
			for i := 0; i < 2000; i++ {
				code, _, v, err := get(client, ed, "web.test", nil)
				if err != nil || code != 200 {
					t.Fatalf("request %d: %d %v", i, code, err)
				}
				versions[v]++
			}
			share := float64(versions["v2"]) / 2000
			t.Logf("%s: 2,000 requests at 90/10: %v (v2 share %.3f)", mode, versions, share)
			if math.Abs(share-0.10) > 0.03 || versions["v1"]+versions["v2"] != 2000 {
				t.Fatalf("v2 share %.3f, want 0.10 ± 0.03 (%v)", share, versions)
			}
			for i := 0; i < 50; i++ {
				if _, _, v, _ := get(client, ed, "web.test", map[string]string{"X-Canary": "yes"}); v != "v2" {
					t.Fatalf("header pin routed to %q", v)
				}
				if _, _, v, _ := get(client, ed, "web.test", map[string]string{"Cookie": "stable=1"}); v != "v1" {
					t.Fatalf("cookie pin routed to %q", v)
				}
			}
			if code, _, _, _ := get(client, ed, "unknown.test", nil); code != 404 {
				t.Fatalf("unknown host: status %d, want 404", code)
			}
			// Other proxies can follow the same routes over gRPC.
			conn, err := rpc.Dial(ed.grpcAddr, testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleEdge))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			routes, err := edgev1.NewRouteServiceClient(conn).GetRoutes(context.Background(), &edgev1.GetRoutesRequest{})
			if err != nil || len(routes.GetRoutes()) != 1 || routes.GetRoutes()[0].GetGeneration() != 1 || len(routes.GetRoutes()[0].GetBackends()) != 2 {
				t.Fatalf("GetRoutes = %v, %v", routes, err)
			}

			// Deregister a2 but keep it running, so a request routed to it
			// would still be answered (and seen) rather than retried.
			if err := e.client.Agent().ServiceDeregister(a2.id); err != nil {
				t.Fatal(err)
			}
			e.waitAck(ed.id, "ack without "+a2.id, func(a *edgev1.EdgeAck) bool {
				return !slices.Contains(a.GetInstances()["web"].GetIds(), a2.id)
			})
			for i := 0; i < 300; i++ {
				code, who, _, err := get(client, ed, "web.test", nil)
				if err != nil || code != 200 {
					t.Fatalf("after removal, request %d: %d %v", i, code, err)
				}
				if who == a2.id {
					t.Fatalf("request %d reached %s after the ack dropped it", i, a2.id)
				}
			}
		})
	}
}

// TestSafetyFloors: a bad intent or one naming a release without instances
// keeps the last good routes, and one broken service does not affect another.
func TestSafetyFloors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ed := e.startEdge("proxy")
	w1 := e.startInstance("web", 1)
	p1 := e.startInstance("api", 1)
	e.writeIntent("web", intent{gen: 1, host: "web.test", weights: map[uint64]int32{1: 100}})
	e.writeIntent("api", intent{gen: 1, host: "api.test", weights: map[uint64]int32{1: 100}})
	e.ackedGen(ed.id, "web", 1, w1)
	e.ackedGen(ed.id, "api", 1, p1)

	if _, err := e.client.KV().Put(kv("web", `{"generation":2,"host":"web.test","weights":{"1":50}}`), nil); err != nil {
		t.Fatal(err)
	}
	e.writeIntent("api", intent{gen: 2, host: "api.test", weights: map[uint64]int32{7: 100}})
	e.startInstance("api", 1) // an instance change for the broken service
	// A healthy change to a third service still goes through.
	x1 := e.startInstance("other", 1)
	e.writeIntent("other", intent{gen: 1, host: "other.test", weights: map[uint64]int32{1: 100}})
	e.ackedGen(ed.id, "other", 1, x1)
	ack := e.ack(ed.id)
	if ack.GetGenerations()["web"] != 1 || ack.GetGenerations()["api"] != 1 {
		t.Fatalf("ack generations %v: want web and api kept at 1", ack.GetGenerations())
	}
	resp, err := testenv.MetricsClient(t).Get("https://" + ed.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		// Counted once per distinct reason (the first no_instances may
		// also come from an instance not yet seen when its intent arrived).
		`slipway_edge_route_rejections_total{kind="invalid_intent",service="web"} 1`,
		`slipway_edge_route_rejections_total{kind="no_instances",service="api"} `,
		`slipway_edge_route_degraded{service="api"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, h := range []string{"web.test", "api.test", "other.test"} {
		if code, _, v, err := get(client, ed, h, nil); err != nil || code != 200 || v != "v1" {
			t.Fatalf("%s: %d %q %v", h, code, v, err)
		}
	}
}

// TestZeroDowntime: steady keep-alive load while the intent flips between
// two releases 10 times and instances come and go: every request succeeds.
func TestZeroDowntime(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ed := e.startEdge(mode)
			blue := []*instance{e.startInstance("web", 1), e.startInstance("web", 1)}
			green := []*instance{e.startInstance("web", 2), e.startInstance("web", 2)}
			gen := uint64(1)
			e.writeIntent("web", intent{gen: gen, host: "web.test", weights: map[uint64]int32{1: 100, 2: 0}})
			e.ackedGen(ed.id, "web", gen, append(append([]*instance{}, blue...), green...)...)

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan loadgen.Result, 1)
			go func() {
				done <- loadgen.Run(ctx, loadgen.Config{URL: "http://" + ed.httpAddr + "/", Host: "web.test", Conns: 32, Rate: 800})
			}()
			defer cancel()
			all := func() []*instance { return append(append([]*instance{}, blue...), green...) }
			for flip := 0; flip < 10; flip++ {
				if flip == 5 {
					// A new service with a new host: nginx mode reloads
					// under load; web's traffic must not notice.
					x := e.startInstance("extra", 1)
					e.writeIntent("extra", intent{gen: 1, host: "extra.test", weights: map[uint64]int32{1: 100}})
					e.ackedGen(ed.id, "extra", 1, x)
				}
				gen++
				w := map[uint64]int32{1: 100, 2: 0}
				if flip%2 == 0 {
					w = map[uint64]int32{1: 0, 2: 100}
				}
				e.writeIntent("web", intent{gen: gen, host: "web.test", weights: w})
				e.ackedGen(ed.id, "web", gen, all()...)
				// Replace one instance of the idle colour: add a new one,
				// then remove the oldest the way the node agent does.
				idle := &blue
				if flip%2 == 1 {
					idle = &green
				}
				rel := (*idle)[0].release
				n := e.startInstance("web", rel)
				*idle = append(*idle, n)
				e.ackedGen(ed.id, "web", gen, all()...)
				old := (*idle)[0]
				*idle = (*idle)[1:]
				old.remove(ed.id)
			}
			// Keep the load running past the last change: until the
			// backends have answered another 300 of its requests.
			probe := &http.Client{Timeout: 5 * time.Second}
			defer probe.CloseIdleConnections()
			servedByAll := func() (int64, error) {
				var sum int64
				for _, in := range all() {
					n, err := in.served(probe)
					if err != nil {
						return 0, err
					}
					sum += n
				}
				return sum, nil
			}
			base, err := servedByAll()
			if err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, "300 more requests answered after the last change", func() error {
				n, err := servedByAll()
				if err != nil {
					return err
				}
				if n < base+300 {
					return fmt.Errorf("%d answered since the last change", n-base)
				}
				return nil
			})
			cancel()
			res := <-done
			fmt.Printf("zero-downtime %s: %s\n", mode, res)
			t.Logf("zero-downtime %s: %s", mode, res)
			if res.Non2xx != 0 || res.TransportErrors != 0 || res.OK < 500 {
				t.Fatalf("%s: want 0 failures: %s errors=%v", mode, res, res.Errors)
			}
			if mode == "nginx" {
				resp, err := testenv.MetricsClient(t).Get("https://" + ed.metricsAddr + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				// One reload for web.test at start, one for extra.test under load.
				if !strings.Contains(string(body), `slipway_edge_nginx_reloads_total{result="ok"} 2`) {
					t.Errorf("want exactly 2 nginx reloads (hosts changed twice), metrics:\n%s", grepLines(string(body), "nginx_reloads"))
				}
			}
			if res.ByValue["v1"] == 0 || res.ByValue["v2"] == 0 {
				t.Fatalf("traffic never reached both releases: %v", res.ByValue)
			}
		})
	}
}

// TestConsulOutage: while Consul is down the edge keeps routing with its
// last table; when Consul is back (a dev agent comes back empty) the edge
// picks up the new registrations and intent and acknowledges them under a
// new session.
func TestConsulOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ed := e.startEdge("proxy")
	w1 := e.startInstance("web", 1)
	e.writeIntent("web", intent{gen: 1, host: "web.test", weights: map[uint64]int32{1: 100}})
	e.ackedGen(ed.id, "web", 1, w1)

	e.consul.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 100; i++ {
		if code, _, v, err := get(client, ed, "web.test", nil); err != nil || code != 200 || v != "v1" {
			t.Fatalf("request %d with Consul down: %d %q %v", i, code, v, err)
		}
	}
	e.consul.Start()
	w2 := e.startInstance("web", 2)
	e.writeIntent("web", intent{gen: 2, host: "web.test", weights: map[uint64]int32{2: 100}})
	e.ackedGen(ed.id, "web", 2, w2)
	if code, who, _, err := get(client, ed, "web.test", nil); err != nil || code != 200 || who != w2.id {
		t.Fatalf("after Consul came back: %d %q %v", code, who, err)
	}
}

// TestDeadEdgeAckDisappears: an edge killed without a chance to clean up
// loses its ack when its Consul session's TTL lapses.
func TestDeadEdgeAckDisappears(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ed := e.startEdge("proxy")
	w1 := e.startInstance("web", 1)
	e.writeIntent("web", intent{gen: 1, host: "web.test", weights: map[uint64]int32{1: 100}})
	e.ackedGen(ed.id, "web", 1, w1)
	ed.kill()
	testenv.Eventually(t, 45*time.Second, "the dead edge's ack to expire", func() error {
		if a := e.ack(ed.id); a != nil {
			return fmt.Errorf("ack still there: %v", a)
		}
		return nil
	})
}

// TestKilledEdgeTakesNginxDown: an nginx-mode edge killed outright does not
// leave its nginx routing on with nobody maintaining routes or the ack.
func TestKilledEdgeTakesNginxDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ed := e.startEdge("nginx")
	w1 := e.startInstance("web", 1)
	e.writeIntent("web", intent{gen: 1, host: "web.test", weights: map[uint64]int32{1: 100}})
	e.ackedGen(ed.id, "web", 1, w1)
	b, err := os.ReadFile(filepath.Join(ed.dir, "nginx.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	ed.kill()
	testenv.Eventually(t, 20*time.Second, "nginx master to exit", func() error {
		if syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("nginx master (pid %d) still running", pid)
		}
		return nil
	})
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
