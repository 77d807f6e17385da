package command

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"slipway.dev/platform/buildinfo"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
	"slipway.dev/slipctl/specfile"
)

func root() *command {
	return &command{
		name: "slipctl",
		help: `slipctl releases services through a Slipway coordinator and steers their
rollouts. Output is for people by default; -o json prints the API response
as protojson for scripts. Flags may be given before or after arguments.`,
		examples: `  export SLIPWAY_ADDR=coordinator-1:7400
  slipctl deploy -f deployments/examples/canary.yaml --wait
  slipctl rollout list --active
  slipctl -o json services | jq -r '.services[].name'`,
		subs: []*command{
			deployCmd(),
			planCmd(),
			validateCmd(),
			tlsCmd(),
			{name: "services", summary: "list services", maxArgs: 0,
				help:     "List every service with its latest and stable release and its active rollout.",
				examples: "  slipctl services\n  slipctl services -o json",
				flags:    leaderReadFlag,
				run:      runServices},
			{complete: completeServices, name: "service", args: "NAME", summary: "show one service", minArgs: 1, maxArgs: 1,
				help:     "Show one service: releases, active rollout and the latest spec's essentials.",
				examples: "  slipctl service web",
				flags:    leaderReadFlag,
				run:      runService},
			{complete: completeServices, name: "history", args: "SERVICE", summary: "list a service's releases and audit trail", minArgs: 1, maxArgs: 1,
				help:     "List a service's releases, newest first, and its audit trail of who did what and why.",
				examples: "  slipctl history web\n  slipctl history web --limit 5 -o json",
				flags: func(fs *pflag.FlagSet, o *opts) {
					fs.IntVar(&o.limit, "limit", 0, "show at most `N` releases (0: all)")
					leaderReadFlag(fs, o)
				},
				run: runHistory},
			rolloutCmd(),
			eventsCmd(),
			rollbackCmd(),
			scaleCmd(),
			setImageCmd(),
			importCmd(),
			clusterCmd(),
			aclCmd(),
			secretCmd(deployv1.SecretKind_SECRET_KIND_SECRET),
			secretCmd(deployv1.SecretKind_SECRET_KIND_CONFIG),
			completionCmd(),
			versionCmd(),
		},
	}
}

func versionCmd() *command {
	return &command{
		name: "version", summary: "print slipctl's version and commit", maxArgs: 0,
		help: `Print the version and commit slipctl was built from (stamped by make build
and make dist), the Go release and the platform. Nothing is asked of a
coordinator; every Slipway binary answers -version the same way.`,
		examples: "  slipctl version\n  slipctl version -o json | jq -r .commit",
		run: func(_ context.Context, a *app, _ *opts, _ []string) error {
			if a.g.output == "json" {
				return render.JSONValue(a.env.Stdout, buildinfo.Get())
			}
			buildinfo.Print(a.env.Stdout, "slipctl")
			return nil
		},
	}
}

func completionCmd() *command {
	return &command{
		name: "completion", args: "bash|zsh|fish", summary: "print a shell completion script", minArgs: 1, maxArgs: 1,
		help: `Print the completion script for bash, zsh or fish. It completes commands and
flags, and asks the coordinator (with your SLIPWAY_* settings) for rollout ids
and service names where a command takes one.`,
		examples: `  source <(slipctl completion bash)                    # this shell; add it to ~/.bashrc
  slipctl completion zsh > "${fpath[1]}/_slipctl"      # zsh, then restart the shell
  slipctl completion fish > ~/.config/fish/completions/slipctl.fish`,
		complete: func(context.Context, *app, []string) []string { return []string{"bash", "zsh", "fish"} },
		run: func(_ context.Context, a *app, _ *opts, args []string) error {
			w := a.env.Stdout
			switch args[0] {
			case "bash":
				return a.root.GenBashCompletionV2(w, true)
			case "zsh":
				return a.root.GenZshCompletion(w)
			case "fish":
				return a.root.GenFishCompletion(w, true)
			}
			return exitcode.Usagef("completion: unknown shell %q (want bash, zsh or fish)", args[0])
		},
	}
}

