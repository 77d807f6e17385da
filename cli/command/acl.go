package command

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	aclv1 "slipway.dev/proto/slipway/acl/v1"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
)

// listFlag is a flag that may be repeated and takes comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Type names the flag's value in help.
func (l *listFlag) Type() string { return "list" }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// secretFlag is a string flag whose value help never prints.
type secretFlag string

func (s *secretFlag) String() string     { return "" }
func (s *secretFlag) Set(v string) error { *s = secretFlag(v); return nil }

// Type names the flag's value in help.
func (s *secretFlag) Type() string { return "secret" }

func (a *app) acl() (aclv1.AclServiceClient, error) {
	conn, err := a.client()
	if err != nil {
		return nil, err
	}
	return aclv1.NewAclServiceClient(conn), nil
}

func aclCmd() *command {
	return &command{
		name: "acl", summary: "tokens: bootstrap, create, list, revoke; policies",
		help: `Manage the coordinator's ACL tokens. With ACLs enabled (the coordinator's
-acl, on by default) every call needs a token: slipctl sends SLIPWAY_TOKEN
(or --token) as "authorization: Bearer <secret>". Bootstrap once per cluster
for the first management token; create scoped tokens with it.

Policies: deploy (Deploy, rollback and reads of the services matching
--service globs), operate (promote, pause, resume, abort, rollback on those
services; drain with --service '*'), read (every read), admin (everything).`,
		examples: `  export SLIPWAY_TOKEN=$(slipctl acl bootstrap -o json | jq -r .secret)
  slipctl acl token create --policy deploy --service 'web-*' --description ci
  slipctl acl token list
  slipctl acl token revoke 1a2b3c4d-...
  slipctl acl policy list`,
		subs: []*command{
			{name: "bootstrap", summary: "create the first management token (once per cluster)", maxArgs: 0,
				help: `Create the first management token (policy admin) and print its secret.
It needs no token and works once per cluster; afterwards it fails with exit
code 4. Keep the secret: it is shown only here.`,
				examples: "  slipctl acl bootstrap\n  slipctl acl bootstrap -o json | jq -r .secret",
				flags: func(fs *pflag.FlagSet, o *opts) {
					fs.StringVar(&o.description, "description", "", "what the token is for (default \"bootstrap token\")")
				},
				run: runBootstrap},
			tokenCmd(),
			{name: "policy", summary: "policies", subs: []*command{
				{name: "list", summary: "list the policies and what each allows", maxArgs: 0,
					help: "List the closed set of policies, whether service globs scope them, and the methods each allows.", examples: "  slipctl acl policy list",
					run: runPolicies},
			}, help: "The policies a token may carry.", examples: "  slipctl acl policy list"},
		},
	}
}

func tokenCmd() *command {
	return &command{
		name: "token", summary: "create, list, revoke and inspect tokens",
		help: "Create, list, revoke and inspect tokens. Creating, listing and revoking need an admin token.",
		examples: `  slipctl acl token create --policy deploy --service 'web-*' --description ci
  slipctl acl token list
  slipctl acl token revoke 1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
  slipctl acl token self`,
		subs: []*command{
			{name: "create", summary: "create a token and print its secret", maxArgs: 0,
				help: `Create a token with one or more policies. deploy and operate need at least
one --service glob (path.Match syntax: 'web-*', 'api', '*'). The secret is
printed once; the coordinator keeps only its SHA-256.`,
				examples: `  slipctl acl token create --policy deploy --service 'web-*' --description ci
  slipctl acl token create --policy operate,read --service '*' --description on-call
  slipctl acl token create --policy read --description dashboard -o json`,
				flags: func(fs *pflag.FlagSet, o *opts) {
					fs.Var(&o.policies, "policy", "`policy` to grant: deploy, operate, read, admin (repeatable, or comma-separated); required")
					fs.Var(&o.services, "service", "service-name `glob` scoping deploy and operate (repeatable, or comma-separated)")
					fs.StringVar(&o.description, "description", "", "what the token is for, shown in listings and errors")
				},
				run: runCreateToken},
			{name: "list", summary: "list tokens (no secrets)", maxArgs: 0,
				help: "List every token: accessor, description, policies, service globs, creation.", examples: "  slipctl acl token list",
				run: runListTokens},
			{name: "revoke", args: "ACCESSOR", summary: "revoke a token", minArgs: 1, maxArgs: 1,
				help: "Revoke the token with this accessor id: every coordinator refuses it once it applies the revocation (well within a second).", examples: "  slipctl acl token revoke 1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
				run: runRevokeToken},
			{name: "self", summary: "show the token slipctl sends", maxArgs: 0,
				help: "Show the token slipctl sends (SLIPWAY_TOKEN or --token).", examples: "  slipctl acl token self",
				run: runSelf},
		},
	}
}

