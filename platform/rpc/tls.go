package rpc

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"slipway.dev/platform/pki"
)

// MaxMsgSize bounds every gRPC message Slipway sends or receives, on servers
// and clients alike. Specs are bounded far below it (see the spec rules), so a
// node's whole desired set always fits.
const MaxMsgSize = 16 << 20

// Security says how a component proves who it is and checks its peers: the
// CA that signs every Slipway certificate, this component's certificate and
// key (PEM files, reloaded when they change), or Insecure for plaintext.
type Security struct {
	CAFile, CertFile, KeyFile string
	// Insecure runs plaintext with no peer checks. Never the default.
	Insecure bool
}

// RegisterFlags adds -tls-ca, -tls-cert, -tls-key and -insecure to fs.
func (s *Security) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&s.CAFile, "tls-ca", "", "PEM file of the Slipway CA that signs every peer's certificate (slipctl tls ca create)")
	fs.StringVar(&s.CertFile, "tls-cert", "", "PEM file of this component's certificate (slipctl tls cert create); reloaded when it changes")
	fs.StringVar(&s.KeyFile, "tls-key", "", "PEM file of this component's private key")
	fs.BoolVar(&s.Insecure, "insecure", false, "plaintext gRPC with no peer authentication (development only; logged as a warning)")
}

// Validate refuses a half-configured Security, naming the missing flags.
func (s Security) Validate() error {
	set := map[string]bool{"-tls-ca": s.CAFile != "", "-tls-cert": s.CertFile != "", "-tls-key": s.KeyFile != ""}
	var missing []string
	for _, f := range []string{"-tls-ca", "-tls-cert", "-tls-key"} {
		if !set[f] {
			missing = append(missing, f)
		}
	}
	switch {
	case s.Insecure && len(missing) < 3:
		return errors.New("-insecure and -tls-* flags are exclusive: drop one")
	case s.Insecure:
		return nil
	case len(missing) == 3:
		return errors.New("no TLS material: set -tls-ca, -tls-cert and -tls-key (or SLIPWAY_TLS_CA, SLIPWAY_TLS_CERT, SLIPWAY_TLS_KEY; make them with 'slipctl tls ca create' and 'slipctl tls cert create'), or pass -insecure to run plaintext")
	case len(missing) > 0:
		return fmt.Errorf("incomplete TLS material: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Creds are a component's transport credentials. Build them once with
// NewCreds and pass them to NewServer, Dial and the raft stream layer.
type Creds struct {
	insecure bool
	src      *source
}

// NewCreds loads s's files (failing with a clear error when they are missing,
// mismatched or not Slipway certificates), or returns plaintext credentials
// when s.Insecure. s must pass Validate.
func NewCreds(s Security, logger *slog.Logger) (*Creds, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Insecure {
		return &Creds{insecure: true}, nil
	}
	if logger == nil {
		logger = slog.Default()
	}
	src := &source{caFile: s.CAFile, certFile: s.CertFile, keyFile: s.KeyFile, logger: logger}
	if _, err := src.load(); err != nil {
		return nil, err
	}
	return &Creds{src: src}, nil
}

// InsecureCreds are plaintext credentials, as with -insecure.
func InsecureCreds() *Creds { return &Creds{insecure: true} }

// Insecure reports whether c is plaintext.
func (c *Creds) Insecure() bool { return c.insecure }

// Identity is the identity in this component's own certificate; the zero
// Identity for insecure credentials.
func (c *Creds) Identity() pki.Identity {
	if c.insecure {
		return pki.Identity{}
	}
	m, err := c.src.load()
	if err != nil {
		return pki.Identity{}
	}
	return m.id
}

// Expect says which peers a client accepts as the server it dialled.
type Expect struct {
	// Roles the server's certificate may carry; empty means any role.
	Roles []pki.Role
	// Name, when set, must equal the server certificate's name (e.g. the
	// node id of the agent the coordinator means to reach).
	Name string
}

// ExpectRole accepts a server with any of roles.
func ExpectRole(roles ...pki.Role) Expect { return Expect{Roles: roles} }

// check returns nil when id satisfies e.
func (e Expect) check(id pki.Identity) error {
	if len(e.Roles) > 0 && !slices.Contains(e.Roles, id.Role) {
		return fmt.Errorf("rpc: peer %s has role %s, want %s", id, id.Role, joinRoles(e.Roles))
	}
	if e.Name != "" && id.Name != e.Name {
		return fmt.Errorf("rpc: peer %s is not %q", id, e.Name)
	}
	return nil
}

// ServerTLS is the TLS configuration of a server: TLS 1.3, a client
// certificate from the Slipway CA required and, when roles are given, one of
// those roles (the handshake fails otherwise: the raft stream layer). Without
// roles, which roles may call what is checked per service by NewServer's
// interceptor. It panics on insecure credentials.
func (c *Creds) ServerTLS(roles ...pki.Role) *tls.Config {
	if c.insecure {
		panic("rpc: ServerTLS on insecure credentials")
	}
	src := c.src
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			m, err := src.load()
			if err != nil {
				return nil, err
			}
			return &m.cert, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := src.verify(raw, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return err
			}
			return Expect{Roles: roles}.check(id)
		},
	}
}

// WebTLS is the TLS configuration of an HTTPS listener for browsers (the
// coordinator's dashboard): this component's own certificate, TLS 1.2 or
// later, no client certificate asked for (a browser has none; the caller
// authenticates with a token instead). It panics on insecure credentials.
func (c *Creds) WebTLS() *tls.Config {
	if c.insecure {
		panic("rpc: WebTLS on insecure credentials")
	}
	src := c.src
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			m, err := src.load()
			if err != nil {
				return nil, err
			}
			return &m.cert, nil
		},
	}
}

