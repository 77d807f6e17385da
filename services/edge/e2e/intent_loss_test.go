package e2e

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
)

// TestIntentKeyLossKeepsRoutes: the intent key of a routed service
// disappears (a Consul agent restarted without its data): the edge keeps
// serving the service's last good routes, counts the loss as a
// missing_intent rejection, and follows the intent again once the
// coordinator writes it back. Before, it dropped the route: 404s until the
// next deploy.
func TestIntentKeyLossKeepsRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ed := e.startEdge("proxy")
	w1 := e.startInstance("web", 1)
	e.writeIntent("web", intent{gen: 1, host: "web.test", weights: map[uint64]int32{1: 100}})
	e.ackedGen(ed.id, "web", 1, w1)

	if _, err := e.client.KV().Delete(catalog.RouteKey("web"), nil); err != nil {
		t.Fatal(err)
	}
	client := testenv.MetricsClient(t)
	want := `slipway_edge_route_rejections_total{kind="missing_intent",service="web"} 1`
	testenv.Eventually(t, 20*time.Second, "the edge saw the intent key disappear", func() error {
		resp, err := client.Get("https://" + ed.metricsAddr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if !strings.Contains(string(body), want) {
			return fmt.Errorf("metrics lack %s", want)
		}
		return nil
	})
	for i := range 50 {
		if code, who, v, err := get(client, ed, "web.test", nil); err != nil || code != 200 || v != "v1" || who != w1.id {
			t.Fatalf("request %d without an intent key: %d %q %q %v; want the last good route", i, code, who, v, err)
		}
	}
	if a := e.ack(ed.id); a.GetGenerations()["web"] != 1 {
		t.Errorf("ack generations %v: want web kept at 1", a.GetGenerations())
	}
	// The coordinator writes it again (its generation unchanged, or a new
	// one): the edge follows it.
	w2 := e.startInstance("web", 2)
	e.writeIntent("web", intent{gen: 2, host: "web.test", weights: map[uint64]int32{2: 100}})
	e.ackedGen(ed.id, "web", 2, w2)
	if code, who, _, err := get(client, ed, "web.test", nil); err != nil || code != 200 || who != w2.id {
		t.Fatalf("after the intent came back: %d %q %v", code, who, err)
	}
}
