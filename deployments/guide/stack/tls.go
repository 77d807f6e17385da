package stack

import (
	"fmt"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
)

// TLS is the stack's throwaway CA and the certificate files of each
// component, under <StateDir>/tls.
type TLS struct {
	Dir, CA                                string
	Coordinator, NodeAgent, Edge, Operator pki.Files
}

// flags are the -tls-* flags of a component holding f.
func (t TLS) flags(f pki.Files) []string {
	return []string{"-tls-ca", f.CA, "-tls-cert", f.Cert, "-tls-key", f.Key}
}

// OperatorCreds are the client credentials the guide (and slipctl) use.
func (t TLS) OperatorCreds() (*rpc.Creds, error) {
	return rpc.NewCreds(rpc.Security{CAFile: t.CA, CertFile: t.Operator.Cert, KeyFile: t.Operator.Key}, nil)
}

// makeTLS creates a CA in dir and a certificate for each component of the
// stack (coordinator guide-1, the node agent nodeID, edge guide-edge) and
// for the operator (client "operator").
func makeTLS(dir, nodeID string) (TLS, error) {
	ca, err := pki.NewDir(dir, pki.CAOptions{CommonName: "Slipway guide CA", Days: 30})
	if err != nil {
		return TLS{}, fmt.Errorf("stack: tls: %w", err)
	}
	t := TLS{Dir: dir, CA: ca.CAFile}
	for _, c := range []struct {
		id  pki.Identity
		dst *pki.Files
	}{
		{pki.Identity{Role: pki.RoleCoordinator, Name: "guide-1"}, &t.Coordinator},
		{pki.Identity{Role: pki.RoleNodeAgent, Name: nodeID}, &t.NodeAgent},
		{pki.Identity{Role: pki.RoleEdge, Name: "guide-edge"}, &t.Edge},
		{pki.Identity{Role: pki.RoleClient, Name: "operator"}, &t.Operator},
	} {
		if *c.dst, err = ca.Issue(pki.CertOptions{Identity: c.id, Days: 30}); err != nil {
			return TLS{}, fmt.Errorf("stack: tls: %w", err)
		}
	}
	return t, nil
}
