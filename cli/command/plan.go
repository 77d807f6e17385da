package command

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/rpc"
	"slipway.dev/platform/spec"
	"slipway.dev/platform/specrules"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
	"slipway.dev/slipctl/specfile"
)

func validateCmd() *command {
	return &command{
		name: "validate", summary: "check spec files offline, every violation at its file:line", maxArgs: 0,
		help: `Check spec files without a coordinator: the file format (unknown fields,
durations, strategy names) and then every rule the coordinator applies at
Deploy (the same code, platform/spec), each violation named at its file and
line. Exit 0 when every file is valid, 2 otherwise. Only what depends on the
cluster (whether some node allows the spec's image and security asks) is
left to plan and deploy.`,
		examples: `  slipctl validate -f deployments/examples/canary.yaml
  slipctl validate -f web.yaml -f api.yaml -o json`,
		flags: func(fs *pflag.FlagSet, o *opts) {
			fs.StringArrayVarP(&o.files, "file", "f", nil, "spec `file` to check (YAML or JSON; - for stdin); repeatable; required")
		},
		run: runValidate,
	}
}

// fileResult is validate's answer for one file, as JSON.
type fileResult struct {
	File       string            `json:"file"`
	Valid      bool              `json:"valid"`
	Service    string            `json:"service,omitempty"`
	Violations []*specfile.Error `json:"violations,omitempty"`
}

func runValidate(_ context.Context, a *app, o *opts, _ []string) error {
	if len(o.files) == 0 {
		return exitcode.Usagef("validate: -f FILE is required (see slipctl validate --help)")
	}
	var results []fileResult
	var all specfile.Errors
	for _, name := range o.files {
		f, errs := a.checkSpec(name)
		r := fileResult{File: name, Valid: len(errs) == 0, Violations: errs}
		if f != nil {
			r.File, r.Service = f.Name, f.Spec.GetName()
		}
		results = append(results, r)
		all = append(all, errs...)
	}
	if a.g.output == "json" {
		if err := render.JSONValue(a.env.Stdout, map[string]any{"files": results}); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.Valid {
				fmt.Fprintf(a.env.Stdout, "%s: valid (service %s)\n", r.File, r.Service)
			}
		}
	}
	if len(all) > 0 {
		return exitcode.With(exitcode.Usage, &specViolations{errs: all})
	}
	return nil
}

// checkSpec reads spec file name and applies the coordinator's rules to it;
// it returns the file (nil if it could not be read) and every problem, each
// at its line.
func (a *app) checkSpec(name string) (*specfile.File, specfile.Errors) {
	f, err := a.readSpec(name)
	if err != nil {
		var es specfile.Errors
		if errors.As(err, &es) {
			return nil, es
		}
		return nil, specfile.Errors{{File: name, Message: err.Error()}}
	}
	var errs specfile.Errors
	for _, v := range spec.Validate(f.Spec) {
		errs = append(errs, f.Locate(v.Field, v.Description))
	}
	return f, errs
}

func planCmd() *command {
	return &command{
		name: "plan", summary: "show what deploy -f would do, without doing it", maxArgs: 0,
		help: `A dry run of deploy: check the spec as the coordinator would (validate's
rules, that some ready node allows its image and security asks, and that
every secret and config it mounts exists and allows the service), then
print the release it would make, the fields that differ from the service's
latest release (defaults filled in on both sides) and the steps the rollout
would take, with the commands that move it on. Nothing is committed: plan
only reads (GetService, ListNodes, GetSecret), so a token with the read policy is
enough. Exit 0 when a deploy would be accepted, 2 for an invalid spec, 4
when the service has an active rollout (deploy would need --supersede).`,
		examples: `  slipctl plan -f deployments/examples/canary.yaml
  slipctl plan -f web.yaml -o json | jq '.changes'
  slipctl plan -f web.yaml --supersede`,
		flags: func(fs *pflag.FlagSet, o *opts) {
			fs.StringVarP(&o.file, "file", "f", "", "spec `file` (YAML or JSON; - for stdin); required")
			fs.BoolVar(&o.supersede, "supersede", false, "plan a deploy that replaces the service's active rollout")
		},
		run: runPlan,
	}
}

