package command

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
)

func (a *app) secrets() (deployv1.SecretServiceClient, error) {
	conn, err := a.client()
	if err != nil {
		return nil, err
	}
	return deployv1.NewSecretServiceClient(conn), nil
}

func valueFlags(fs *pflag.FlagSet, o *opts) {
	fs.StringVar(&o.fromFile, "from-file", "", "read the value from `FILE` ('-': standard input)")
	fs.Var((*secretFlag)(&o.fromLiteral), "from-literal", "the value itself (it shows in ps and shell history: prefer --from-file)")
}

func scopeFlags(fs *pflag.FlagSet, o *opts) {
	fs.Var(&o.services, "service", "service-name `glob` allowed to mount it (path.Match syntax, as token scopes: shop, 'shop-*', '*' for every service; repeatable, or comma-separated)")
}

// hasValue reports whether --from-file or --from-literal was given.
func hasValue(o *opts) bool { return o.fromFile != "" || o.fromLiteral != "" }

// value reads the value named by --from-file or --from-literal.
func (a *app) value(what string, o *opts) ([]byte, error) {
	switch {
	case o.fromFile != "" && o.fromLiteral != "":
		return nil, exitcode.Usagef("%s: give --from-file or --from-literal, not both", what)
	case o.fromLiteral != "":
		return []byte(o.fromLiteral), nil
	case o.fromFile == "-":
		b, err := io.ReadAll(a.env.Stdin)
		if err != nil {
			return nil, fmt.Errorf("%s: read standard input: %w", what, err)
		}
		return b, nil
	case o.fromFile != "":
		b, err := os.ReadFile(o.fromFile)
		if err != nil {
			return nil, exitcode.Usagef("%s: %v", what, err)
		}
		return b, nil
	}
	return nil, exitcode.Usagef("%s: --from-file or --from-literal is required", what)
}

