package rpc

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Dial returns a client connection to addr (host:port) with creds, accepting
// only a server that satisfies want, and the project's standard keepalive
// and message limits. The connection is lazy: errors surface on the first
// call.
func Dial(addr string, creds *Creds, want Expect, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if creds == nil {
		return nil, errors.New("rpc: dial " + addr + ": no credentials (NewCreds or InsecureCreds)")
	}
	tc := insecure.NewCredentials()
	if !creds.Insecure() {
		tc = credentials.NewTLS(creds.ClientTLS(want))
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(tc),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMsgSize), grpc.MaxCallSendMsgSize(MaxMsgSize)),
	}
	conn, err := grpc.NewClient(addr, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	return conn, nil
}
