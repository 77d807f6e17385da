package testenv

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"slipway.dev/platform/consulconf"
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

func TestStartConsulWithACLDeniesAnonymousAndKeepsTokensAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Consul agent; skipped by -short (make check)")
	}
	c := StartConsul(t, ConsulACL())
	if !c.ACL() || c.ManagementToken() == "" {
		t.Fatal("no management token")
	}
	anon := c.Client(t, "")
	if _, err := anon.KV().Put(&api.KVPair{Key: "slipway/routes/web", Value: []byte("{}")}, nil); !consulconf.IsPermissionDenied(err) {
		t.Fatalf("anonymous KV write: err = %v, want permission denied", err)
	}
	tok := c.ComponentToken(t, "coordinator")
	if again := c.ComponentToken(t, "coordinator"); again != tok {
		t.Fatal("ComponentToken made a second token")
	}
	coord := c.Client(t, tok)
	put := func() error {
		_, err := coord.KV().Put(&api.KVPair{Key: "slipway/routes/web", Value: []byte("{}")}, nil)
		return err
	}
	if err := put(); err != nil {
		t.Fatalf("coordinator token KV write: %v", err)
	}
	if _, err := coord.KV().Put(&api.KVPair{Key: "other/key", Value: []byte("x")}, nil); !consulconf.IsPermissionDenied(err) {
		t.Fatalf("coordinator token writing outside slipway/routes/: err = %v, want permission denied", err)
	}
	// A dev agent forgets everything when it restarts; StartConsul gives
	// the tokens back, with the same secrets.
	c.Stop()
	c.Start()
	if err := put(); err != nil {
		t.Fatalf("coordinator token KV write after a restart: %v", err)
	}
}

func TestStartConsulWithTLSRequiresClientCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Consul agent; skipped by -short (make check)")
	}
	c := StartConsul(t, ConsulTLS(), ConsulACL())
	if !strings.HasPrefix(c.URL(), "https://") {
		t.Fatalf("URL = %s", c.URL())
	}
	if _, _, err := c.AdminClient(t).KV().Get("x", nil); err != nil {
		t.Fatalf("with CA and client certificate: %v", err)
	}
	noCert := c.Config(c.ManagementToken())
	noCert.CertFile, noCert.KeyFile = "", ""
	cl, err := noCert.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.KV().Get("x", nil); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// The same settings as Consul's own environment variables, read by
	// consul/api under a zero consulconf.Config.
	for _, kv := range c.Env(c.ManagementToken()) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	if cl, err = (consulconf.Config{}).Client(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.KV().Put(&api.KVPair{Key: "x", Value: []byte("y")}, nil); err != nil {
		t.Fatalf("with CONSUL_HTTP_* from Env: %v", err)
	}
	for _, kv := range c.Env("") {
		k, _, _ := strings.Cut(kv, "=")
		t.Setenv(k, "")
	}
	plain := consulconf.Config{Addr: c.Addr(), Scheme: "http", Token: c.ManagementToken()}
	if cl, err = plain.Client(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.KV().Get("x", nil); err == nil {
		t.Fatal("plain HTTP was served")
	}
}