// ClientTLS is the TLS configuration of a client that accepts only a server
// whose certificate is signed by the Slipway CA and satisfies want. The
// server is authenticated by its identity SAN, not its host name, so
// addresses learned from Consul or raft need no certificate of their own. It
// panics on insecure credentials.
func (c *Creds) ClientTLS(want Expect) *tls.Config {
	if c.insecure {
		panic("rpc: ClientTLS on insecure credentials")
	}
	src := c.src
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain and identity are verified below against the Slipway CA;
		// host names are not part of Slipway's trust model.
		InsecureSkipVerify: true, //nolint:gosec
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			m, err := src.load()
			if err != nil {
				return nil, err
			}
			return &m.cert, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := src.verify(raw, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			return want.check(id)
		},
	}
}

// source holds the PEM files and what was last loaded from them; it reloads
// when a file's size, modification or change time or inode changes, keeping the last good
// material when the new files do not load (a half-finished rotation).
type source struct {
	caFile, certFile, keyFile string
	logger                    *slog.Logger

	mu    sync.Mutex
	stamp string
	cur   *material
}

type material struct {
	pool *x509.CertPool
	cert tls.Certificate
	id   pki.Identity
}

func (s *source) load() (*material, error) {
	stamp, err := s.stampFiles()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.cur != nil && stamp == s.stamp {
		return s.cur, nil
	}
	if err == nil {
		var m *material
		m, err = s.read()
		if err == nil {
			if s.cur != nil {
				s.logger.Info("TLS material reloaded", "identity", m.id.String(), "expires", m.cert.Leaf.NotAfter)
			}
			s.cur, s.stamp = m, stamp
			return m, nil
		}
	}
	if s.cur == nil {
		return nil, err
	}
	if stamp != s.stamp {
		s.logger.Warn("TLS files changed but do not load; keeping the previous certificate", "err", err)
		s.stamp = stamp
	}
	return s.cur, nil
}

func (s *source) stampFiles() (string, error) {
	var b strings.Builder
	for _, f := range []string{s.caFile, s.certFile, s.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("rpc: TLS file: %w", err)
		}
		fmt.Fprintf(&b, "%d.%d", st.Size(), st.ModTime().UnixNano())
		// The inode and change time too: a rename into place, or a chmod or
		// chgrp that makes a new key readable, is a change.
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(&b, ".%d.%d.%d", sys.Ino, sys.Ctim.Sec, sys.Ctim.Nsec)
		}
		b.WriteByte('/')
	}
	return b.String(), nil
}

func (s *source) read() (*material, error) {
	caPEM, err := os.ReadFile(s.caFile)
	if err != nil {
		return nil, fmt.Errorf("rpc: -tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("rpc: -tls-ca %s: no PEM certificate in it", s.caFile)
	}
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("rpc: -tls-cert %s / -tls-key %s: %w", s.certFile, s.keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("rpc: -tls-cert %s: %w", s.certFile, err)
		}
		cert.Leaf = leaf
	}
	id, err := pki.IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("rpc: -tls-cert %s: %w", s.certFile, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("rpc: -tls-cert %s is not valid under -tls-ca %s: %w", s.certFile, s.caFile, err)
	}
	return &material{pool: pool, cert: cert, id: id}, nil
}

// verify checks a peer's chain against the current CA and returns its identity.
func (s *source) verify(raw [][]byte, usage x509.ExtKeyUsage) (pki.Identity, error) {
	if len(raw) == 0 {
		return pki.Identity{}, errors.New("rpc: peer sent no certificate")
	}
	m, err := s.load()
	if err != nil {
		return pki.Identity{}, err
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return pki.Identity{}, fmt.Errorf("rpc: peer certificate: %w", err)
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: time.Now()}); err != nil {
		return pki.Identity{}, fmt.Errorf("rpc: peer certificate: %w", err)
	}
	return pki.IdentityOf(certs[0])
}

func joinRoles(roles []pki.Role) string {
	var b bytes.Buffer
	for i, r := range roles {
		if i > 0 {
			b.WriteString(" or ")
		}
		b.WriteString(string(r))
	}
	return b.String()
}