func runBootstrap(ctx context.Context, a *app, o *opts, _ []string) error {
	return query(ctx, a, a.acl, aclv1.AclServiceClient.Bootstrap, &aclv1.BootstrapRequest{Description: o.description},
		func(w io.Writer, r *aclv1.BootstrapResponse) error {
			return render.NewToken(w, r.GetToken(), r.GetSecret())
		})
}

func runCreateToken(ctx context.Context, a *app, o *opts, _ []string) error {
	if len(o.policies) == 0 {
		return exitcode.Usagef("acl token create: --policy is required (deploy, operate, read, admin)")
	}
	req := &aclv1.CreateTokenRequest{Services: o.services, Description: o.description}
	for _, p := range o.policies {
		v, ok := aclv1.Policy_value["POLICY_"+strings.ToUpper(p)]
		if !ok || v == 0 {
			return exitcode.Usagef("acl token create: unknown policy %q (deploy, operate, read, admin)", p)
		}
		req.Policies = append(req.Policies, aclv1.Policy(v))
	}
	return query(ctx, a, a.acl, aclv1.AclServiceClient.CreateToken, req,
		func(w io.Writer, r *aclv1.CreateTokenResponse) error {
			return render.NewToken(w, r.GetToken(), r.GetSecret())
		})
}

func runListTokens(ctx context.Context, a *app, _ *opts, _ []string) error {
	return query(ctx, a, a.acl, aclv1.AclServiceClient.ListTokens, &aclv1.ListTokensRequest{},
		func(w io.Writer, r *aclv1.ListTokensResponse) error { return render.Tokens(w, r.GetTokens()) })
}

func runRevokeToken(ctx context.Context, a *app, _ *opts, args []string) error {
	return query(ctx, a, a.acl, aclv1.AclServiceClient.RevokeToken, &aclv1.RevokeTokenRequest{AccessorId: args[0]},
		func(w io.Writer, r *aclv1.RevokeTokenResponse) error {
			_, err := fmt.Fprintf(w, "revoked token %s (%s)\n", r.GetToken().GetAccessorId(), r.GetToken().GetDescription())
			return err
		})
}

func runSelf(ctx context.Context, a *app, _ *opts, _ []string) error {
	if a.g.token == "" {
		return exitcode.Usagef("acl token self: no token: set SLIPWAY_TOKEN or --token")
	}
	return query(ctx, a, a.acl, aclv1.AclServiceClient.WhoAmI, &aclv1.WhoAmIRequest{},
		func(w io.Writer, r *aclv1.WhoAmIResponse) error {
			return render.Tokens(w, []*aclv1.Token{r.GetToken()})
		})
}

func runPolicies(ctx context.Context, a *app, _ *opts, _ []string) error {
	return query(ctx, a, a.acl, aclv1.AclServiceClient.ListPolicies, &aclv1.ListPoliciesRequest{},
		func(w io.Writer, r *aclv1.ListPoliciesResponse) error { return render.Policies(w, r.GetPolicies()) })
}
