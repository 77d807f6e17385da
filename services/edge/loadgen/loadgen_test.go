package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsOutcomes(t *testing.T) {
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "svc.test" {
			http.Error(w, "bad host", http.StatusBadRequest)
			return
		}
		if n.Add(1)%10 == 0 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Slipway-Version", "v1")
	}))
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res := Run(ctx, Config{URL: s.URL, Host: "svc.test", Conns: 4, Rate: 400})
	if res.Requests < 50 || res.Non2xx == 0 || res.OK != res.ByValue["v1"] || res.Requests != res.OK+res.Non2xx+res.TransportErrors {
		t.Fatalf("counts don't add up: %s", res)
	}
	if res.TransportErrors != 0 {
		t.Fatalf("transport errors against a healthy server: %v", res.Errors)
	}
}
