package traffic

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

func TestGeneratorRecordsVersionsAndFailures(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "demo.local" {
			http.Error(w, "wrong host", http.StatusNotFound)
			return
		}
		if n.Add(1)%4 == 0 {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		w.Header().Set(VersionHeader, "v7")
	}))
	defer srv.Close()
	g, err := Start(Config{URL: srv.URL, Host: "demo.local", Rate: 200, Workers: 2}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "20 requests sent", func() error {
		if sent, _ := g.Counts(); sent < 20 {
			return fmt.Errorf("only %d sent", sent)
		}
		return nil
	})
	samples := g.Stop()
	var ok, failed int
	for _, s := range samples {
		switch {
		case s.OK() && s.Version == "v7":
			ok++
		case s.Err == "HTTP 502":
			failed++
		default:
			t.Fatalf("unexpected sample %+v", s)
		}
		if s.At <= 0 {
			t.Fatalf("sample without offset %+v", s)
		}
	}
	if int64(len(samples)) != n.Load() || failed != len(samples)/4 || ok == 0 {
		t.Fatalf("%d samples (%d ok, %d failed) for %d requests served", len(samples), ok, failed, n.Load())
	}
	// Stopped means stopped.
	before := n.Load()
	time.Sleep(50 * time.Millisecond) // a deliberate window in which nothing may arrive after Stop (not a wait)
	if n.Load() != before {
		t.Fatalf("requests after Stop")
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{{}, {URL: "http://x", Workers: 1}, {URL: "http://x", Rate: 1}} {
		if _, err := Start(c, time.Now()); err == nil {
			t.Errorf("Start(%+v) accepted", c)
		}
	}
}
