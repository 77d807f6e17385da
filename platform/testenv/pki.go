package testenv

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/telemetry"
)

// PKI is a throwaway Slipway CA for one test, in a temporary directory, that
// issues certificates on demand. Its files are removed when the test ends.
type PKI struct {
	// Dir holds the CA (ca.pem) and every certificate it issued; its Path
	// and CAFile name them.
	*pki.Dir

	mu     sync.Mutex
	issued map[string]TLSFiles
}

// TLSFiles are the three PEM files a component is started with.
type TLSFiles pki.Files

// Flags are the -tls-ca, -tls-cert and -tls-key flags naming f.
func (f TLSFiles) Flags() []string {
	return []string{"-tls-ca", f.CA, "-tls-cert", f.Cert, "-tls-key", f.Key}
}

// Security is f as rpc.Security.
func (f TLSFiles) Security() rpc.Security {
	return rpc.Security{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}
}

// NewPKI makes a CA of the test's own, removed when the test ends.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	p, err := newPKI(tb.TempDir())
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return p
}

var (
	processMu  sync.Mutex
	processPKI *PKI
)

// ProcessPKI is the CA shared by every test of this test process, so that the
// coordinators, agents, edges and clients one test starts through different
// helpers trust each other. Its directory belongs to this process; the next
// test process removes those of processes that have ended.
func ProcessPKI(tb testing.TB) *PKI {
	tb.Helper()
	processMu.Lock()
	defer processMu.Unlock()
	if processPKI == nil {
		parent := filepath.Join(os.TempDir(), "slipway-test-pki")
		pruneEnded(parent)
		p, err := newPKI(filepath.Join(parent, strconv.Itoa(os.Getpid())))
		if err != nil {
			tb.Fatalf("testenv: %v", err)
		}
		processPKI = p
	}
	return processPKI
}

// TLSFlags issues a certificate for role/name from ProcessPKI and returns
// the flags that start a component with it.
func TLSFlags(tb testing.TB, role pki.Role, name string) []string {
	tb.Helper()
	return ProcessPKI(tb).Files(tb, role, name).Flags()
}

// Creds are credentials for role/name from ProcessPKI.
func Creds(tb testing.TB, role pki.Role, name string) *rpc.Creds {
	tb.Helper()
	return ProcessPKI(tb).Creds(tb, role, name)
}

// ClientCreds are client credentials from ProcessPKI, for a test calling
// the components it started.
func ClientCreds(tb testing.TB) *rpc.Creds {
	tb.Helper()
	return Creds(tb, pki.RoleClient, "test")
}

// MetricsClient is an HTTPS client with a scraper's certificate (role
// metrics) from ProcessPKI, for reading the /metrics of the components a
// test started: get "https://" + addr + "/metrics".
func MetricsClient(tb testing.TB) *http.Client {
	tb.Helper()
	return ProcessPKI(tb).MetricsClient(tb)
}

// MetricsClient is an HTTPS client with a scraper's certificate (role
// metrics) from p; each request times out after 5s.
func (p *PKI) MetricsClient(tb testing.TB) *http.Client {
	tb.Helper()
	return telemetry.ScrapeClient(p.Creds(tb, pki.RoleMetrics, "test-scraper"), 5*time.Second)
}

// NewPKIAt makes a CA in dir, for harnesses without a testing.TB.
func NewPKIAt(dir string) (*PKI, error) { return newPKI(dir) }

func newPKI(dir string) (*PKI, error) {
	d, err := pki.NewDir(dir, pki.CAOptions{CommonName: "Slipway test CA"})
	if err != nil {
		return nil, err
	}
	return &PKI{Dir: d}, nil
}

// Issue writes a certificate for role/name (options may set SANs or an
// expired lifetime) and returns the files to start a component with.
func (p *PKI) Issue(tb testing.TB, role pki.Role, name string, opts ...func(*pki.CertOptions)) TLSFiles {
	tb.Helper()
	f, err := p.IssueFiles(role, name, opts...)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return f
}

// IssueFiles is Issue for harnesses without a testing.TB.
func (p *PKI) IssueFiles(role pki.Role, name string, opts ...func(*pki.CertOptions)) (TLSFiles, error) {
	o := pki.CertOptions{Identity: pki.Identity{Role: role, Name: name}}
	for _, f := range opts {
		f(&o)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	files, err := p.Dir.Issue(o)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("issue %s/%s: %w", role, name, err)
	}
	f := TLSFiles(files)
	if p.issued == nil {
		p.issued = map[string]TLSFiles{}
	}
	p.issued[string(role)+"/"+name] = f
	return f, nil
}

// Files are the files of role/name, issued on first use.
func (p *PKI) Files(tb testing.TB, role pki.Role, name string) TLSFiles {
	tb.Helper()
	p.mu.Lock()
	files, ok := p.issued[string(role)+"/"+name]
	p.mu.Unlock()
	if ok {
		return files
	}
	return p.Issue(tb, role, name)
}

// Creds issues a certificate for role/name and loads it as credentials
// (issued once per PKI and identity: later calls reuse the files).
func (p *PKI) Creds(tb testing.TB, role pki.Role, name string) *rpc.Creds {
	tb.Helper()
	c, err := rpc.NewCreds(p.Files(tb, role, name).Security(), nil)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return c
}
