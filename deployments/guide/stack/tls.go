package stack

import (
	"fmt"
	"os"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
)

// TLS is the stack's throwaway CA and the certificate files of each
// component, under <StateDir>/tls.
type TLS struct {
	Dir, CA                                string
	Coordinator, NodeAgent, Edge, Operator files
}

type files struct{ Cert, Key string }

// flags are the -tls-* flags of a component holding f.
func (t TLS) flags(f files) []string {
	return []string{"-tls-ca", t.CA, "-tls-cert", f.Cert, "-tls-key", f.Key}
}

// OperatorCreds are the client credentials the guide (and slipctl) use.
func (t TLS) OperatorCreds() (*rpc.Creds, error) {
	return rpc.NewCreds(rpc.Security{CAFile: t.CA, CertFile: t.Operator.Cert, KeyFile: t.Operator.Key}, nil)
}

// Env are the SLIPWAY_TLS_* variables that point slipctl at the operator
// certificate.
func (t TLS) Env() []string {
	return []string{"SLIPWAY_TLS_CA=" + t.CA, "SLIPWAY_TLS_CERT=" + t.Operator.Cert, "SLIPWAY_TLS_KEY=" + t.Operator.Key}
}

// makeTLS creates a CA in dir and a certificate for each component of the
// stack (coordinator guide-1, the node agent nodeID, edge guide-edge) and
// for the operator (client "operator").
func makeTLS(dir, nodeID string) (TLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return TLS{}, fmt.Errorf("stack: tls: %w", err)
	}
	caPEM, caKey, err := pki.CreateCA(pki.CAOptions{CommonName: "Slipway guide CA", Days: 30})
	if err != nil {
		return TLS{}, fmt.Errorf("stack: tls: %w", err)
	}
	ca, err := pki.LoadCA(caPEM, caKey)
	if err != nil {
		return TLS{}, fmt.Errorf("stack: tls: %w", err)
	}
	caFile, _, err := pki.WritePair(dir, "ca", caPEM, caKey, true)
	if err != nil {
		return TLS{}, fmt.Errorf("stack: tls: %w", err)
	}
	t := TLS{Dir: dir, CA: caFile}
	for _, c := range []struct {
		id  pki.Identity
		dst *files
	}{
		{pki.Identity{Role: pki.RoleCoordinator, Name: "guide-1"}, &t.Coordinator},
		{pki.Identity{Role: pki.RoleNodeAgent, Name: nodeID}, &t.NodeAgent},
		{pki.Identity{Role: pki.RoleEdge, Name: "guide-edge"}, &t.Edge},
		{pki.Identity{Role: pki.RoleClient, Name: "operator"}, &t.Operator},
	} {
		certPEM, keyPEM, err := ca.CreateCert(pki.CertOptions{Identity: c.id, Days: 30})
		if err != nil {
			return TLS{}, fmt.Errorf("stack: tls: %w", err)
		}
		cert, key, err := pki.WritePair(dir, string(c.id.Role)+"-"+c.id.Name, certPEM, keyPEM, true)
		if err != nil {
			return TLS{}, fmt.Errorf("stack: tls: %w", err)
		}
		*c.dst = files{Cert: cert, Key: key}
	}
	return t, nil
}