func runPlan(ctx context.Context, a *app, o *opts, _ []string) error {
	if o.file == "" {
		return exitcode.Usagef("plan: -f FILE is required (see slipctl plan --help)")
	}
	f, errs := a.checkSpec(o.file)
	if len(errs) > 0 {
		return exitcode.With(exitcode.Usage, &specViolations{errs: errs})
	}
	next := spec.Normalize(f.Spec)
	name := next.GetName()
	svcResp, err := ask(ctx, a, a.deploy, deployv1.DeployServiceClient.GetService, &deployv1.GetServiceRequest{Name: name})
	if err != nil && status.Code(err) != codes.NotFound {
		return err
	}
	svc := svcResp.GetService()
	p := &render.Plan{Service: name, Release: svc.GetLatestRelease() + 1, From: svc.GetStableRelease(), Compared: svc.GetLatestRelease(),
		Image: next.GetImage(), Strategy: render.Strategy(next.GetUpdate().GetStrategy())}
	p.Rollout = name + "-" + strconv.FormatUint(p.Release, 10)
	if svc != nil {
		p.Changes = render.SpecDiff(spec.Normalize(svc.GetSpec()), next)
	}
	if p.From != 0 {
		p.FromImage = svc.GetSpec().GetImage()
		if p.From != svc.GetLatestRelease() {
			p.FromImage = a.releaseImage(ctx, name, p.From)
		}
	}
	p.Steps = render.RolloutSteps(next, p.Rollout, p.From, p.Release)
	// The rule that depends on the cluster: some node must allow the spec.
	var conflict error
	if nodes, err := ask(ctx, a, a.cluster, clusterv1.ClusterServiceClient.ListNodes, &clusterv1.ListNodesRequest{}); err != nil {
		p.Notes = append(p.Notes, fmt.Sprintf("the nodes could not be read (%s): which node allows the spec is checked at deploy", status.Convert(err).Message()))
	} else if vs := spec.CheckNodes(f.Spec, nodes.GetNodes()); len(vs) > 0 {
		return locate(f, vs)
	}
	// The rules that depend on the secrets: each exists and allows the service.
	vs, notes := a.checkMounts(ctx, f.Spec)
	if len(vs) > 0 {
		return locate(f, vs)
	}
	p.Notes = append(p.Notes, notes...)
	if active := svc.GetActiveRollout(); active != "" {
		if o.supersede {
			p.Notes = append(p.Notes, fmt.Sprintf("rollout %s is active; deploy --supersede would end it SUPERSEDED", active))
		} else {
			p.Notes = append(p.Notes, fmt.Sprintf("rollout %s is active: deploy would be refused (exit 4) unless --supersede", active))
			conflict = exitcode.With(exitcode.Conflict, fmt.Errorf("plan: service %s has active rollout %s (deploy needs --supersede)", name, active))
		}
	}
	if a.g.output == "json" {
		err = render.JSONValue(a.env.Stdout, p)
	} else {
		err = render.WritePlan(a.env.Stdout, p)
	}
	if err != nil {
		return err
	}
	return conflict
}

// releaseImage returns the image of release number of service, "?" if it
// cannot be read.
func (a *app) releaseImage(ctx context.Context, service string, number uint64) string {
	c, err := a.deploy()
	if err != nil {
		return "?"
	}
	if s := a.releaseSpec(ctx, c, service, number); s != nil {
		return s.GetImage()
	}
	return "?"
}

// checkMounts applies Deploy's rules on the secrets and configs spec
// mounts (each exists, with the version it names, and its scope allows the
// service), by reading them; a secret that cannot be read is a note, left
// to deploy.
func (a *app) checkMounts(ctx context.Context, s *deployv1.ServiceSpec) ([]rpc.FieldViolation, []string) {
	var vs []rpc.FieldViolation
	var notes []string
	for _, k := range []struct {
		kind  deployv1.SecretKind
		name  string
		mount []*deployv1.FileMount
	}{{deployv1.SecretKind_SECRET_KIND_SECRET, "secret", s.GetSecrets()}, {deployv1.SecretKind_SECRET_KIND_CONFIG, "config", s.GetConfigs()}} {
		for i, m := range k.mount {
			field := fmt.Sprintf("spec.%ss[%d]", k.name, i)
			resp, err := ask(ctx, a, a.secrets, deployv1.SecretServiceClient.GetSecret, &deployv1.GetSecretRequest{Kind: k.kind, Name: m.GetName()})
			switch {
			case status.Code(err) == codes.NotFound:
				vs = append(vs, rpc.FieldViolation{Field: field + ".name", Description: fmt.Sprintf("%s %q does not exist (create it with 'slipctl %s create %s --from-file FILE --service %s')",
					k.name, m.GetName(), k.name, m.GetName(), s.GetName())})
				continue
			case err != nil:
				notes = append(notes, fmt.Sprintf("%s %s could not be read (%s): deploy checks it", k.name, m.GetName(), status.Convert(err).Message()))
				continue
			}
			sec := resp.GetSecret()
			if d := specrules.SecretScope(k.name, m.GetName(), sec.GetServices(), s.GetName()); d != "" {
				vs = append(vs, rpc.FieldViolation{Field: field + ".name", Description: d})
				continue
			}
			if v := m.GetVersion(); v != 0 && !slices.ContainsFunc(sec.GetVersions(), func(sv *deployv1.SecretVersion) bool { return sv.GetVersion() == v }) {
				vs = append(vs, rpc.FieldViolation{Field: field + ".version", Description: fmt.Sprintf("%s %q has no version %d (latest %d)", k.name, m.GetName(), v, sec.GetVersion())})
			}
		}
	}
	return vs, notes
}
