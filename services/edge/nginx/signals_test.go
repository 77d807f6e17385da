package nginx

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"slipway.dev/edge/routetable"
	"slipway.dev/edge/signals"
	"slipway.dev/platform/testenv"
)

// nginx counts every response per release in its shared dictionary
// (log_by_lua): a canary answering 500 shows as errors of its release only,
// with a latency histogram per release; the counts survive a reload.
func TestRunnerCountsGoldenSignals(t *testing.T) {
	r, listen := startRunner(t)
	ok := backend(t, "stable")
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond)
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(bad.Close)
	tbl := routetable.Table{Routes: map[string]routetable.Route{"web": {Service: "web", Host: "web.local", Path: "/", Generation: 1, Backends: []routetable.Backend{
		{Release: 1, Weight: 50, Upstreams: []routetable.Upstream{ok}},
		{Release: 2, Weight: 50, Upstreams: []routetable.Upstream{{ID: "bad", Address: strings.TrimPrefix(bad.URL, "http://")}}},
	}}}}
	ctx := context.Background()
	if err := r.Apply(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		fetch(listen, "web.local")
	}
	var got map[signals.Key]signals.Totals
	// log_by_lua runs after the response is sent: poll for the last ones.
	testenv.Eventually(t, 10*time.Second, "40 requests counted", func() error {
		var err error
		if got, err = r.Snapshot(ctx); err != nil {
			return err
		}
		if n := got[signals.Key{Service: "web", Release: 1}].Requests + got[signals.Key{Service: "web", Release: 2}].Requests; n != 40 {
			return fmt.Errorf("%d requests counted", n)
		}
		return nil
	})
	s1, s2 := got[signals.Key{Service: "web", Release: 1}], got[signals.Key{Service: "web", Release: 2}]
	if s1.Requests != 20 || s1.Errors != 0 || s2.Requests != 20 || s2.Errors != 20 {
		t.Errorf("v1 %d req %d err, v2 %d req %d err; want 20/0 and 20/20", s1.Requests, s1.Errors, s2.Requests, s2.Errors)
	}
	if s2.Latency.Total() != 20 || s2.Latency.Quantile(0.5) < 15*time.Millisecond {
		t.Errorf("v2 latency: %d counted, p50 %s; want 20 at about 20ms", s2.Latency.Total(), s2.Latency.Quantile(0.5))
	}
	// A reload (a new host) keeps the counts.
	tbl.Routes["api"] = routetable.Route{Service: "api", Host: "api.local", Path: "/", Generation: 1,
		Backends: []routetable.Backend{{Release: 7, Weight: 100, Upstreams: []routetable.Upstream{ok}}}}
	if err := r.Apply(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	fetch(listen, "api.local")
	testenv.Eventually(t, 10*time.Second, "api counted after the reload", func() error {
		var err error
		if got, err = r.Snapshot(ctx); err != nil {
			return err
		}
		if got[signals.Key{Service: "api", Release: 7}].Requests != 1 {
			return fmt.Errorf("api v7: %+v", got[signals.Key{Service: "api", Release: 7}])
		}
		return nil
	})
	if n := got[signals.Key{Service: "web", Release: 2}].Requests; n != 20 {
		t.Errorf("after the reload web v2 has %d requests, want the 20 counted before", n)
	}
}

func TestParseSignals(t *testing.T) {
	got, err := parseSignals("web\t2\tn\t10\nweb\t2\te\t3\nweb\t2\tb5\t10\n\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := got[signals.Key{Service: "web", Release: 2}]; s.Requests != 10 || s.Errors != 3 || s.Latency.Counts[5] != 10 {
		t.Errorf("parsed %+v", s)
	}
	for _, bad := range []string{"web\t2\tn", "web\tx\tn\t1", "web\t2\tb999\t1", "web\t2\tq\t1", "web\t2\tn\t-1"} {
		if _, err := parseSignals(bad); err == nil {
			t.Errorf("parseSignals(%q) accepted it", bad)
		}
	}
}
