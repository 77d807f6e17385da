package main

import (
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("SLIPWAY_CONSUL_ADDR", "10.0.0.1:8500")
	t.Setenv("SLIPWAY_MODE", "nginx")
	o, err := parseFlags([]string{"-id", "e1", "-http-addr", ":9090"})
	if err != nil {
		t.Fatal(err)
	}
	if o.id != "e1" || o.consulAddr != "10.0.0.1:8500" || o.mode != "nginx" || o.httpAddr != ":9090" || o.grpcAddr != ":7420" {
		t.Fatalf("options %+v", o)
	}
	// A flag beats the environment.
	if o, err := parseFlags([]string{"-id", "e1", "-mode", "proxy"}); err != nil || o.mode != "proxy" {
		t.Fatalf("mode %q, %v", o.mode, err)
	}
	if _, err := parseFlags([]string{"-id", "e1", "-mode", "haproxy"}); err == nil || !strings.Contains(err.Error(), "-mode") {
		t.Fatalf("bad mode: err = %v", err)
	}
	if _, err := parseFlags([]string{"-id", ""}); err == nil || !strings.Contains(err.Error(), "-id") {
		t.Fatalf("empty id: err = %v", err)
	}
}
