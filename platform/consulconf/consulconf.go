// Package consulconf is how every Slipway component reaches Consul: the
// agent's address, TLS to it and the component's ACL token, as flags named
// after Consul's own CONSUL_HTTP_* settings, with those environment variables
// honoured underneath.
//
// Precedence, highest first: a -consul-* flag on the command line, the
// component's SLIPWAY_CONSUL_* environment variable (the mains turn those
// into flag values), then Consul's own CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
// CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL, CONSUL_CACERT, CONSUL_CAPATH,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY and CONSUL_TLS_SERVER_NAME as read by
// consul/api's DefaultConfig, then the defaults (127.0.0.1:8500, plain HTTP,
// no token, i.e. Consul's anonymous token).
package consulconf

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/consul/api"
)

// DefaultAddr is the Consul agent address used when neither -consul-addr
// nor CONSUL_HTTP_ADDR is set.
const DefaultAddr = "127.0.0.1:8500"

// ErrPermissionDenied is matched (errors.Is) by the errors Explain wraps:
// Consul refused the request for the token's lack of a permission (403), or
// did not know the token at all.
var ErrPermissionDenied = errors.New("consulconf: refused by Consul ACLs")

// Config is where and as whom a component talks to Consul. The zero Config
// is the local agent (or CONSUL_HTTP_* from the environment).
type Config struct {
	// Addr is the agent's HTTP API, host:port, or a URL whose scheme
	// (http:// or https://) sets Scheme. Empty: CONSUL_HTTP_ADDR, else
	// DefaultAddr.
	Addr string
	// Scheme is "http" or "https". Empty: https when CONSUL_HTTP_SSL says
	// so or when any TLS material (CA, CA path, client certificate) is
	// configured and neither Addr nor CONSUL_HTTP_SSL names a scheme; else
	// http.
	Scheme string
	// Token is the component's ACL token (its secret id). Exclusive with
	// TokenFile. Empty: CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN, else
	// the anonymous token.
	Token string
	// TokenFile holds the token (surrounding white space is ignored).
	TokenFile string
	// CAFile is the PEM bundle of the CA(s) that sign Consul's HTTPS
	// certificate; CAPath a directory of them.
	CAFile, CAPath string
	// CertFile and KeyFile are the client certificate and key presented to
	// an agent that verifies incoming HTTPS clients (verify_incoming).
	CertFile, KeyFile string
	// TLSServerName is the name expected in the agent's certificate when
	// it differs from Addr's host.
	TLSServerName string
}

// RegisterFlags registers the -consul-* flags into c: -consul-addr,
// -consul-scheme, -consul-token, -consul-token-file, -consul-ca,
// -consul-capath, -consul-cert, -consul-key and -consul-tls-server-name.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "consul-addr", "", "Consul agent HTTP API, host:port or http(s)://host:port (default $CONSUL_HTTP_ADDR, else "+DefaultAddr+")")
	fs.StringVar(&c.Scheme, "consul-scheme", "", "http or https (default https when $CONSUL_HTTP_SSL is true or a Consul CA or client certificate is set, else http)")
	fs.StringVar(&c.Token, "consul-token", "", "Consul ACL token of this component (default $CONSUL_HTTP_TOKEN; none: Consul's anonymous token); prefer -consul-token-file")
	fs.StringVar(&c.TokenFile, "consul-token-file", "", "file holding the Consul ACL token (default $CONSUL_HTTP_TOKEN_FILE)")
	fs.StringVar(&c.CAFile, "consul-ca", "", "PEM file of the CA that signs Consul's HTTPS certificate (default $CONSUL_CACERT)")
	fs.StringVar(&c.CAPath, "consul-capath", "", "directory of PEM CA certificates for Consul's HTTPS (default $CONSUL_CAPATH)")
	fs.StringVar(&c.CertFile, "consul-cert", "", "PEM client certificate for Consul's HTTPS with verify_incoming (default $CONSUL_CLIENT_CERT)")
	fs.StringVar(&c.KeyFile, "consul-key", "", "PEM key of -consul-cert (default $CONSUL_CLIENT_KEY)")
	fs.StringVar(&c.TLSServerName, "consul-tls-server-name", "", "server name expected in Consul's certificate (default $CONSUL_TLS_SERVER_NAME, else the host of -consul-addr)")
}

// Validate refuses contradictory settings, naming the flags.
func (c Config) Validate() error {
	switch {
	case c.Token != "" && c.TokenFile != "":
		return errors.New("-consul-token and -consul-token-file are exclusive: drop one")
	case c.Scheme != "" && c.Scheme != "http" && c.Scheme != "https":
		return fmt.Errorf("-consul-scheme %q: want http or https", c.Scheme)
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("-consul-cert and -consul-key go together: set both or neither")
	}
	return nil
}

