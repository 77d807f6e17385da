// Package pki creates Slipway's certificate authority and role-bearing
// certificates, and reads the role and name back from a peer's certificate.
//
// Every certificate names its holder in one URI SAN,
// spiffe://slipway/<role>/<name>, where role is one of coordinator,
// nodeagent, edge, client or metrics. Peers authorise by that SAN, never by
// host name.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Role is what a certificate's holder is allowed to be.
type Role string

// The roles a certificate can carry.
const (
	RoleCoordinator Role = "coordinator"
	RoleNodeAgent   Role = "nodeagent"
	RoleEdge        Role = "edge"
	RoleClient      Role = "client"
	// RoleMetrics is a scraper (Prometheus): accepted by the components'
	// /metrics listeners and by no gRPC service, so a scraper's key grants
	// nothing but reading metrics.
	RoleMetrics Role = "metrics"
)

// Roles lists every role, in a stable order.
var Roles = []Role{RoleCoordinator, RoleNodeAgent, RoleEdge, RoleClient, RoleMetrics}

// URIScheme and TrustDomain form the identity SAN: spiffe://slipway/<role>/<name>.
const (
	URIScheme   = "spiffe"
	TrustDomain = "slipway"
)

// Default lifetimes, in days: a CA for five years, a leaf for one.
const (
	DefaultCADays   = 5 * 365
	DefaultCertDays = 365
)

// ErrNoIdentity is returned for a certificate without a Slipway identity SAN.
var ErrNoIdentity = errors.New("pki: certificate has no spiffe://slipway/<role>/<name> URI SAN")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ParseRole returns the role named s, or an error listing the valid ones.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("pki: unknown role %q: want one of coordinator, nodeagent, edge, client, metrics", s)
}

// Identity is who a certificate names.
type Identity struct {
	Role Role
	Name string
}

// String is the identity's URI.
func (i Identity) String() string { return i.URI().String() }

// URI is the identity's SAN, spiffe://slipway/<role>/<name>.
func (i Identity) URI() *url.URL {
	return &url.URL{Scheme: URIScheme, Host: TrustDomain, Path: "/" + string(i.Role) + "/" + i.Name}
}

// Validate checks the role and the name's grammar (letters, digits, '.', '_'
// and '-', at most 63 characters, starting with a letter or digit).
func (i Identity) Validate() error {
	if _, err := ParseRole(string(i.Role)); err != nil {
		return err
	}
	if !nameRE.MatchString(i.Name) {
		return fmt.Errorf("pki: name %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", i.Name)
	}
	return nil
}

// IdentityOf reads the identity SAN of cert.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme || u.Host != TrustDomain {
			continue
		}
		role, name, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
		if !ok {
			continue
		}
		id := Identity{Role: Role(role), Name: name}
		if err := id.Validate(); err != nil {
			return Identity{}, fmt.Errorf("pki: identity SAN %s: %w", u, err)
		}
		return id, nil
	}
	return Identity{}, ErrNoIdentity
}

// CAOptions configures CreateCA.
type CAOptions struct {
	// CommonName defaults to "Slipway CA".
	CommonName string
	// Days is the lifetime; 0 means DefaultCADays.
	Days int
	// Now is the start of validity; zero means time.Now().
	Now time.Time
}

// CertOptions configures CreateCert.
type CertOptions struct {
	Identity Identity
	// DNS and IPs are extra SANs, for tools that verify host names
	// (grpcurl, curl). localhost, 127.0.0.1 and ::1 are always added.
	DNS []string
	IPs []net.IP
	// Days is the lifetime; 0 means DefaultCertDays. Negative values make
	// an already expired certificate (for tests of expiry).
	Days int
	// Now is the start of validity; zero means time.Now().
	Now time.Time
}

// CA is a certificate authority that signs leaf certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// CertPEM is Cert in PEM form.
	CertPEM []byte
}

// CreateCA makes a new ECDSA P-256 CA and returns its certificate and key in PEM.
func CreateCA(o CAOptions) (certPEM, keyPEM []byte, err error) {
	if o.CommonName == "" {
		o.CommonName = "Slipway CA"
	}
	if o.Days == 0 {
		o.Days = DefaultCADays
	}
	if o.Days < 0 {
		return nil, nil, fmt.Errorf("pki: CA lifetime must be positive, got %d days", o.Days)
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	ski := keyID(&key.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName, Organization: []string{"Slipway"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(0, 0, o.Days),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
		URIs:                  []*url.URL{{Scheme: URIScheme, Host: TrustDomain}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign CA: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// LoadCA parses a CA certificate and key in PEM.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("pki: CA certificate: not a CA (basic constraints)")
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("pki: CA key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("pki: CA key does not match the CA certificate")
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// CreateCert signs a leaf certificate for o.Identity and returns it and its
// key in PEM. Client certificates are for client authentication only; the
// other roles serve and dial, so theirs are for both.
func (ca *CA) CreateCert(o CertOptions) (certPEM, keyPEM []byte, err error) {
	if err := o.Identity.Validate(); err != nil {
		return nil, nil, err
	}
	if o.Days == 0 {
		o.Days = DefaultCertDays
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	notBefore, notAfter := now.Add(-time.Minute), now.AddDate(0, 0, o.Days)
	if o.Days < 0 {
		notBefore = notAfter.Add(-time.Hour)
	}
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if o.Identity.Role == RoleClient || o.Identity.Role == RoleMetrics {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	dns := appendUnique([]string{"localhost"}, o.DNS...)
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, ip := range o.IPs {
		if !containsIP(ips, ip) {
			ips = append(ips, ip)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: string(o.Identity.Role) + "." + o.Identity.Name, Organization: []string{"Slipway"}},
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    usage,
		DNSNames:       dns,
		IPAddresses:    ips,
		URIs:           []*url.URL{o.Identity.URI()},
		SubjectKeyId:   keyID(&key.PublicKey),
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign certificate for %s: %w", o.Identity, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// ParseCertificate parses the first certificate in a PEM bundle.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n, nil
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(b)
	return sum[:20]
}

func appendUnique(dst []string, more ...string) []string {
	for _, s := range more {
		found := false
		for _, d := range dst {
			if d == s {
				found = true
				break
			}
		}
		if !found && s != "" {
			dst = append(dst, s)
		}
	}
	return dst
}

func containsIP(ips []net.IP, ip net.IP) bool {
	for _, x := range ips {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}
