package rpc

import (
	"context"

	"google.golang.org/grpc"
)

// WithToken sends secret as "authorization: Bearer <secret>" metadata on
// every call of the connection (the coordinator's ACL token).
func WithToken(secret string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearer(secret))
}

// bearer is a token as per-RPC credentials.
type bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that -insecure development setups
// work; with real credentials the connection is TLS anyway.
func (b bearer) RequireTransportSecurity() bool { return false }