// APIConfig is c over consul/api's DefaultConfig (which reads CONSUL_HTTP_*
// from the environment): every field set in c wins.
func (c Config) APIConfig() (*api.Config, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("consulconf: %w", err)
	}
	cfg := api.DefaultConfig()
	switch {
	case c.Addr != "":
		cfg.Address = c.Addr
	case os.Getenv(api.HTTPAddrEnvName) == "":
		cfg.Address = DefaultAddr
	}
	if c.Token != "" {
		cfg.Token, cfg.TokenFile = c.Token, ""
	}
	if c.TokenFile != "" {
		cfg.Token, cfg.TokenFile = "", c.TokenFile
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.TLSConfig.CAFile, c.CAFile)
	set(&cfg.TLSConfig.CAPath, c.CAPath)
	set(&cfg.TLSConfig.CertFile, c.CertFile)
	set(&cfg.TLSConfig.KeyFile, c.KeyFile)
	set(&cfg.TLSConfig.Address, c.TLSServerName)
	if (cfg.TLSConfig.CertFile == "") != (cfg.TLSConfig.KeyFile == "") {
		return nil, errors.New("consulconf: a Consul client certificate needs its key and a key its certificate (-consul-cert, -consul-key or CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY)")
	}
	switch {
	case c.Scheme != "":
		cfg.Scheme = c.Scheme
	case strings.Contains(cfg.Address, "://"), os.Getenv(api.HTTPSSLEnvName) != "":
		// The address or CONSUL_HTTP_SSL decides (consul/api applies it).
	case cfg.TLSConfig.CAFile != "" || cfg.TLSConfig.CAPath != "" || cfg.TLSConfig.CertFile != "":
		cfg.Scheme = "https"
	}
	return cfg, nil
}

// Client returns a Consul API client for c.
func (c Config) Client() (*api.Client, error) {
	cfg, err := c.APIConfig()
	if err != nil {
		return nil, err
	}
	cl, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consulconf: client for %s: %w", cfg.Address, err)
	}
	return cl, nil
}

// Endpoint describes where c leads, for logs: scheme://address and whether
// a token is configured (never the token itself).
func (c Config) Endpoint() string {
	cfg, err := c.APIConfig()
	if err != nil {
		return "invalid: " + err.Error()
	}
	addr := cfg.Address
	if !strings.Contains(addr, "://") {
		addr = cfg.Scheme + "://" + addr
	}
	tok := "anonymous"
	if cfg.Token != "" || cfg.TokenFile != "" {
		tok = "token"
	}
	return addr + " (" + tok + ")"
}

// IsPermissionDenied reports whether err is Consul refusing a request for
// ACL reasons: a 403 (permission denied, ACL not found) from the HTTP API.
func IsPermissionDenied(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrPermissionDenied) {
		return true
	}
	var se api.StatusError
	if errors.As(err, &se) && se.Code == 403 {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "Permission denied") || strings.Contains(msg, "ACL not found") ||
		strings.Contains(msg, "Unexpected response code: 403")
}

// Explain wraps err, when Consul refused it for ACL reasons, with what to
// do about it: give the component a token with its policy (component names
// the policy file in deployments/consul, e.g. "nodeagent"). Other errors are
// returned unchanged.
func Explain(err error, component string) error {
	if err == nil || !IsPermissionDenied(err) || errors.Is(err, ErrPermissionDenied) {
		return err
	}
	return fmt.Errorf("%w: give slipway-%s a Consul token with the policy of deployments/consul/%s.hcl (-consul-token-file, -consul-token or CONSUL_HTTP_TOKEN): %w",
		ErrPermissionDenied, component, component, err)
}

// CheckToken asks Consul who c's token is, for a start-up log line: its
// accessor id and policies, or "Consul ACLs are off" when Consul runs
// without ACLs. A token Consul does not know, or none at all under ACLs
// (Consul's anonymous token, which default deny allows nothing), is an
// error naming the policy of component and the flags to set.
func (c Config) CheckToken(ctx context.Context, client *api.Client, component string) (string, error) {
	tok, _, err := client.ACL().TokenReadSelf((&api.QueryOptions{}).WithContext(ctx))
	var se api.StatusError
	switch {
	case errors.As(err, &se) && se.Code == 401 && strings.Contains(se.Body, "ACL support disabled"):
		return "Consul ACLs are off", nil
	case err != nil && IsPermissionDenied(err):
		what := "Consul does not know the configured token"
		if cfg, cerr := c.APIConfig(); cerr == nil && cfg.Token == "" && cfg.TokenFile == "" {
			what = "no Consul token: requests run as Consul's anonymous token"
		}
		return "", Explain(fmt.Errorf("consulconf: %s: %w", what, err), component)
	case err != nil:
		return "", fmt.Errorf("consulconf: read own token: %w", err)
	}
	names := make([]string, 0, len(tok.Policies))
	for _, p := range tok.Policies {
		names = append(names, p.Name)
	}
	return fmt.Sprintf("token %s (policies %s)", tok.AccessorID, strings.Join(names, ", ")), nil
}