func leaderReadFlag(fs *pflag.FlagSet, o *opts) {
	fs.BoolVar(&o.leaderRead, "leader-read", false, "read on the leader after it verified its leadership, instead of the answering node's possibly lagging state")
}

func (o *opts) consistency() deployv1.ReadConsistency {
	if o.leaderRead {
		return deployv1.ReadConsistency_READ_CONSISTENCY_LEADER
	}
	return deployv1.ReadConsistency_READ_CONSISTENCY_LOCAL
}

func deployCmd() *command {
	return &command{
		name: "deploy", summary: "release a spec (and follow its rollout with --wait)", maxArgs: 0,
		help: `Release the service spec in a YAML or JSON file as a new immutable release
and start a rollout to it. The proto ServiceSpec is the schema (proto or
lowerCamelCase JSON field names); durations may be written 500ms, 3s, 5m, 1h;
update.strategy is rolling, blue_green or canary; a canary step may say
"pause: manual". Unknown fields are errors naming the field and line.

Deploy is idempotent by request id: without --request-id a fresh one is made
and printed on stderr, so a CI job can retry with the same id and get the
same release instead of a second one. The same id with a different spec is
refused (exit code 4, naming the release the id made): a new spec needs a
new id.

With --wait, follow the rollout until it ends (on a terminal as the live tree
of rollout get --watch, otherwise one line per event): exit 0 only when it SUCCEEDED,
1 when it ended FAILED, REVERTED, ABORTED or SUPERSEDED.`,
		examples: `  slipctl deploy -f deployments/examples/rolling.yaml
  slipctl deploy -f web.yaml --request-id "$CI_PIPELINE_ID-web" --reason "release 1.4" --wait
  slipctl deploy -f web.json --supersede -o json
  cat web.yaml | slipctl deploy -f -`,
		flags: func(fs *pflag.FlagSet, o *opts) {
			fs.StringVarP(&o.file, "file", "f", "", "spec `file` (YAML or JSON; - for stdin); required")
			fs.StringVar(&o.requestID, "request-id", "", "idempotency `key`; retries must reuse it (default: a fresh random id, printed)")
			fs.BoolVar(&o.supersede, "supersede", false, "replace the service's active rollout instead of failing with exit code 4")
			fs.StringVar(&o.reason, "reason", "", "why, recorded in the audit trail")
			fs.BoolVar(&o.wait, "wait", false, "follow the rollout until it ends; exit 0 only if it succeeded")
		},
		run: runDeploy,
	}
}

func runDeploy(ctx context.Context, a *app, o *opts, _ []string) error {
	if o.file == "" {
		return exitcode.Usagef("deploy: -f FILE is required (see slipctl deploy --help)")
	}
	f, err := a.readSpec(o.file)
	if err != nil {
		return err
	}
	spec := f.Spec
	err = newRelease(ctx, a, o, deployv1.DeployServiceClient.Deploy, func(rid string) *deployv1.DeployRequest {
		return &deployv1.DeployRequest{Spec: spec, RequestId: rid, Supersede: o.supersede, CreatedBy: a.g.by, Reason: o.reason}
	})
	// The coordinator names fields; say at which line of the file they are.
	return locateStatus(f, err)
}

// readSpec reads the spec file name ("-": standard input), keeping the
// line of every field; a problem with it is a usage error (exit code 2).
func (a *app) readSpec(name string) (*specfile.File, error) {
	var (
		f   *specfile.File
		err error
	)
	if name == "-" && a.env.Stdin != nil {
		var data []byte
		if data, err = io.ReadAll(a.env.Stdin); err != nil {
			return nil, fmt.Errorf("read spec from stdin: %w", err)
		}
		f, err = specfile.Load("-", data)
	} else {
		f, err = specfile.Open(name)
	}
	if err != nil {
		return nil, exitcode.With(exitcode.Usage, err)
	}
	return f, nil
}

