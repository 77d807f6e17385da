package proxy

import (
	"context"
	"strings"
	"testing"

	"slipway.dev/edge/internal/abuse"
	"slipway.dev/edge/routetable"
)

// TestAbuseCorpus sends each smuggling and abuse case to the built-in
// proxy on its own server and checks the client's answer and what reaches
// the backend (no smuggled request ever does).
func TestAbuseCorpus(t *testing.T) {
	be := abuse.StartBackend(t)
	p := New(Config{})
	t.Cleanup(p.Close)
	p.Apply(context.Background(), routeTable(abuse.Host, nil, routetable.Backend{Release: 1, Weight: 100,
		Upstreams: []routetable.Upstream{{ID: "a", Address: be.Addr}}}))
	addr := strings.TrimPrefix(serve(t, p), "http://")
	for _, c := range abuse.Cases {
		t.Run(c.Name, func(t *testing.T) {
			if err := abuse.Check(addr, be, c, c.Proxy); err != nil {
				t.Error(err)
			}
		})
	}
}
