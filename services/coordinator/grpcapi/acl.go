package grpcapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"slipway.dev/coordinator/acl"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// tokenLag is how long a follower waits for a token it does not know yet
// to be replicated (a token used right after it was created on the leader)
// before answering UNAUTHENTICATED.
const tokenLag = 500 * time.Millisecond

// authorizationKey is the metadata key carrying "Bearer <secret>".
const authorizationKey = "authorization"

type tokenKey struct{}

// caller is the authenticated token of the call: nil with ACLs disabled
// and on calls that need no token.
func caller(ctx context.Context) *acl.Token {
	t, _ := ctx.Value(tokenKey{}).(*acl.Token)
	return t
}

// accessor is the accessor id of the call's token, empty when there is none.
func accessor(ctx context.Context) string {
	if t := caller(ctx); t != nil {
		return t.Accessor
	}
	return ""
}

// sees reports whether the call's token may read service (always true
// without a token: ACLs are disabled, or the interceptor let the call
// through without one).
func sees(ctx context.Context, service string) bool {
	t := caller(ctx)
	return t == nil || t.Sees(service)
}

func fromProto(t *aclv1.Token) *acl.Token {
	out := &acl.Token{Accessor: t.GetAccessorId(), Description: t.GetDescription(), Services: t.GetServices()}
	for _, p := range t.GetPolicies() {
		if q, ok := policyOf[p]; ok {
			out.Policies = append(out.Policies, q)
		}
	}
	return out
}

var policyOf = map[aclv1.Policy]acl.Policy{
	aclv1.Policy_POLICY_DEPLOY:  acl.Deploy,
	aclv1.Policy_POLICY_OPERATE: acl.Operate,
	aclv1.Policy_POLICY_READ:    acl.Read,
	aclv1.Policy_POLICY_ADMIN:   acl.Admin,
}

func policyProto(p acl.Policy) aclv1.Policy {
	for k, v := range policyOf {
		if v == p {
			return k
		}
	}
	return aclv1.Policy_POLICY_UNSPECIFIED
}

// bearer returns the secret of the call's "authorization: Bearer" metadata.
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(authorizationKey)
	if len(vals) == 0 {
		return "", fmt.Errorf("no token: send it as `authorization: Bearer <secret>` metadata (slipctl: SLIPWAY_TOKEN or --token): %w", acl.ErrUnauthenticated)
	}
	if len(vals) > 1 {
		return "", fmt.Errorf("%d authorization values, want one: %w", len(vals), acl.ErrUnauthenticated)
	}
	scheme, secret, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(secret) == "" {
		return "", fmt.Errorf("authorization metadata is not `Bearer <secret>`: %w", acl.ErrUnauthenticated)
	}
	return strings.TrimSpace(secret), nil
}

