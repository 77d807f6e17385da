package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"slipway.dev/edge/internal/h1server"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("SLIPWAY_CONSUL_ADDR", "10.0.0.1:8500")
	t.Setenv("SLIPWAY_MODE", "nginx")
	t.Setenv("SLIPWAY_CONSUL_TOKEN_FILE", "/etc/slipway/consul-token")
	o, err := parseFlags([]string{"-id", "e1", "-http-addr", ":9090", "-insecure", "-consul-ca", "/etc/consul/ca.pem"})
	if err != nil {
		t.Fatal(err)
	}
	if o.id != "e1" || o.consul.Addr != "10.0.0.1:8500" || o.mode != "nginx" || o.httpAddr != ":9090" || o.grpcAddr != "127.0.0.1:7420" ||
		o.consul.TokenFile != "/etc/slipway/consul-token" || o.consul.CAFile != "/etc/consul/ca.pem" {
		t.Fatalf("options %+v", o)
	}
	// A flag beats the environment.
	if o, err := parseFlags([]string{"-id", "e1", "-mode", "proxy", "-insecure"}); err != nil || o.mode != "proxy" {
		t.Fatalf("mode %q, %v", o.mode, err)
	}
	if _, err := parseFlags([]string{"-id", "e1", "-mode", "haproxy", "-insecure"}); err == nil || !strings.Contains(err.Error(), "-mode") {
		t.Fatalf("bad mode: err = %v", err)
	}
	for _, bad := range []string{"0", "1.5", "-0.1"} {
		if _, err := parseFlags([]string{"-id", "e1", "-insecure", "-coalesce-budget", bad}); err == nil || !strings.Contains(err.Error(), "-coalesce-budget") {
			t.Fatalf("-coalesce-budget %s: err = %v", bad, err)
		}
	}
	if o, err := parseFlags([]string{"-id", "e1", "-insecure", "-coalesce-budget", "0.5"}); err != nil || o.coalesceBudget != 0.5 {
		t.Fatalf("-coalesce-budget 0.5: %v, %v", o.coalesceBudget, err)
	}
	if _, err := parseFlags([]string{"-id", "", "-insecure"}); err == nil || !strings.Contains(err.Error(), "-id") {
		t.Fatalf("empty id: err = %v", err)
	}
	if _, err := parseFlags([]string{"-id", "e1", "-insecure", "-consul-token", "x"}); err == nil || !strings.Contains(err.Error(), "-consul-token-file") {
		t.Fatalf("token and token file: err = %v", err)
	}
}

func TestParseFlagsRequiresTLSOrInsecure(t *testing.T) {
	for _, env := range []string{"SLIPWAY_TLS_CA", "SLIPWAY_TLS_CERT", "SLIPWAY_TLS_KEY", "SLIPWAY_INSECURE"} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	if _, err := parseFlags([]string{"-id", "e1"}); err == nil || !strings.Contains(err.Error(), "-tls-ca") || !strings.Contains(err.Error(), "-insecure") {
		t.Fatalf("no TLS flags: err = %v, want a refusal naming -tls-ca and -insecure", err)
	}
	if _, err := parseFlags([]string{"-id", "e1", "-insecure", "-tls-cert", "c.pem"}); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Fatalf("-insecure with TLS files: err = %v", err)
	}
}

func TestParseHTTPLimits(t *testing.T) {
	o, err := parseFlags([]string{"-insecure"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.lean || o.limits != h1server.DefaultLimits || o.connectTimeout != 2*time.Second {
		t.Fatalf("defaults: lean %v limits %+v connect %v", o.lean, o.limits, o.connectTimeout)
	}
	t.Setenv("SLIPWAY_HTTP_MAX_CONNS", "10")
	o, err = parseFlags([]string{"-insecure", "-http-lean=false", "-http-max-body-bytes", "1000", "-http-read-body-timeout", "3s",
		"-http-max-requests-per-client", "-1", "-upstream-connect-timeout", "250ms"})
	if err != nil {
		t.Fatal(err)
	}
	if o.lean || o.limits.MaxBodyBytes != 1000 || o.limits.ReadBodyTimeout != 3*time.Second || o.limits.MaxRequestsPerClient != -1 ||
		o.limits.MaxConns != 10 || o.connectTimeout != 250*time.Millisecond {
		t.Fatalf("set: lean %v limits %+v connect %v", o.lean, o.limits, o.connectTimeout)
	}
	if _, err := parseFlags([]string{"-insecure", "-upstream-connect-timeout", "0s"}); err == nil || !strings.Contains(err.Error(), "-upstream-connect-timeout") {
		t.Fatalf("zero connect timeout: %v", err)
	}
}
