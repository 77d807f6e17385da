package rpc

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"slipway.dev/platform/pki"
)

// StreamLayer is a TLS listener and dialer for a peer-to-peer protocol (raft)
// where both ends must hold a certificate of one role: the accepting side
// refuses any other peer in the handshake, and the dialling side accepts
// only such a server. It implements hashicorp/raft's StreamLayer.
type StreamLayer struct {
	lis       net.Listener
	advertise net.Addr
	client    *tls.Config
}

// NewStreamLayer listens on bind with creds, requiring role on both sides;
// advertise is the address peers dial (nil: the listener's).
func NewStreamLayer(bind string, advertise net.Addr, creds *Creds, role pki.Role) (*StreamLayer, error) {
	lis, err := tls.Listen("tcp", bind, creds.ServerTLS(role))
	if err != nil {
		return nil, fmt.Errorf("rpc: listen on %s: %w", bind, err)
	}
	if advertise == nil {
		advertise = lis.Addr()
	}
	return &StreamLayer{lis: lis, advertise: advertise, client: creds.ClientTLS(ExpectRole(role))}, nil
}

// Accept returns the next connection; its TLS handshake (and so the peer
// check) runs on the connection's first read or write, so a slow peer does
// not hold up the others.
func (s *StreamLayer) Accept() (net.Conn, error) { return s.lis.Accept() }

// Close stops listening.
func (s *StreamLayer) Close() error { return s.lis.Close() }

// Addr is the advertised address.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to address and completes the handshake within timeout.
func (s *StreamLayer) Dial(address string, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", address, s.client)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", address, err)
	}
	return conn, nil
}