// authenticate returns the token whose secret the call carries. A revoked
// token is refused at once; a follower that does not know the token waits
// up to tokenLag for it to be replicated.
func (a *API) authenticate(ctx context.Context) (*acl.Token, error) {
	secret, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	// A restarted node knows no token until it has replayed its log: wait
	// for that (UNAVAILABLE if it takes too long), rather than refusing a
	// valid token as unknown.
	if err := a.awaitCaughtUp(ctx); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(secret))
	deadline := time.Now().Add(tokenLag)
	for {
		changed := a.fsm.Changed()
		if t, ok := a.fsm.TokenBySecretHash(sum); ok {
			return fromProto(t), nil
		}
		if a.fsm.SecretRevoked(sum) {
			return nil, fmt.Errorf("the token was revoked: %w", acl.ErrUnauthenticated)
		}
		wait := time.Until(deadline)
		if a.raft.IsLeader() || wait <= 0 {
			return nil, fmt.Errorf("unknown or revoked token: %w", acl.ErrUnauthenticated)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// authorize decides a call of method with req (nil for a stream not yet
// read) and returns ctx carrying the caller's token. InternalService is
// authorised by the peer's certificate: a verified identity must be a
// coordinator's (the rpc layer checks the same); on a plaintext (-insecure)
// connection there is nothing to verify. Every other call needs a token,
// forwarded ones included: the follower checked it, and the leader checks
// it again with the metadata the follower passed on.
func (a *API) authorize(ctx context.Context, method string, req any) (context.Context, error) {
	need := acl.Required(method, req, a.fsm)
	if need.Public {
		return ctx, nil
	}
	if need.Internal {
		if id, ok := rpc.PeerIdentity(ctx); ok && id.Role != pki.RoleCoordinator {
			return nil, toStatus(fmt.Errorf("%s is for coordinators only; the caller is %s: %w", method, id, acl.ErrPermissionDenied))
		}
		return ctx, nil
	}
	if need.Edge {
		if id, ok := rpc.PeerIdentity(ctx); ok && id.Role != pki.RoleEdge && id.Role != pki.RoleCoordinator {
			return nil, toStatus(fmt.Errorf("%s is for edges and coordinators only; the caller is %s: %w", method, id, acl.ErrPermissionDenied))
		}
		return ctx, nil
	}
	if need.NodeAgent {
		if id, ok := rpc.PeerIdentity(ctx); ok && id.Role != pki.RoleNodeAgent {
			return nil, toStatus(fmt.Errorf("%s is for node agents only; the caller is %s: %w", method, id, acl.ErrPermissionDenied))
		}
		return ctx, nil
	}
	tok, err := a.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := acl.Evaluate(*tok, need); err != nil {
		return nil, toStatus(fmt.Errorf("%s: %w", method, err))
	}
	return context.WithValue(ctx, tokenKey{}, tok), nil
}

// authenticateOnly is authorize for a stream whose permission depends on
// its first message: the token must be valid now, the rest is decided when
// the message arrives.
func (a *API) authenticateOnly(ctx context.Context) (context.Context, error) {
	tok, err := a.authenticate(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return context.WithValue(ctx, tokenKey{}, tok), nil
}

// UnaryACL is the interceptor enforcing tokens on unary calls (default
// deny). Install it, with StreamACL, when ACLs are enabled.
func (a *API) UnaryACL() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, info.FullMethod, req)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamACL is the interceptor enforcing tokens on streams. The token is
// checked when the stream opens and, for a method whose permission depends
// on its request (WatchRollout), again on the first message. A stream whose
// token is revoked meanwhile ends with UNAUTHENTICATED.
func (a *API) StreamACL() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		check := acl.NeedsRequest(info.FullMethod)
		var ctx context.Context
		var err error
		if check {
			// Only authenticate now; the first message decides.
			ctx, err = a.authenticateOnly(ss.Context())
		} else {
			ctx, err = a.authorize(ss.Context(), info.FullMethod, nil)
		}
		if err != nil {
			return err
		}
		tok := caller(ctx)
		if tok == nil { // public or internal
			return handler(srv, ss)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		w := &aclStream{ServerStream: ss, ctx: ctx, a: a, method: info.FullMethod, check: check}
		go func() {
			for {
				changed := a.fsm.Changed()
				if !a.fsm.HasToken(tok.Accessor) {
					w.revoked.Store(true)
					cancel()
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-changed:
				}
			}
		}()
		err = handler(srv, w)
		if w.revoked.Load() {
			return toStatus(fmt.Errorf("%s was revoked during the stream: %w", tok.Name(), acl.ErrUnauthenticated))
		}
		return err
	}
}

type aclStream struct {
	grpc.ServerStream
	ctx     context.Context
	a       *API
	method  string
	check   bool // evaluate the first message
	once    sync.Once
	revoked atomic.Bool
}

func (s *aclStream) Context() context.Context { return s.ctx }

func (s *aclStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	var err error
	s.once.Do(func() {
		if s.check {
			_, err = s.a.authorize(s.ServerStream.Context(), s.method, m)
		}
	})
	return err
}

func (s *aclStream) SendMsg(m any) error {
	if s.revoked.Load() {
		return toStatus(fmt.Errorf("the token was revoked during the stream: %w", acl.ErrUnauthenticated))
	}
	return s.ServerStream.SendMsg(m)
}

// newSecret draws a token: a 256-bit random secret (hex) and a random
// accessor id (UUID form), with the secret's SHA-256 for the log.
func newSecret() (secret, accessorID string, sum [32]byte, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", sum, fmt.Errorf("grpcapi: draw token secret: %w", err)
	}
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", "", sum, fmt.Errorf("grpcapi: draw token accessor: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant
	h := hex.EncodeToString(u[:])
	secret = hex.EncodeToString(b[:])
	return secret, h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], sha256.Sum256([]byte(secret)), nil
}

type aclServer struct {
	aclv1.UnimplementedAclServiceServer
	a *API
}

func registerACL(s *rpc.Server, a *API) {
	aclv1.RegisterAclServiceServer(s, &aclServer{a: a})
}

// draw makes a new token record for tok (accessor and secret filled in).
func draw(tok *aclv1.Token) (*statev1.TokenRecord, string, error) {
	secret, id, sum, err := newSecret()
	if err != nil {
		return nil, "", err
	}
	tok.AccessorId = id
	return &statev1.TokenRecord{Token: tok, SecretSha256: sum[:]}, secret, nil
}

func (s *aclServer) Bootstrap(ctx context.Context, req *aclv1.BootstrapRequest) (*aclv1.BootstrapResponse, error) {
	return onLeader(ctx, s.a, func(ctx context.Context) (*aclv1.BootstrapResponse, error) {
		if s.a.fsm.ACLBootstrapped() { // refused by the FSM too; this spares a log entry
			return nil, fmt.Errorf("the ACL system was bootstrapped already; create tokens with a management token: %w", state.ErrACLBootstrapped)
		}
		desc := req.GetDescription()
		if desc == "" {
			desc = "bootstrap token"
		}
		rec, secret, err := draw(&aclv1.Token{Description: desc, Policies: []aclv1.Policy{aclv1.Policy_POLICY_ADMIN}})
		if err != nil {
			return nil, err
		}
		res, err := apply[state.TokenResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_AclBootstrap{AclBootstrap: &statev1.AclBootstrapOp{Token: rec}}})
		if err != nil {
			return nil, err
		}
		return &aclv1.BootstrapResponse{Token: res.Token, Secret: secret}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*aclv1.BootstrapResponse, error) {
		return aclv1.NewAclServiceClient(c).Bootstrap(ctx, req)
	})
}

