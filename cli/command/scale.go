package command

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"slipway.dev/platform/rpc"
	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
)

// releaseFlags are the flags of every command that makes a release.
func releaseFlags(fs *pflag.FlagSet, o *opts) {
	fs.StringVar(&o.requestID, "request-id", "", "idempotency `key`; retries must reuse it (default: a fresh random id, printed)")
	fs.BoolVar(&o.supersede, "supersede", false, "replace the service's active rollout instead of failing with exit code 4")
	fs.StringVar(&o.reason, "reason", "", "why, recorded in the audit trail (default: what changed)")
	fs.BoolVar(&o.wait, "wait", false, "follow the rollout until it ends; exit 0 only if it succeeded")
}

const changeHelp = `The new release's spec is the service's current one with that one field
changed: the stable release's spec (what serves), or the latest release's
while a rollout is active or before any rollout succeeded (with
--supersede, the active rollout is replaced). It is rolled out like any
deploy, by the spec's update strategy; idempotent by request id, and
--wait follows the rollout like deploy --wait. The deploy is conditional
on the release that was read: if another deploy lands in between, the
coordinator refuses it and the change is read and applied again (up to 5
times), so it never overwrites that deploy.`

func scaleCmd() *command {
	return &command{
		name: "scale", args: "SERVICE N", complete: completeServices, summary: "release the service with N instances", minArgs: 2, maxArgs: 2,
		help:     "Make a new release of SERVICE that runs N instances (0 stops them all).\n\n" + changeHelp,
		examples: "  slipctl scale web 6 --wait\n  slipctl scale web 0 --reason \"maintenance\"",
		flags:    releaseFlags,
		run:      runScale,
	}
}

func setImageCmd() *command {
	return &command{
		name: "set-image", args: "SERVICE IMAGE", complete: completeServices, summary: "release the service with another image", minArgs: 2, maxArgs: 2,
		help:     "Make a new release of SERVICE that runs IMAGE (a Docker image reference).\n\n" + changeHelp,
		examples: "  slipctl set-image web slipway/demo:v3 --wait\n  slipctl set-image web registry.example/web@sha256:... --supersede",
		flags:    releaseFlags,
		run:      runSetImage,
	}
}

func runScale(ctx context.Context, a *app, o *opts, args []string) error {
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 || n > specrules.MaxCount {
		return exitcode.Usagef("scale: N must be a number of instances between 0 and %d, got %q", specrules.MaxCount, args[1])
	}
	return changeRelease(ctx, a, o, args[0], func(s *deployv1.ServiceSpec) string {
		was := s.GetCount()
		s.Count = int32(n)
		return fmt.Sprintf("scale from %d to %d instances", was, n)
	})
}

func runSetImage(ctx context.Context, a *app, o *opts, args []string) error {
	if args[1] == "" {
		return exitcode.Usagef("set-image: IMAGE must not be empty")
	}
	return changeRelease(ctx, a, o, args[0], func(s *deployv1.ServiceSpec) string {
		was := s.GetImage()
		s.Image = args[1]
		return fmt.Sprintf("image %s -> %s", was, args[1])
	})
}

// changeAttempts bounds how often a change is read and deployed again
// when another deploy lands between its read and its deploy.
const changeAttempts = 5

// changeRelease deploys the current spec of service (see changeHelp) with
// change applied, through the normal Deploy; change says what it did, the
// default reason. A change that changes nothing makes no release. The
// deploy is conditional on the release it read (expected_release): when
// another deploy landed in between, the coordinator refuses it
// (RELEASE_CHANGED) and the change is read and applied again, up to
// changeAttempts times, so it never overwrites that deploy.
func changeRelease(ctx context.Context, a *app, o *opts, service string, change func(*deployv1.ServiceSpec) string) error {
	reason := o.reason
	for attempt := 1; ; attempt++ {
		base, number, latest, err := currentSpec(ctx, a, service)
		if err != nil {
			return err
		}
		spec := proto.CloneOf(base)
		what := change(spec)
		if proto.Equal(spec, base) {
			a.note("%s release #%d already has that; no new release", service, number)
			return nil
		}
		o.reason = reason
		if o.reason == "" {
			o.reason = fmt.Sprintf("%s (from release #%d)", what, number)
		}
		err = newRelease(ctx, a, o, deployv1.DeployServiceClient.Deploy, func(rid string) *deployv1.DeployRequest {
			return &deployv1.DeployRequest{Spec: spec, RequestId: rid, Supersede: o.supersede, CreatedBy: a.g.by, Reason: o.reason, ExpectedRelease: proto.Uint64(latest)}
		})
		r, md := rpc.Reason(err)
		if r != rpc.ReasonReleaseChanged {
			return err
		}
		if attempt == changeAttempts {
			return exitcode.With(exitcode.Conflict, fmt.Errorf("%s: another deploy landed between reading and deploying the change %d times in a row (latest now #%s); nothing was deployed: %w",
				service, attempt, md[rpc.MetaCurrentRelease], err))
		}
		a.note("%s: release #%s landed after release #%d was read; applying the change to it again (attempt %d of %d)",
			service, md[rpc.MetaCurrentRelease], latest, attempt+1, changeAttempts)
	}
}

// currentSpec is the spec a change to service starts from, read on the
// leader, its release number, and the service's latest release when it
// was read (what the deploy is conditional on).
func currentSpec(ctx context.Context, a *app, service string) (*deployv1.ServiceSpec, uint64, uint64, error) {
	svc, err := ask(ctx, a, a.deploy, deployv1.DeployServiceClient.GetService,
		&deployv1.GetServiceRequest{Name: service, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil {
		return nil, 0, 0, err
	}
	s := svc.GetService()
	stable, latest := s.GetStableRelease(), s.GetLatestRelease()
	if stable == 0 || s.GetActiveRollout() != "" || stable == latest {
		return s.GetSpec(), latest, latest, nil
	}
	rels, err := ask(ctx, a, a.deploy, deployv1.DeployServiceClient.ListReleases,
		&deployv1.ListReleasesRequest{Service: service, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil {
		return nil, 0, 0, err
	}
	for _, r := range rels.GetReleases() {
		if r.GetNumber() == stable {
			return r.GetSpec(), stable, latest, nil
		}
	}
	return nil, 0, 0, fmt.Errorf("%s: stable release #%d not found among its releases", service, stable)
}
