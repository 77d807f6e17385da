package state

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	aclv1 "slipway.dev/proto/slipway/acl/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// TokenResult is the Apply response of a token entry.
type TokenResult struct {
	// Token is the token created, or the one revoked as it was.
	Token *aclv1.Token
}

// checkToken validates a token record drawn by the leader.
func (f *FSM) checkToken(rec *statev1.TokenRecord) error {
	id := rec.GetToken().GetAccessorId()
	switch {
	case id == "":
		return fmt.Errorf("token: accessor_id is empty: %w", ErrInvalid)
	case len(rec.GetSecretSha256()) != 32:
		return fmt.Errorf("token %s: secret_sha256 has %d bytes, want 32: %w", id, len(rec.GetSecretSha256()), ErrInvalid)
	case f.tokens[id] != nil:
		return fmt.Errorf("token %s exists already: %w", id, ErrInvalid)
	case f.tokenHashes[[32]byte(rec.GetSecretSha256())] != "" || f.revoked[[32]byte(rec.GetSecretSha256())]:
		return fmt.Errorf("token %s: its secret is another token's: %w", id, ErrInvalid)
	}
	return nil
}

// putToken stores rec (taking ownership) and indexes its secret's hash.
func (f *FSM) putToken(rec *statev1.TokenRecord) {
	id := rec.GetToken().GetAccessorId()
	f.tokens[id] = rec
	if h := rec.GetSecretSha256(); len(h) == 32 {
		f.tokenHashes[[32]byte(h)] = id
	}
}

func (f *FSM) addToken(at *timestamppb.Timestamp, rec *statev1.TokenRecord) (*statev1.TokenRecord, error) {
	if err := f.checkToken(rec); err != nil {
		return nil, err
	}
	rec = proto.CloneOf(rec)
	rec.Token.CreatedAt = at
	f.putToken(rec)
	return rec, nil
}

func (f *FSM) applyACLBootstrap(index uint64, at *timestamppb.Timestamp, op *statev1.AclBootstrapOp) any {
	if f.aclBooted {
		return fmt.Errorf("the ACL system was bootstrapped already; create tokens with a management token: %w", ErrACLBootstrapped)
	}
	rec, err := f.addToken(at, op.GetToken())
	if err != nil {
		return err
	}
	f.aclBooted = true
	t := rec.GetToken()
	f.addAudit(index, at, t.GetDescription(), t.GetAccessorId(), "acl bootstrap", "", "created management token "+t.GetAccessorId())
	return TokenResult{Token: proto.CloneOf(t)}
}

func (f *FSM) applyCreateToken(index uint64, at *timestamppb.Timestamp, op *statev1.CreateTokenOp) any {
	rec, err := f.addToken(at, op.GetToken())
	if err != nil {
		return err
	}
	t := rec.GetToken()
	f.addAudit(index, at, "", t.GetCreatedBy(), "token create", "",
		fmt.Sprintf("created token %s (%q): %s", t.GetAccessorId(), t.GetDescription(), describeGrants(t)))
	return TokenResult{Token: proto.CloneOf(t)}
}

func (f *FSM) applyRevokeToken(index uint64, at *timestamppb.Timestamp, op *statev1.RevokeTokenOp) any {
	rec := f.tokens[op.GetAccessorId()]
	if rec == nil {
		return fmt.Errorf("token %q: %w", op.GetAccessorId(), ErrNotFound)
	}
	delete(f.tokens, op.GetAccessorId())
	if h := rec.GetSecretSha256(); len(h) == 32 {
		delete(f.tokenHashes, [32]byte(h))
		f.revoked[[32]byte(h)] = true
	}
	t := rec.GetToken()
	f.addAudit(index, at, "", op.GetBy(), "token revoke", "", fmt.Sprintf("revoked token %s (%q)", t.GetAccessorId(), t.GetDescription()))
	return TokenResult{Token: proto.CloneOf(t)}
}

func describeGrants(t *aclv1.Token) string {
	var ps []string
	for _, p := range t.GetPolicies() {
		ps = append(ps, strings.ToLower(strings.TrimPrefix(p.String(), "POLICY_")))
	}
	s := strings.Join(ps, ",")
	if len(t.GetServices()) > 0 {
		s += " on " + strings.Join(t.GetServices(), ",")
	}
	return s
}

// TokenBySecretHash returns a copy of the token whose secret has SHA-256
// sum, false when there is none (never was, or revoked). Revocation takes
// effect on a replica the moment it applies the entry.
func (f *FSM) TokenBySecretHash(sum [32]byte) (*aclv1.Token, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	id, ok := f.tokenHashes[sum]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(f.tokens[id].GetToken()), true
}

// SecretRevoked reports whether sum is the secret hash of a revoked token.
func (f *FSM) SecretRevoked(sum [32]byte) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.revoked[sum]
}

// HasToken reports whether the token with accessor id exists.
func (f *FSM) HasToken(accessor string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.tokens[accessor] != nil
}

// Tokens returns copies of every token (without hashes), sorted by accessor.
func (f *FSM) Tokens() []*aclv1.Token {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*aclv1.Token, 0, len(f.tokens))
	for _, id := range sortedKeys(f.tokens) {
		out = append(out, proto.CloneOf(f.tokens[id].GetToken()))
	}
	return out
}

// ACLBootstrapped reports whether the ACL bootstrap entry was applied.
func (f *FSM) ACLBootstrapped() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.aclBooted
}

// RolloutService returns the service of rollout id (acl.Rollouts).
func (f *FSM) RolloutService(id string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r := f.rollouts[id]
	if r == nil {
		return "", false
	}
	return r.GetService(), true
}
