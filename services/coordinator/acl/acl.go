// Package acl decides whether a token may make a coordinator call: it maps a
// full gRPC method and its request to the permission the call needs, and
// evaluates a token's policies against it.
//
// The policies are a closed set: deploy and operate are scoped by the
// token's service globs (path.Match syntax), read and admin are not. The
// package is pure: it reads no clock, network or disk, and learns the
// service of a rollout through the small Rollouts interface.
package acl

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"slipway.dev/platform/specrules"
)

// Domain errors of Evaluate; the gRPC adapter maps them to UNAUTHENTICATED
// and PERMISSION_DENIED.
var (
	// ErrUnauthenticated: the call carries no token, or an unknown one.
	ErrUnauthenticated = errors.New("acl: unauthenticated")
	// ErrPermissionDenied: the token does not allow the call.
	ErrPermissionDenied = errors.New("acl: permission denied")
)

// Policy is one of the closed set of permissions a token may carry.
type Policy string

// The policies.
const (
	// Deploy allows Deploy, RollbackService and the reads of the services
	// matching the token's globs.
	Deploy Policy = "deploy"
	// Operate allows promote, pause, resume, abort and rollback on the
	// services matching the token's globs, and draining nodes when a glob
	// is "*" (a drain moves every service on the node).
	Operate Policy = "operate"
	// Read allows every read of the deploy and cluster APIs.
	Read Policy = "read"
	// Admin allows everything: peers, tokens and all of the above.
	Admin Policy = "admin"
)

// Policies lists every policy, in the order of the API's enum.
var Policies = []Policy{Deploy, Operate, Read, Admin}

// Scoped reports whether the token's service globs restrict p.
func (p Policy) Scoped() bool { return p == Deploy || p == Operate }

// ParsePolicy returns the policy named s, or an error listing the valid ones.
func ParsePolicy(s string) (Policy, error) {
	p := Policy(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Policies, p) {
		return p, nil
	}
	return "", fmt.Errorf("unknown policy %q (one of deploy, operate, read, admin)", s)
}

// Token is what the evaluation needs to know of a token.
type Token struct {
	// Accessor is the token's public id.
	Accessor string
	// Description says what the token is for.
	Description string
	// Policies are the token's permissions.
	Policies []Policy
	// Services are the globs scoping deploy and operate.
	Services []string
}

// Has reports whether the token carries p.
func (t Token) Has(p Policy) bool { return slices.Contains(t.Policies, p) }

// matches reports whether one of the token's globs matches service.
func (t Token) matches(service string) bool { return MatchGlobs(t.Services, service) }

// MatchGlobs reports whether one of globs (path.Match syntax, as a token's
// service globs or a secret's scope) matches service. A malformed glob
// matches nothing.
func MatchGlobs(globs []string, service string) bool {
	return specrules.MatchServiceGlobs(globs, service)
}

// GlobErrors describes each glob of globs that is not a valid service
// pattern (empty, or not path.Match syntax), by its index.
func GlobErrors(globs []string) map[int]string {
	out := map[int]string{}
	for i, g := range globs {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			out[i] = fmt.Sprintf("service glob %q is not a valid pattern (path.Match syntax, e.g. web-*)", g)
		}
	}
	return out
}

// Sees reports whether the token may read service: admin and read see
// every service, deploy and operate the services their globs match. Lists
// answered to a scoped token are filtered with it.
func (t Token) Sees(service string) bool {
	if t.Has(Admin) || t.Has(Read) {
		return true
	}
	return (t.Has(Deploy) || t.Has(Operate)) && t.matches(service)
}

// Name is how errors name the token: its description and a short accessor.
func (t Token) Name() string {
	acc := t.Accessor
	if len(acc) > 8 {
		acc = acc[:8] + "…"
	}
	if t.Description == "" {
		return fmt.Sprintf("token (accessor %s)", acc)
	}
	return fmt.Sprintf("token %q (accessor %s)", t.Description, acc)
}

// Grants renders the token's permissions, e.g. "deploy:web-*,api read".
func (t Token) Grants() string {
	if len(t.Policies) == 0 {
		return "no policy"
	}
	var parts []string
	for _, p := range Policies {
		if !t.Has(p) {
			continue
		}
		if p.Scoped() {
			parts = append(parts, string(p)+":"+strings.Join(t.Services, ","))
		} else {
			parts = append(parts, string(p))
		}
	}
	return strings.Join(parts, " ")
}

// ValidateGlobs checks globs for a token with policies: every glob must be
// a valid path.Match pattern, and deploy or operate need at least one.
func ValidateGlobs(policies []Policy, globs []string) error {
	var errs []error
	bad := GlobErrors(globs)
	for i := range globs {
		if d, ok := bad[i]; ok {
			errs = append(errs, errors.New(d))
		}
	}
	if len(globs) == 0 && (slices.Contains(policies, Deploy) || slices.Contains(policies, Operate)) {
		errs = append(errs, errors.New("deploy and operate need at least one service glob (\"*\" for every service)"))
	}
	return errors.Join(errs...)
}

// Evaluate returns nil when tok allows a call needing n, or an error
// wrapping ErrPermissionDenied that names the missing permission and what
// the token has.
func Evaluate(tok Token, n Need) error {
	if n.Public || tok.Has(Admin) || len(n.Any) == 0 {
		return nil
	}
	for _, p := range n.Any {
		if !tok.Has(p) {
			continue
		}
		switch {
		case !p.Scoped(), n.Filter:
			return nil
		case n.AllServices:
			if slices.Contains(tok.Services, "*") {
				return nil
			}
		case tok.matches(n.Service):
			return nil
		}
	}
	return fmt.Errorf("%s lacks %s; it has %s: %w", tok.Name(), n.missing(), tok.Grants(), ErrPermissionDenied)
}

// Need is what a call requires of its token.
type Need struct {
	// Method is the full gRPC method.
	Method string
	// Public calls need no token (health, reflection, AclService.Bootstrap).
	Public bool
	// Internal calls are the coordinators' own (InternalService): they are
	// authorised by the caller's coordinator certificate, never by a token.
	Internal bool
	// Edge calls are the edges' reports (SignalService): authorised by the
	// caller's edge or coordinator certificate, never by a token.
	Edge bool
	// NodeAgent calls are the node agents' heartbeat streams
	// (NodeHeartbeatService): authorised by the caller's nodeagent
	// certificate, whose name is the node, never by a token.
	NodeAgent bool
	// Any lists the policies each of which allows the call (admin always
	// does); empty means any valid token.
	Any []Policy
	// Service is the service the call concerns; scoped policies must match
	// it.
	Service string
	// AllServices: the call concerns every service (a node drain); a scoped
	// policy allows it only with the glob "*".
	AllServices bool
	// Filter: the call lists services; a scoped policy allows it and the
	// answer is filtered with Token.Sees.
	Filter bool
}

func (n Need) missing() string {
	names := make([]string, len(n.Any))
	for i, p := range n.Any {
		names[i] = string(p)
	}
	what := strings.Join(names, " or ")
	if len(n.Any) == 0 {
		what = string(Admin)
	}
	scoped := slices.ContainsFunc(n.Any, Policy.Scoped)
	switch {
	case !scoped:
		return what
	case n.AllServices:
		return what + ` on every service ("*")`
	default:
		return fmt.Sprintf("%s on service %q", what, n.Service)
	}
}
