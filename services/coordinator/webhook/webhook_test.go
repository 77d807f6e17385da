package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"slipway.dev/coordinator/analysis"
)

// Against a real HTTP server on loopback: 2xx passes with the context in
// the body; a failing answer is retried and then fails; a hung server
// times out.
func TestAsk(t *testing.T) {
	var calls atomic.Int32
	var got Context
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/no", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) })
	hang := make(chan struct{})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) })
	ctx := context.Background()
	body := Context{Rollout: "web-2", Service: "web", CanaryRelease: 2, StableRelease: 1, Weight: 20,
		Canary: SignalsOf(analysis.Sample{Requests: 100, Errors: 5})}

	g := Ask(ctx, srv.Client(), analysis.Webhook{Name: "ok", URL: srv.URL + "/ok", Timeout: time.Second}, body)
	if !g.Passed || got.Rollout != "web-2" || got.Canary.Requests != 100 || got.Canary.ErrorRate != 5 {
		t.Errorf("2xx: %+v, body received %+v", g, got)
	}
	g = Ask(ctx, srv.Client(), analysis.Webhook{Name: "flaky", URL: srv.URL + "/flaky", Timeout: time.Second, Retries: 2}, body)
	if !g.Passed || !strings.Contains(g.Detail, "attempt 3") || calls.Load() != 3 {
		t.Errorf("flaky with 2 retries: %+v after %d calls, want a pass at attempt 3", g, calls.Load())
	}
	g = Ask(ctx, srv.Client(), analysis.Webhook{Name: "no", URL: srv.URL + "/no", Timeout: time.Second, Retries: 1}, body)
	if g.Passed || !strings.Contains(g.Detail, "answered 403 (2 attempts)") {
		t.Errorf("403: %+v", g)
	}
	g = Ask(ctx, srv.Client(), analysis.Webhook{Name: "hang", URL: srv.URL + "/hang", Timeout: 200 * time.Millisecond}, body)
	if g.Passed || !strings.Contains(g.Detail, "timed out after 200ms") {
		t.Errorf("hung server: %+v", g)
	}
}
