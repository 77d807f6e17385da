package testenv

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
)

// PKI is a throwaway Slipway CA for one test, in a temporary directory, that
// issues certificates on demand. Its files are removed when the test ends.
type PKI struct {
	// Dir holds ca.pem and every issued <role>-<name>.pem / -key.pem.
	Dir string
	// CAFile is the CA certificate's path.
	CAFile string

	ca *pki.CA
	mu sync.Mutex
}

// TLSFiles are the three PEM files a component is started with.
type TLSFiles struct {
	CA, Cert, Key string
}

// Flags are the -tls-ca, -tls-cert and -tls-key flags naming f.
func (f TLSFiles) Flags() []string {
	return []string{"-tls-ca", f.CA, "-tls-cert", f.Cert, "-tls-key", f.Key}
}

// Security is f as rpc.Security.
func (f TLSFiles) Security() rpc.Security {
	return rpc.Security{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}
}

// NewPKI makes a CA for the test.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	dir := tb.TempDir()
	certPEM, keyPEM, err := pki.CreateCA(pki.CAOptions{CommonName: "Slipway test CA"})
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return &PKI{Dir: dir, CAFile: caFile, ca: ca}
}

// Issue writes a certificate for role/name (options may set SANs or an
// expired lifetime) and returns the files to start a component with.
func (p *PKI) Issue(tb testing.TB, role pki.Role, name string, opts ...func(*pki.CertOptions)) TLSFiles {
	tb.Helper()
	o := pki.CertOptions{Identity: pki.Identity{Role: role, Name: name}}
	for _, f := range opts {
		f(&o)
	}
	certPEM, keyPEM, err := p.ca.CreateCert(o)
	if err != nil {
		tb.Fatalf("testenv: issue %s/%s: %v", role, name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cert, key, err := pki.WritePair(p.Dir, string(role)+"-"+name, certPEM, keyPEM, true)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return TLSFiles{CA: p.CAFile, Cert: cert, Key: key}
}

// Creds issues a certificate for role/name and loads it as credentials.
func (p *PKI) Creds(tb testing.TB, role pki.Role, name string) *rpc.Creds {
	tb.Helper()
	c, err := rpc.NewCreds(p.Issue(tb, role, name).Security(), nil)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return c
}
