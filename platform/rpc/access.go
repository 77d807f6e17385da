package rpc

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/pki"
)

// Services open to every authenticated peer, whatever its role, except a
// scraper's (pki.RoleMetrics), which no gRPC service serves.
var openServices = []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}

// access is the per-service role check: default deny.
type access struct {
	roles map[string][]pki.Role
}

func newAccess(m map[string][]pki.Role) *access {
	roles := make(map[string][]pki.Role, len(m)+len(openServices))
	for k, v := range m {
		roles[k] = slices.Clone(v)
	}
	open := slices.DeleteFunc(slices.Clone(pki.Roles), func(r pki.Role) bool { return r == pki.RoleMetrics })
	for _, s := range openServices {
		roles[s] = open
	}
	return &access{roles: roles}
}

func (a *access) check(ctx context.Context, fullMethod string) error {
	id, ok := PeerIdentity(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no Slipway client certificate on this connection")
	}
	service := serviceOf(fullMethod)
	allowed, listed := a.roles[service]
	if !listed {
		return status.Errorf(codes.PermissionDenied, "%s is not served to any peer", service)
	}
	if !slices.Contains(allowed, id.Role) {
		return status.Errorf(codes.PermissionDenied, "%s: role %s (%s) may not call %s; allowed: %s", fullMethod, id.Role, id, service, joinRoles(allowed))
	}
	return nil
}

func (a *access) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *access) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// serviceOf is the service part of "/pkg.Service/Method".
func serviceOf(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// PeerIdentity is the identity in the calling peer's verified certificate,
// false on a plaintext connection or without one.
func PeerIdentity(ctx context.Context) (pki.Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return pki.Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return pki.Identity{}, false
	}
	id, err := pki.IdentityOf(info.State.PeerCertificates[0])
	if err != nil {
		return pki.Identity{}, false
	}
	return id, true
}