// secretCmd is "secret" or "config": the same commands over one kind.
func secretCmd(kind deployv1.SecretKind) *command {
	name, target, mode := "secret", "/run/secrets/NAME", "0400"
	if kind == deployv1.SecretKind_SECRET_KIND_CONFIG {
		name, target, mode = "config", "/NAME", "0444"
	}
	c := &command{
		name: name, summary: name + "s: create, update, list, show, delete (values are never shown)",
		help: fmt.Sprintf(`Manage %[1]ss: named, versioned values that a spec mounts into its
instances as files (spec: %[1]ss: [{name: db, target: %[2]s, mode: %[3]s}],
target and mode defaulting as shown). The coordinator's leader encrypts
each value with its keyring (-keyring-file) before it enters the raft log;
no read returns a value, only names, versions, digests and sizes.

Each %[1]s names the services allowed to mount it (--service, globs as a
token's scope: shop, 'shop-*', '*' for every service); Deploy refuses a spec
that mounts it for any other service. One created without --service may be
mounted by no service until 'update --service' allows some.

A release pins the version it was deployed with: 'update' stores a new
version, and --redeploy rolls out a new release of every service mounting
it (or deploy them again yourself). A narrowed scope refuses the next
deploy of a service it no longer allows; releases made before keep their
pinned version. Writes need an admin token.`, name, target, mode),
		examples: fmt.Sprintf(`  slipctl %[1]s create db --from-file ./db-password --service shop --service 'shop-*'
  slipctl %[1]s update db --from-file ./new-password --redeploy
  slipctl %[1]s update db --service shop                # the scope only: shop-* may no longer mount it
  slipctl %[1]s list
  slipctl %[1]s show db
  slipctl %[1]s delete db`, name),
		subs: []*command{
			{name: "create", args: "NAME", summary: "store version 1 of a new " + name, minArgs: 1, maxArgs: 1,
				help:     "Store a new " + name + " (version 1), mountable by the services --service names (none without it). The value is 1 byte to 64 KiB.",
				examples: fmt.Sprintf("  slipctl %[1]s create db --from-file ./db-password --service shop\n  printf hunter2 | slipctl %[1]s create db --from-file - --service 'shop-*'", name),
				flags: func(fs *pflag.FlagSet, o *opts) {
					valueFlags(fs, o)
					scopeFlags(fs, o)
				},
				run: func(ctx context.Context, a *app, o *opts, args []string) error {
					v, err := a.value(name+" create", o)
					if err != nil {
						return err
					}
					if len(o.services) == 0 {
						a.note("%s %s may be mounted by no service until an admin allows some: slipctl %s update %s --service NAME", name, args[0], name, args[0])
					}
					return query(ctx, a, a.secrets, deployv1.SecretServiceClient.CreateSecret, &deployv1.CreateSecretRequest{Kind: kind, Name: args[0], Data: v, Services: o.services},
						func(w io.Writer, r *deployv1.CreateSecretResponse) error { return render.Secret(w, r.GetSecret()) })
				}},
			{name: "update", args: "NAME", summary: "store the next version (rotate)", minArgs: 1, maxArgs: 1,
				help:     "Store the next version of a " + name + " (--from-file, --from-literal), or change which services may mount it (--service replaces the list; --no-service allows none), or both. Running releases keep the version they pinned; --redeploy rolls out a new release of every service whose latest release mounts it.",
				examples: fmt.Sprintf("  slipctl %[1]s update db --from-file ./new-password --redeploy\n  slipctl %[1]s update db --service shop --service 'shop-*'\n  slipctl %[1]s update db --no-service", name),
				flags: func(fs *pflag.FlagSet, o *opts) {
					valueFlags(fs, o)
					scopeFlags(fs, o)
					fs.BoolVar(&o.noServices, "no-service", false, "allow no service to mount it (its users' next deploys are refused)")
					fs.BoolVar(&o.redeploy, "redeploy", false, "roll out a new release of every service mounting it (superseding active rollouts)")
				},
				run: func(ctx context.Context, a *app, o *opts, args []string) error {
					scope := len(o.services) > 0 || o.noServices
					if len(o.services) > 0 && o.noServices {
						return exitcode.Usagef("%s update: give --service or --no-service, not both", name)
					}
					var v []byte
					if hasValue(o) || !scope {
						var err error
						if v, err = a.value(name+" update", o); err != nil {
							return err
						}
					}
					return query(ctx, a, a.secrets, deployv1.SecretServiceClient.UpdateSecret, &deployv1.UpdateSecretRequest{Kind: kind, Name: args[0], Data: v, Redeploy: o.redeploy,
						SetServices: scope, Services: o.services},
						func(w io.Writer, r *deployv1.UpdateSecretResponse) error {
							if err := render.Secret(w, r.GetSecret()); err != nil {
								return err
							}
							for _, rel := range r.GetReleases() {
								fmt.Fprintf(w, "redeployed %s as release %d (rollout %s-%d)\n", rel.GetService(), rel.GetNumber(), rel.GetService(), rel.GetNumber())
							}
							return nil
						})
				}},
			{name: "list", summary: "list " + name + "s (names, versions, digests)", maxArgs: 0,
				help: "List every " + name + ": latest version, its digest, size and key, and the services mounting it.", examples: "  slipctl " + name + " list",
				run: func(ctx context.Context, a *app, _ *opts, _ []string) error {
					return query(ctx, a, a.secrets, deployv1.SecretServiceClient.ListSecrets, &deployv1.ListSecretsRequest{Kind: kind},
						func(w io.Writer, r *deployv1.ListSecretsResponse) error { return render.Secrets(w, r.GetSecrets()) })
				}},
			{name: "show", args: "NAME", summary: "show one " + name + "'s versions", minArgs: 1, maxArgs: 1,
				help: "Show every version of a " + name + " (never its value).", examples: "  slipctl " + name + " show db",
				run: func(ctx context.Context, a *app, _ *opts, args []string) error {
					return query(ctx, a, a.secrets, deployv1.SecretServiceClient.GetSecret, &deployv1.GetSecretRequest{Kind: kind, Name: args[0]},
						func(w io.Writer, r *deployv1.GetSecretResponse) error { return render.Secret(w, r.GetSecret()) })
				}},
			{name: "delete", args: "NAME", summary: "delete a " + name + " with all its versions", minArgs: 1, maxArgs: 1,
				help: "Delete a " + name + " and every version; refused while the latest release of a service mounts it.", examples: "  slipctl " + name + " delete db",
				run: func(ctx context.Context, a *app, _ *opts, args []string) error {
					return query(ctx, a, a.secrets, deployv1.SecretServiceClient.DeleteSecret, &deployv1.DeleteSecretRequest{Kind: kind, Name: args[0]},
						func(w io.Writer, r *deployv1.DeleteSecretResponse) error {
							_, err := fmt.Fprintf(w, "deleted %s %s (%d versions)\n", name, r.GetSecret().GetName(), len(r.GetSecret().GetVersions()))
							return err
						})
				}},
		},
	}
	if kind != deployv1.SecretKind_SECRET_KIND_CONFIG {
		c.subs = append(c.subs, &command{name: "rekey", summary: "re-encrypt every secret and config with the keyring's primary key", maxArgs: 0,
			help: `Re-encrypt every stored version of every secret and config that is not
sealed with the leader's current primary key. Run it after making a new key
primary on every coordinator ('slipway-coordinator keyring add -primary'),
and remove the old key from the keyring files only after it.`,
			examples: "  slipctl secret rekey",
			run: func(ctx context.Context, a *app, _ *opts, _ []string) error {
				return query(ctx, a, a.secrets, deployv1.SecretServiceClient.RekeySecrets, &deployv1.RekeySecretsRequest{},
					func(w io.Writer, r *deployv1.RekeySecretsResponse) error {
						_, err := fmt.Fprintf(w, "re-encrypted %d versions; everything is sealed with key %s\n", r.GetRekeyed(), r.GetKeyId())
						return err
					})
			}})
	}
	return c
}
