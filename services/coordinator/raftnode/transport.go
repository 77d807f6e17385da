package raftnode

import (
	"errors"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
)

// newTransport is raft's network transport over mutual TLS (both ends hold a
// coordinator certificate from the cluster's CA), or over plain TCP with
// insecure creds.
func newTransport(bind string, adv *net.TCPAddr, creds *rpc.Creds, logger hclog.Logger) (*raft.NetworkTransport, error) {
	if creds == nil {
		return nil, errors.New("no credentials for the raft transport")
	}
	if creds.Insecure() {
		return raft.NewTCPTransportWithLogger(bind, adv, 3, 10*time.Second, logger)
	}
	sl, err := rpc.NewStreamLayer(bind, adv, creds, pki.RoleCoordinator)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithLogger(streamLayer{sl}, 3, 10*time.Second, logger), nil
}

// streamLayer adapts rpc.StreamLayer to raft's address type.
type streamLayer struct{ *rpc.StreamLayer }

// Dial implements raft.StreamLayer.
func (s streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.StreamLayer.Dial(string(address), timeout)
}

// Interface guard.
var _ raft.StreamLayer = streamLayer{}