// releaseResponse is the answer of Deploy and RollbackService.
type releaseResponse interface {
	rolloutResponse
	GetRelease() *deployv1.Release
	GetReplayed() bool
}

// newRelease sends a Deploy or RollbackService carrying o's request id (a
// fresh one unless --request-id gave it; printed so a CI job can retry it
// safely), shows the release and its rollout and, with --wait, follows the
// rollout to its end.
func newRelease[Req any, Resp releaseResponse](ctx context.Context, a *app, o *opts,
	method func(deployv1.DeployServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req func(requestID string) Req) error {
	if o.requestID == "" {
		o.requestID = NewRequestID()
	}
	a.note("request id %s (retry with --request-id %s)", o.requestID, o.requestID)
	resp, err := write(ctx, a, a.deploy, method, req(o.requestID), o.requestID)
	if err != nil {
		return err
	}
	show := a.show
	if o.wait {
		// JSON lines throughout: the response, then one line per event.
		show = a.showLine
	}
	if err := show(resp, func(w io.Writer) error {
		return render.Deploy(w, resp.GetRelease(), resp.GetRollout(), resp.GetReplayed())
	}); err != nil {
		return err
	}
	if !o.wait {
		return nil
	}
	return a.watch(ctx, resp.GetRollout().GetId(), resp.GetRelease().GetSpec())
}

func runServices(ctx context.Context, a *app, o *opts, _ []string) error {
	return query(ctx, a, a.deploy, deployv1.DeployServiceClient.ListServices, &deployv1.ListServicesRequest{Consistency: o.consistency()},
		func(w io.Writer, r *deployv1.ListServicesResponse) error { return render.Services(w, r.GetServices()) })
}

func runService(ctx context.Context, a *app, o *opts, args []string) error {
	return query(ctx, a, a.deploy, deployv1.DeployServiceClient.GetService, &deployv1.GetServiceRequest{Name: args[0], Consistency: o.consistency()},
		func(w io.Writer, r *deployv1.GetServiceResponse) error { return render.Service(w, r.GetService()) })
}

func runHistory(ctx context.Context, a *app, o *opts, args []string) error {
	if o.limit < 0 {
		return exitcode.Usagef("history: --limit must be zero or more")
	}
	req := &deployv1.ListReleasesRequest{Service: args[0], Limit: int32(min(o.limit, 1<<30)), Consistency: o.consistency()}
	return query(ctx, a, a.deploy, deployv1.DeployServiceClient.ListReleases, req,
		func(w io.Writer, r *deployv1.ListReleasesResponse) error {
			return render.History(w, r.GetReleases(), r.GetAudit())
		})
}

func rolloutCmd() *command {
	reasonFlag := func(fs *pflag.FlagSet, o *opts) {
		fs.StringVar(&o.reason, "reason", "", "why, recorded with the command")
	}
	return &command{
		name: "rollout", summary: "inspect and steer rollouts",
		help: `Inspect rollouts and steer the active one. promote, pause, resume and abort
record the operator's command; the leader's rollout engine acts on it.`,
		examples: `  slipctl rollout list --service web --active
  slipctl rollout watch web-3
  slipctl rollout promote web-3 --full`,
		subs: []*command{
			{name: "get", args: "ID", summary: "show a rollout (--watch: a live tree until it ends)", minArgs: 1, maxArgs: 1,
				help: `Show one rollout: state, step, traffic weights, step history and operator
commands.

With --watch, follow it until it ends. On a terminal that is a live tree,
redrawn every second: each track (stable, canary or preview) with its
release, image, traffic weight and healthy instances, every step with the
current one's pause countdown or the command it waits for ("waiting for
promote: slipctl rollout promote web-3"), and the latest events. Not on a
terminal (or with -o json), one line per event, like rollout watch. Exits
like rollout watch: 0 only when the rollout SUCCEEDED.`,
				examples: "  slipctl rollout get web-3\n  slipctl rollout get web-3 --watch",
				flags: func(fs *pflag.FlagSet, o *opts) {
					fs.BoolVarP(&o.watch, "watch", "w", false, "follow the rollout until it ends, as a live tree on a terminal")
					leaderReadFlag(fs, o)
				}, run: runRolloutGet, complete: completeRollouts},
			{name: "list", summary: "list rollouts, newest first", maxArgs: 0,
				help: "List rollouts, newest first.", examples: "  slipctl rollout list\n  slipctl rollout list --service web --active -o json",
				flags: func(fs *pflag.FlagSet, o *opts) {
					fs.StringVar(&o.service, "service", "", "only rollouts of this `service`")
					fs.BoolVar(&o.active, "active", false, "only rollouts that have not ended")
					fs.IntVar(&o.limit, "limit", 0, "show at most `N` rollouts (0: the server's default, 100)")
					leaderReadFlag(fs, o)
				}, run: runRolloutList},
			{name: "watch", args: "ID", complete: completeRollouts, summary: "follow a rollout until it ends", minArgs: 1, maxArgs: 1,
				help: `Follow a rollout's events until it ends: on a terminal a live progress
line, otherwise one plain line per event (with -o json, one protojson
WatchRolloutResponse per line). Exits 0 only when the rollout SUCCEEDED.
A dropped stream is resumed from the last event seen.`,
				examples: "  slipctl rollout watch web-3\n  slipctl rollout watch web-3 -o json | jq .event.kind",
				run:      func(ctx context.Context, a *app, _ *opts, args []string) error { return a.watch(ctx, args[0], nil) }},
			{name: "promote", args: "ID", complete: completeRollouts, summary: "move a paused or manual step on", minArgs: 1, maxArgs: 1,
				help:     "Promote a rollout: move a paused or manual canary step on, or finish a blue/green switch. --full skips every remaining step.",
				examples: "  slipctl rollout promote web-3\n  slipctl rollout promote web-3 --full --reason 'metrics look fine'",
				flags: func(fs *pflag.FlagSet, o *opts) {
					fs.BoolVar(&o.full, "full", false, "skip every remaining step")
					reasonFlag(fs, o)
				}, run: runPromote},
			{name: "pause", args: "ID", complete: completeRollouts, summary: "hold a rollout at its current step", minArgs: 1, maxArgs: 1,
				help: "Pause a rollout at its current step until it is resumed or promoted.", examples: "  slipctl rollout pause web-3 --reason 'investigating errors'",
				flags: reasonFlag, run: runPause},
			{name: "resume", args: "ID", complete: completeRollouts, summary: "release a pause", minArgs: 1, maxArgs: 1,
				help: "Resume a paused rollout.", examples: "  slipctl rollout resume web-3",
				flags: reasonFlag, run: runResume},
			{name: "abort", args: "ID", complete: completeRollouts, summary: "return all traffic to stable and stop", minArgs: 1, maxArgs: 1,
				help: "Abort a rollout: all traffic goes back to the stable release at once and the rollout ends ABORTED.", examples: "  slipctl rollout abort web-3 --reason 'bad release'",
				flags: reasonFlag, run: runAbort},
		},
	}
}

func runRolloutGet(ctx context.Context, a *app, o *opts, args []string) error {
	if o.watch {
		return a.watch(ctx, args[0], nil)
	}
	return query(ctx, a, a.deploy, deployv1.DeployServiceClient.GetRollout, &deployv1.GetRolloutRequest{Id: args[0], Consistency: o.consistency()},
		func(w io.Writer, r *deployv1.GetRolloutResponse) error { return render.Rollout(w, r.GetRollout()) })
}

func runRolloutList(ctx context.Context, a *app, o *opts, _ []string) error {
	if o.limit < 0 {
		return exitcode.Usagef("rollout list: --limit must be zero or more")
	}
	req := &deployv1.ListRolloutsRequest{Service: o.service, ActiveOnly: o.active, Limit: int32(min(o.limit, 1<<30)), Consistency: o.consistency()}
	return query(ctx, a, a.deploy, deployv1.DeployServiceClient.ListRollouts, req,
		func(w io.Writer, r *deployv1.ListRolloutsResponse) error { return render.Rollouts(w, r.GetRollouts()) })
}

func runPromote(ctx context.Context, a *app, o *opts, args []string) error {
	what := "promote"
	if o.full {
		what = "full promote"
	}
	return operatorCommand(ctx, a, what, deployv1.DeployServiceClient.PromoteRollout,
		&deployv1.PromoteRolloutRequest{Id: args[0], Full: o.full, By: a.g.by, Reason: o.reason, RequestId: NewRequestID()})
}

func runPause(ctx context.Context, a *app, o *opts, args []string) error {
	return operatorCommand(ctx, a, "pause", deployv1.DeployServiceClient.PauseRollout,
		&deployv1.PauseRolloutRequest{Id: args[0], By: a.g.by, Reason: o.reason, RequestId: NewRequestID()})
}

func runResume(ctx context.Context, a *app, o *opts, args []string) error {
	return operatorCommand(ctx, a, "resume", deployv1.DeployServiceClient.ResumeRollout,
		&deployv1.ResumeRolloutRequest{Id: args[0], By: a.g.by, Reason: o.reason, RequestId: NewRequestID()})
}

func runAbort(ctx context.Context, a *app, o *opts, args []string) error {
	return operatorCommand(ctx, a, "abort", deployv1.DeployServiceClient.AbortRollout,
		&deployv1.AbortRolloutRequest{Id: args[0], By: a.g.by, Reason: o.reason, RequestId: NewRequestID()})
}

// rolloutResponse is the answer of every operator command.
type rolloutResponse interface {
	proto.Message
	GetRollout() *deployv1.Rollout
}

// operatorRequest is the request of every operator command.
type operatorRequest interface {
	GetRequestId() string
}

// operatorCommand sends one operator command (promote, pause, resume,
// abort), retried with its request id while the coordinator is unavailable
// (recorded once however often it is sent), and prints what the
// coordinator recorded.
func operatorCommand[Req operatorRequest, Resp rolloutResponse](ctx context.Context, a *app, what string,
	method func(deployv1.DeployServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) error {
	resp, err := write(ctx, a, a.deploy, method, req, req.GetRequestId())
	if err != nil {
		return err
	}
	return a.show(resp, func(w io.Writer) error { return commandDone(w, what, resp.GetRollout()) })
}

func commandDone(w io.Writer, what string, r *deployv1.Rollout) error {
	_, err := fmt.Fprintf(w, "%s recorded for rollout %s (now %s, %s, weights %s)\n",
		what, r.GetId(), render.State(r.GetState()), render.Step(r.GetStep(), 0), orNone(render.Weights(r.GetWeights())))
	return err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func rollbackCmd() *command {
	return &command{
		name: "rollback", args: "SERVICE", complete: completeServices, summary: "deploy an earlier release again", minArgs: 1, maxArgs: 1,
		help: `Deploy an earlier release of SERVICE again, as a new release with a new
rollout: the one before the latest, or release N with --to N. Idempotent by
request id like deploy. With --wait, follow the rollout like deploy --wait.`,
		examples: `  slipctl rollback web
  slipctl rollback web --to 3 --reason "v4 leaks memory" --wait`,
		flags: func(fs *pflag.FlagSet, o *opts) {
			fs.Uint64Var(&o.to, "to", 0, "release `N` to return to (default: the one before the latest)")
			fs.StringVar(&o.requestID, "request-id", "", "idempotency `key` (default: a fresh random id, printed)")
			fs.BoolVar(&o.supersede, "supersede", false, "replace the service's active rollout instead of failing with exit code 4")
			fs.StringVar(&o.reason, "reason", "", "why, recorded in the audit trail")
			fs.BoolVar(&o.wait, "wait", false, "follow the rollout until it ends; exit 0 only if it succeeded")
		},
		run: runRollback,
	}
}

func runRollback(ctx context.Context, a *app, o *opts, args []string) error {
	return newRelease(ctx, a, o, deployv1.DeployServiceClient.RollbackService, func(rid string) *deployv1.RollbackServiceRequest {
		return &deployv1.RollbackServiceRequest{Service: args[0], ToRelease: o.to, RequestId: rid, Supersede: o.supersede, By: a.g.by, Reason: o.reason}
	})
}

func clusterCmd() *command {
	return &command{
		name: "cluster", summary: "coordinator membership and workload nodes",
		help: "Manage the raft cluster of coordinators and the workload nodes. Membership changes are forwarded to the leader.",
		examples: `  slipctl cluster peers
  slipctl cluster add c4 10.0.0.4:7401
  slipctl cluster transfer c2
  slipctl cluster drain node-7`,
		subs: []*command{
			{name: "peers", summary: "list raft peers and their roles", maxArgs: 0,
				help: "List the coordinators in the raft configuration with their roles, and the leader, term and indexes.", examples: "  slipctl cluster peers",
				run: runPeers},
			{name: "leader", summary: "show the current leader", maxArgs: 0,
				help: "Show the leader as the answering coordinator sees it. Exits 5 while it knows no leader, so scripts can wait for one.", examples: "  slipctl cluster leader",
				run: runLeader},
			{name: "add", args: "ID RAFTADDR", summary: "add a coordinator to the raft configuration", minArgs: 2, maxArgs: 2,
				help:     "Add a coordinator, started with -join or without -bootstrap, as a voter (or a non-voter).",
				examples: "  slipctl cluster add c4 10.0.0.4:7401\n  slipctl cluster add c5 10.0.0.5:7401 --non-voter",
				flags: func(fs *pflag.FlagSet, o *opts) {
					fs.BoolVar(&o.nonVoter, "non-voter", false, "add it as a non-voter that only replicates the log")
				}, run: runAddPeer},
			{name: "remove", args: "ID", summary: "remove a coordinator from the raft configuration", minArgs: 1, maxArgs: 1,
				help: "Remove a coordinator from the raft configuration.", examples: "  slipctl cluster remove c3",
				run: runRemovePeer},
			{name: "transfer", args: "[ID]", summary: "hand leadership to another voter", maxArgs: 1,
				help: "Ask the leader to hand leadership to another voter: ID when given, otherwise the most up-to-date one.", examples: "  slipctl cluster transfer\n  slipctl cluster transfer c2",
				run: runTransfer},
			{name: "nodes", summary: "list workload nodes", maxArgs: 0,
				help: "List the nodes running a node agent, with their resources, labels and status.", examples: "  slipctl cluster nodes",
				run: runNodes},
			{name: "drain", args: "NODE", summary: "drain a node (or undrain with --disable)", minArgs: 1, maxArgs: 1,
				help:     "Mark a node draining: no new placements, and its allocations move elsewhere. --disable clears the mark.",
				examples: "  slipctl cluster drain node-7\n  slipctl cluster drain node-7 --disable",
				flags: func(fs *pflag.FlagSet, o *opts) {
					fs.BoolVar(&o.disable, "disable", false, "clear the drain mark instead of setting it")
				}, run: runDrain},
		},
	}
}

func runPeers(ctx context.Context, a *app, _ *opts, _ []string) error {
	return query(ctx, a, a.cluster, clusterv1.ClusterServiceClient.ListPeers, &clusterv1.ListPeersRequest{}, render.Peers)
}

func runLeader(ctx context.Context, a *app, _ *opts, _ []string) error {
	c, err := a.cluster()
	if err != nil {
		return err
	}
	resp, err := call(ctx, a, c.GetLeader, &clusterv1.GetLeaderRequest{})
	if err != nil {
		return err
	}
	if err := a.show(resp, func(w io.Writer) error { return render.Leader(w, resp) }); err != nil {
		return err
	}
	if resp.GetLeaderId() == "" {
		// Scripts wait for a leader with this command: no leader is not ok.
		return exitcode.With(exitcode.Unavailable, fmt.Errorf("%s knows no leader yet", orSelf(resp.GetSelfId())))
	}
	return nil
}

func orSelf(id string) string {
	if id == "" {
		return "the coordinator"
	}
	return "coordinator " + id
}

func runAddPeer(ctx context.Context, a *app, o *opts, args []string) error {
	return query(ctx, a, a.cluster, clusterv1.ClusterServiceClient.AddPeer, &clusterv1.AddPeerRequest{Id: args[0], RaftAddress: args[1], NonVoter: o.nonVoter},
		func(w io.Writer, r *clusterv1.AddPeerResponse) error { return render.PeerList(w, r.GetPeers()) })
}

func runRemovePeer(ctx context.Context, a *app, _ *opts, args []string) error {
	return query(ctx, a, a.cluster, clusterv1.ClusterServiceClient.RemovePeer, &clusterv1.RemovePeerRequest{Id: args[0]},
		func(w io.Writer, r *clusterv1.RemovePeerResponse) error { return render.PeerList(w, r.GetPeers()) })
}

func runTransfer(ctx context.Context, a *app, _ *opts, args []string) error {
	req := &clusterv1.TransferLeadershipRequest{}
	if len(args) == 1 {
		req.Id = args[0]
	}
	return query(ctx, a, a.cluster, clusterv1.ClusterServiceClient.TransferLeadership, req,
		func(w io.Writer, r *clusterv1.TransferLeadershipResponse) error {
			_, err := fmt.Fprintf(w, "leadership transferred to %s\n", r.GetLeaderId())
			return err
		})
}

func runNodes(ctx context.Context, a *app, _ *opts, _ []string) error {
	return query(ctx, a, a.cluster, clusterv1.ClusterServiceClient.ListNodes, &clusterv1.ListNodesRequest{},
		func(w io.Writer, r *clusterv1.ListNodesResponse) error { return render.Nodes(w, r.GetNodes()) })
}

func runDrain(ctx context.Context, a *app, o *opts, args []string) error {
	return query(ctx, a, a.cluster, clusterv1.ClusterServiceClient.DrainNode, &clusterv1.DrainNodeRequest{Id: args[0], Enable: !o.disable, By: a.g.by},
		func(w io.Writer, r *clusterv1.DrainNodeResponse) error {
			state := "draining"
			if !r.GetNode().GetDraining() {
				state = "not draining"
			}
			_, err := fmt.Fprintf(w, "node %s is %s\n", r.GetNode().GetId(), state)
			return err
		})
}

// completeRollouts offers the ids of the active rollouts, for shell
// completion; none when the coordinator does not answer.
func completeRollouts(ctx context.Context, a *app, _ []string) []string {
	a.g.timeout = min(a.g.timeout, 3*time.Second)
	resp, err := ask(ctx, a, a.deploy, deployv1.DeployServiceClient.ListRollouts, &deployv1.ListRolloutsRequest{ActiveOnly: true})
	if err != nil {
		return nil
	}
	var ids []string
	for _, r := range resp.GetRollouts() {
		ids = append(ids, r.GetId()+"\t"+r.GetService()+" "+render.State(r.GetState()))
	}
	return ids
}

// completeServices offers the service names, for shell completion.
func completeServices(ctx context.Context, a *app, _ []string) []string {
	a.g.timeout = min(a.g.timeout, 3*time.Second)
	resp, err := ask(ctx, a, a.deploy, deployv1.DeployServiceClient.ListServices, &deployv1.ListServicesRequest{})
	if err != nil {
		return nil
	}
	var names []string
	for _, s := range resp.GetServices() {
		names = append(names, s.GetName())
	}
	return names
}
