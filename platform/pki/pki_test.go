package pki

import (
	"crypto/x509"
	"strings"
	"testing"
)

func TestIssuedCertificateCarriesIdentity(t *testing.T) {
	caPEM, caKey, err := CreateCA(CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range Roles {
		certPEM, _, err := ca.CreateCert(CertOptions{Identity: Identity{Role: role, Name: "n-1"}, DNS: []string{"web.internal"}})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ParseCertificate(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		id, err := IdentityOf(cert)
		if err != nil || id != (Identity{Role: role, Name: "n-1"}) {
			t.Fatalf("%s: IdentityOf = %v, %v", role, id, err)
		}
		if got := cert.URIs[0].String(); got != "spiffe://slipway/"+string(role)+"/n-1" {
			t.Errorf("SAN = %s", got)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		usage := x509.ExtKeyUsageServerAuth
		clientOnly := role == RoleClient || role == RoleMetrics
		if clientOnly {
			usage = x509.ExtKeyUsageClientAuth
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: "web.internal"}); err != nil {
			t.Errorf("%s: %v", role, err)
		}
		if clientOnly {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Errorf("a %s certificate verifies as a server", role)
			}
		}
	}
}

func TestBadIdentitiesRefused(t *testing.T) {
	caPEM, caKey, _ := CreateCA(CAOptions{})
	ca, _ := LoadCA(caPEM, caKey)
	for _, id := range []Identity{{Role: "root", Name: "x"}, {Role: RoleEdge, Name: ""}, {Role: RoleEdge, Name: "a/b"}, {Role: RoleEdge, Name: strings.Repeat("a", 64)}} {
		if _, _, err := ca.CreateCert(CertOptions{Identity: id}); err == nil {
			t.Errorf("%+v accepted", id)
		}
	}
	if _, err := LoadCA(caPEM, []byte("junk")); err == nil {
		t.Error("LoadCA accepted a junk key")
	}
	_, otherKey, _ := CreateCA(CAOptions{})
	if _, err := LoadCA(caPEM, otherKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("LoadCA with another CA's key: %v", err)
	}
}
