package testenv

import (
	"net/http"
	"testing"
)

func TestStartConsulAnswersAndRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Consul agent; skipped by -short (make check)")
	}
	c := StartConsul(t)
	resp, err := http.Get(c.URL() + "/v1/agent/self")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("agent/self = %d", resp.StatusCode)
	}
	c.Stop()
	if _, err := http.Get(c.URL() + "/v1/agent/self"); err == nil {
		t.Fatal("consul still answers after Stop")
	}
	c.Start()
	if !leaderKnown(t.Context(), c.URL()) {
		t.Fatal("no leader after restart")
	}
}