func (s *aclServer) CreateToken(ctx context.Context, req *aclv1.CreateTokenRequest) (*aclv1.CreateTokenResponse, error) {
	var vs []rpc.FieldViolation
	var policies []acl.Policy
	seen := map[aclv1.Policy]bool{}
	for i, p := range req.GetPolicies() {
		q, ok := policyOf[p]
		switch {
		case !ok:
			vs = append(vs, rpc.FieldViolation{Field: fmt.Sprintf("policies[%d]", i), Description: fmt.Sprintf("%v is not a policy (deploy, operate, read, admin)", p)})
		case seen[p]:
			vs = append(vs, rpc.FieldViolation{Field: fmt.Sprintf("policies[%d]", i), Description: fmt.Sprintf("%v is listed twice", p)})
		default:
			policies = append(policies, q)
		}
		seen[p] = true
	}
	if len(req.GetPolicies()) == 0 {
		vs = append(vs, rpc.FieldViolation{Field: "policies", Description: "at least one is required (deploy, operate, read, admin)"})
	}
	if err := acl.ValidateGlobs(policies, req.GetServices()); err != nil {
		for _, e := range strings.Split(err.Error(), "\n") {
			vs = append(vs, rpc.FieldViolation{Field: "services", Description: e})
		}
	}
	if len(vs) > 0 {
		return nil, rpc.InvalidArgument("request", vs)
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*aclv1.CreateTokenResponse, error) {
		tok := &aclv1.Token{Description: req.GetDescription(), Services: req.GetServices(), CreatedBy: accessor(ctx)}
		for _, p := range acl.Policies { // canonical order
			if seen[policyProto(p)] {
				tok.Policies = append(tok.Policies, policyProto(p))
			}
		}
		rec, secret, err := draw(tok)
		if err != nil {
			return nil, err
		}
		res, err := apply[state.TokenResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_CreateToken{CreateToken: &statev1.CreateTokenOp{Token: rec}}})
		if err != nil {
			return nil, err
		}
		return &aclv1.CreateTokenResponse{Token: res.Token, Secret: secret}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*aclv1.CreateTokenResponse, error) {
		return aclv1.NewAclServiceClient(c).CreateToken(ctx, req)
	})
}

func (s *aclServer) ListTokens(ctx context.Context, req *aclv1.ListTokensRequest) (*aclv1.ListTokensResponse, error) {
	if err := s.a.awaitCaughtUp(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &aclv1.ListTokensResponse{Tokens: s.a.fsm.Tokens()}, nil
}

func (s *aclServer) RevokeToken(ctx context.Context, req *aclv1.RevokeTokenRequest) (*aclv1.RevokeTokenResponse, error) {
	if req.GetAccessorId() == "" {
		return nil, rpc.InvalidArgument("request", []rpc.FieldViolation{{Field: "accessor_id", Description: "is required"}})
	}
	return onLeader(ctx, s.a, func(ctx context.Context) (*aclv1.RevokeTokenResponse, error) {
		res, err := apply[state.TokenResult](ctx, s.a, &statev1.Command{Op: &statev1.Command_RevokeToken{RevokeToken: &statev1.RevokeTokenOp{
			AccessorId: req.GetAccessorId(), By: accessor(ctx),
		}}})
		if err != nil {
			return nil, err
		}
		return &aclv1.RevokeTokenResponse{Token: res.Token}, nil
	}, func(ctx context.Context, c *grpc.ClientConn) (*aclv1.RevokeTokenResponse, error) {
		return aclv1.NewAclServiceClient(c).RevokeToken(ctx, req)
	})
}

func (s *aclServer) WhoAmI(ctx context.Context, req *aclv1.WhoAmIRequest) (*aclv1.WhoAmIResponse, error) {
	// With ACLs disabled no interceptor authenticated the call: look the
	// token up here, so WhoAmI still tells whether a secret is valid.
	secret, err := bearer(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.a.awaitCaughtUp(ctx); err != nil {
		return nil, toStatus(err)
	}
	t, ok := s.a.fsm.TokenBySecretHash(sha256.Sum256([]byte(secret)))
	if !ok {
		return nil, toStatus(fmt.Errorf("unknown or revoked token: %w", acl.ErrUnauthenticated))
	}
	return &aclv1.WhoAmIResponse{Token: t}, nil
}

func (s *aclServer) ListPolicies(ctx context.Context, req *aclv1.ListPoliciesRequest) (*aclv1.ListPoliciesResponse, error) {
	resp := &aclv1.ListPoliciesResponse{}
	for _, d := range acl.Describe() {
		resp.Policies = append(resp.Policies, &aclv1.PolicyInfo{
			Policy: policyProto(d.Policy), Name: string(d.Policy), Description: d.Description,
			Scoped: d.Policy.Scoped(), Methods: d.Methods,
		})
	}
	return resp, nil
}
