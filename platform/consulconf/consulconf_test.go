package consulconf

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// clearEnv unsets every CONSUL_* variable consul/api reads, for the test.
func clearEnv(t *testing.T) {
	for _, k := range []string{api.HTTPAddrEnvName, api.HTTPTokenEnvName, api.HTTPTokenFileEnvName, api.HTTPSSLEnvName,
		api.HTTPCAFile, api.HTTPCAPath, api.HTTPClientCert, api.HTTPClientKey, api.HTTPTLSServerName, api.HTTPSSLVerifyEnvName} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
}

func TestAPIConfig(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env-token")
	flagFile := filepath.Join(dir, "flag-token")
	os.WriteFile(envFile, []byte("from-env-file\n"), 0o600)
	os.WriteFile(flagFile, []byte("  from-flag-file\n"), 0o600)

	type want struct {
		addr, scheme, token, ca, cert, server string
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want want
	}{
		{name: "defaults", want: want{addr: DefaultAddr, scheme: "http"}},
		{name: "CONSUL_HTTP_* honoured",
			env: map[string]string{"CONSUL_HTTP_ADDR": "10.0.0.1:8501", "CONSUL_HTTP_TOKEN": "env-token", "CONSUL_HTTP_SSL": "true",
				"CONSUL_CACERT": "/env/ca.pem", "CONSUL_CLIENT_CERT": "/env/c.pem", "CONSUL_CLIENT_KEY": "/env/k.pem", "CONSUL_TLS_SERVER_NAME": "consul.example"},
			want: want{addr: "10.0.0.1:8501", scheme: "https", token: "env-token", ca: "/env/ca.pem", cert: "/env/c.pem", server: "consul.example"}},
		{name: "flags win over the environment",
			env:  map[string]string{"CONSUL_HTTP_ADDR": "10.0.0.1:8501", "CONSUL_HTTP_TOKEN": "env-token", "CONSUL_CACERT": "/env/ca.pem"},
			args: []string{"-consul-addr", "10.0.0.2:8500", "-consul-token", "flag-token", "-consul-ca", "/flag/ca.pem", "-consul-scheme", "http"},
			want: want{addr: "10.0.0.2:8500", scheme: "http", token: "flag-token", ca: "/flag/ca.pem"}},
		{name: "token file from the environment",
			env:  map[string]string{"CONSUL_HTTP_TOKEN_FILE": envFile, "CONSUL_HTTP_TOKEN": "env-token"},
			want: want{addr: DefaultAddr, scheme: "http", token: "from-env-file"}},
		{name: "token flag beats the environment's token file",
			env:  map[string]string{"CONSUL_HTTP_TOKEN_FILE": envFile},
			args: []string{"-consul-token", "flag-token"},
			want: want{addr: DefaultAddr, scheme: "http", token: "flag-token"}},
		{name: "token file flag beats the environment's token",
			env:  map[string]string{"CONSUL_HTTP_TOKEN": "env-token"},
			args: []string{"-consul-token-file", flagFile},
			want: want{addr: DefaultAddr, scheme: "http", token: "from-flag-file"}},
		{name: "a CA makes it https",
			args: []string{"-consul-ca", "/flag/ca.pem"},
			want: want{addr: DefaultAddr, scheme: "https", ca: "/flag/ca.pem"}},
		{name: "a CA from the environment makes it https",
			env:  map[string]string{"CONSUL_CACERT": "/env/ca.pem"},
			want: want{addr: DefaultAddr, scheme: "https", ca: "/env/ca.pem"}},
		{name: "CONSUL_HTTP_SSL=false keeps http despite a CA",
			env:  map[string]string{"CONSUL_HTTP_SSL": "false", "CONSUL_CACERT": "/env/ca.pem"},
			want: want{addr: DefaultAddr, scheme: "http", ca: "/env/ca.pem"}},
		{name: "an https:// address",
			args: []string{"-consul-addr", "https://consul.example:8501"},
			want: want{addr: "consul.example:8501", scheme: "https"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var c Config
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			c.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := c.APIConfig()
			if err != nil {
				t.Fatal(err)
			}
			// NewClient applies the token file and the address's scheme.
			cl, err := api.NewClient(cfg)
			if err != nil && !strings.Contains(err.Error(), "/env/") && !strings.Contains(err.Error(), "/flag/") { // the TLS files do not exist
				t.Fatal(err)
			}
			_ = cl
			got := want{addr: cfg.Address, scheme: cfg.Scheme, token: cfg.Token, ca: cfg.TLSConfig.CAFile, cert: cfg.TLSConfig.CertFile, server: cfg.TLSConfig.Address}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	clearEnv(t)
	for _, tt := range []struct {
		c    Config
		want string
	}{
		{Config{Token: "a", TokenFile: "f"}, "-consul-token-file"},
		{Config{Scheme: "ftp"}, "-consul-scheme"},
		{Config{CertFile: "c.pem"}, "-consul-key"},
	} {
		if err := tt.c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tt.c, err, tt.want)
		}
		if _, err := tt.c.Client(); err == nil {
			t.Errorf("Client(%+v) succeeded", tt.c)
		}
	}
	t.Setenv("CONSUL_CLIENT_CERT", "c.pem")
	if _, err := (Config{}).APIConfig(); err == nil || !strings.Contains(err.Error(), "CONSUL_CLIENT_KEY") {
		t.Errorf("a client certificate without its key: err = %v", err)
	}
}

func TestEndpointHidesToken(t *testing.T) {
	clearEnv(t)
	got := Config{Addr: "127.0.0.1:8500", Token: "s3cret"}.Endpoint()
	if got != "http://127.0.0.1:8500 (token)" || strings.Contains(got, "s3cret") {
		t.Errorf("Endpoint = %q", got)
	}
	if got := (Config{CAFile: "ca.pem"}).Endpoint(); got != "https://"+DefaultAddr+" (anonymous)" {
		t.Errorf("Endpoint = %q", got)
	}
}

func TestExplain(t *testing.T) {
	denied := api.StatusError{Code: 403, Body: `Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission 'service:write' on "web"`}
	err := Explain(fmt.Errorf("consul: register web-1: %w", denied), "nodeagent")
	if !errors.Is(err, ErrPermissionDenied) || !IsPermissionDenied(err) {
		t.Fatalf("Explain = %v: not ErrPermissionDenied", err)
	}
	for _, want := range []string{"deployments/consul/nodeagent.hcl", "-consul-token", "service:write"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Explain = %q, want it to name %q", err, want)
		}
	}
	if again := Explain(err, "nodeagent"); again != err {
		t.Errorf("Explain twice = %v", again)
	}
	other := errors.New("connection refused")
	if Explain(other, "edge") != other || IsPermissionDenied(other) {
		t.Error("a non-ACL error is changed")
	}
	if Explain(nil, "edge") != nil {
		t.Error("Explain(nil) != nil")
	}
}
