package nginx

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/edge/internal/h1server"
	"slipway.dev/edge/routetable"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", name, d)
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
	}{{"nohosts.conf", nil}, {"twohosts.conf", []string{"api.local", "web.local"}}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(ConfigData{Version: 3, Dir: "/var/lib/slipway-edge/nginx", User: "root", Workers: 2,
				Listen: "8080", ControlAddr: "127.0.0.1:7421", Hosts: tc.hosts, WorkerShutdownTimeout: "30s"})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, got)
		})
	}
}

func TestRenderRejectsBadHost(t *testing.T) {
	if _, err := Render(ConfigData{Hosts: []string{"a; evil"}}); err == nil {
		t.Fatal("want error for a host with ';'")
	}
}

func TestEncodeGolden(t *testing.T) {
	tb := routetable.Table{Routes: map[string]routetable.Route{
		"web": {Service: "web", Host: "web.local", Path: "/", Generation: 4,
			Backends: []routetable.Backend{
				{Release: 1, Weight: 90, Upstreams: []routetable.Upstream{{ID: "a", Address: "127.0.0.1:9001"}, {ID: "b", Address: "127.0.0.1:9002"}}},
				{Release: 2, Weight: 10, Upstreams: []routetable.Upstream{{ID: "c", Address: "127.0.0.1:9003"}}},
			},
			Pins: []routetable.Pin{{Kind: routetable.PinHeader, Name: "X-Canary", Value: "yes", Release: 2}, {Kind: routetable.PinCookie, Name: "beta", Release: 2}}},
		"api": {Service: "api", Host: "api.local", Path: "/v1", Generation: 1,
			Backends: []routetable.Backend{{Release: 7, Weight: 100, Upstreams: []routetable.Upstream{{ID: "d", Address: "127.0.0.1:9004"}}}}},
	}}
	golden(t, "table.txt", Encode(12, tb))
}

// TestNginxLimits: the edge's limit flags become nginx directives; a limit
// switched off (negative) leaves its directive out.
func TestNginxLimits(t *testing.T) {
	d := NginxLimits(h1server.Limits{ReadHeaderTimeout: 2 * time.Second, MaxBodyBytes: 1000, MaxRequestsPerClient: 7, IdleTimeout: -1, MaxHeaderBytes: -1})
	want := LimitsData{ReadHeaderTimeout: "2000ms", ReadBodyTimeout: "60000ms", WriteTimeout: "60000ms", MaxBodyBytes: "1000", PerClient: 7}
	if d != want {
		t.Fatalf("limits %+v, want %+v", d, want)
	}
	conf, err := Render(ConfigData{Version: 1, Dir: "/d", Workers: 1, Listen: ":80", ControlAddr: "127.0.0.1:1", Limits: d})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"client_header_timeout 2000ms;", "client_max_body_size 1000;", "limit_conn slipway_per_client 7;"} {
		if !bytes.Contains(conf, []byte(s)) {
			t.Errorf("config lacks %q", s)
		}
	}
	for _, s := range []string{"keepalive_timeout", "large_client_header_buffers"} {
		if bytes.Contains(conf, []byte(s)) {
			t.Errorf("config has %q for a limit switched off", s)
		}
	}
}
