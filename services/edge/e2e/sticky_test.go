package e2e

import (
	"context"
	"math"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// TestStickyCanary, in both edge modes: with a sticky 10% canary, 1,000
// clients (each with its own cookie jar, 4 requests each) each see a
// single release, about 10% of them the canary; a request carrying the
// canary's header route goes to the canary whatever its cookie; the
// sticky setting reaches RouteService consumers.
func TestStickyCanary(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			ed := e.startEdge(mode)
			a, b := e.startInstance("web", 1), e.startInstance("web", 2)
			e.writeIntent("web", intent{gen: 1, host: "web.test", weights: map[uint64]int32{1: 90, 2: 10},
				pins:   []*edgev1.Pin{{Header: "X-Canary", Value: "always", Release: 2}},
				sticky: &edgev1.Sticky{Cookie: "slipway-web", MaxAgeSeconds: 3600}})
			e.ackedGen(ed.id, "web", 1, a, b)

			shared := &http.Transport{MaxIdleConnsPerHost: 16}
			defer shared.CloseIdleConnections()
			const clients, each = 1000, 4
			onCanary, setCookie := 0, ""
			var stableClient *http.Client
			for c := 0; c < clients; c++ {
				jar, _ := cookiejar.New(nil)
				client := &http.Client{Transport: shared, Jar: jar, Timeout: 5 * time.Second}
				seen := ""
				for i := 0; i < each; i++ {
					req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+ed.httpAddr+"/", nil)
					req.Host = "web.test"
					resp, err := client.Do(req)
					if err != nil {
						t.Fatalf("client %d request %d: %v", c, i, err)
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Fatalf("client %d request %d: status %d", c, i, resp.StatusCode)
					}
					v := resp.Header.Get("X-Slipway-Version")
					if i == 0 && setCookie == "" {
						setCookie = resp.Header.Get("Set-Cookie")
					}
					if i > 0 && resp.Header.Get("Set-Cookie") != "" {
						t.Fatalf("client %d request %d: a second Set-Cookie %q", c, i, resp.Header.Get("Set-Cookie"))
					}
					if seen != "" && v != seen {
						t.Fatalf("client %d saw %s, then %s: not sticky", c, seen, v)
					}
					seen = v
				}
				if seen == "v2" {
					onCanary++
				} else if stableClient == nil {
					stableClient = client
				}
			}
			share := float64(onCanary) / clients
			t.Logf("%s: %d of %d clients on the canary (%.3f), each on one release for %d requests; first Set-Cookie %q", mode, onCanary, clients, share, each, setCookie)
			if math.Abs(share-0.10) > 0.035 {
				t.Errorf("canary clients %.3f, want about 0.10", share)
			}
			for _, want := range []string{"slipway-web=", "Path=/", "Max-Age=3600", "HttpOnly"} {
				if !strings.Contains(setCookie, want) {
					t.Errorf("Set-Cookie %q lacks %q", setCookie, want)
				}
			}

			// The header route wins over a stable client's cookie.
			for i := 0; i < 20; i++ {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+ed.httpAddr+"/", nil)
				req.Host = "web.test"
				req.Header.Set("X-Canary", "always")
				resp, err := stableClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if v := resp.Header.Get("X-Slipway-Version"); v != "v2" {
					t.Fatalf("a request with X-Canary: always went to %s, want the canary v2", v)
				}
			}

			conn, err := rpc.Dial(ed.grpcAddr, testenv.ClientCreds(t), rpc.ExpectRole(pki.RoleEdge))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			routes, err := edgev1.NewRouteServiceClient(conn).GetRoutes(context.Background(), &edgev1.GetRoutesRequest{})
			if err != nil || len(routes.GetRoutes()) != 1 {
				t.Fatalf("GetRoutes = %v, %v", routes, err)
			}
			if st := routes.GetRoutes()[0].GetSticky(); st.GetCookie() != "slipway-web" || st.GetMaxAgeSeconds() != 3600 {
				t.Errorf("GetRoutes sticky = %v, want cookie slipway-web for 3600s", st)
			}
		})
	}
}
