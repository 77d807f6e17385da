// Package command implements slipctl's commands: flags, help, calls to the
// coordinator's API and their output.
package command

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
)

// DefaultAddr is the coordinator address used without --addr or SLIPWAY_ADDR.
const DefaultAddr = "localhost:7400"

// Env is what a run of slipctl sees of the world.
type Env struct {
	// Stdin is read by "deploy -f -".
	Stdin io.Reader
	// Stdout receives results; Stderr receives errors and notes.
	Stdout, Stderr io.Writer
	// Getenv reads environment variables.
	Getenv func(string) string
	// Environ lists the environment (KEY=VALUE), for import compose's
	// interpolation; nil: os.Environ.
	Environ func() []string
	// Terminal is true when Stdout is a terminal: live progress is drawn.
	Terminal bool
	// Width is the terminal's width in columns (0: unknown, 100 is used).
	Width int
	// Now is the clock.
	Now func() time.Time
}

// globals are the flags every command accepts.
type globals struct {
	addr    string
	output  string
	timeout time.Duration
	by      string
	sec     rpc.Security
	token   string
	// retryFor bounds the retries of a write answered UNAVAILABLE.
	retryFor time.Duration
}

// app is one run of slipctl.
type app struct {
	env  Env
	g    globals
	conn *grpc.ClientConn
	// root is the cobra tree of this run, for completion scripts.
	root *cobra.Command
}

// command is one slipctl command or group of subcommands.
type command struct {
	name     string
	args     string // e.g. "SERVICE"
	summary  string
	help     string // long description, flags and examples follow
	examples string
	flags    func(fs *pflag.FlagSet, o *opts)
	run      func(ctx context.Context, a *app, o *opts, args []string) error
	subs     []*command
	// minArgs and maxArgs bound the positional arguments.
	minArgs, maxArgs int
	// complete offers values for the positional arguments in shell
	// completion, e.g. rollout ids; nil offers none.
	complete func(ctx context.Context, a *app, args []string) []string
}

// opts holds every command-specific flag.
type opts struct {
	file, requestID, reason, service string
	supersede, wait, full, active    bool
	disable, nonVoter                bool
	to                               uint64
	limit                            int
	leaderRead                       bool
	tls                              tlsOpts
	policies, services               listFlag
	description                      string
	files                            []string
	watch                            bool
	since                            string
	follow                           bool
	fromFile, fromLiteral            string
	redeploy, noServices             bool
	out                              string
	strict, force, keepPairs         bool
}

func addGlobals(fs *pflag.FlagSet, g *globals, env Env) {
	addr := env.Getenv("SLIPWAY_ADDR")
	if addr == "" {
		addr = DefaultAddr
	}
	g.addr, g.output, g.timeout, g.by = addr, "text", 30*time.Second, defaultActor(env)
	g.token = env.Getenv("SLIPWAY_TOKEN")
	g.retryFor = time.Minute
	fs.StringVar(&g.addr, "addr", g.addr, "coordinator gRPC `address` (env SLIPWAY_ADDR)")
	fs.StringVarP(&g.output, "output", "o", g.output, "output `format`: text (for people) or json (protojson of the response, for scripts)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of each call to the coordinator")
	fs.DurationVar(&g.retryFor, "retry-for", g.retryFor, "how long a write (deploy, rollback, promote, pause, resume, abort) answered UNAVAILABLE or timed out is retried with the same request id; after it, an unknown outcome exits 7 (0s: no retries)")
	fs.StringVar(&g.by, "by", g.by, "`name` recorded in the audit trail as who asked (env SLIPWAY_ACTOR, else $USER)")
	fs.Var((*secretFlag)(&g.token), "token", "ACL token `secret`, sent as authorization: Bearer on every call (env SLIPWAY_TOKEN; prefer the environment: flags show in ps)")
	addTLSGlobals(fs, g, env)
}

func defaultActor(env Env) string {
	if a := env.Getenv("SLIPWAY_ACTOR"); a != "" {
		return a
	}
	if u := env.Getenv("USER"); u != "" {
		return u
	}
	return "slipctl"
}

// Main runs slipctl with args (without the program name) and returns the
// exit code.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	a := &app{env: env}
	defer func() {
		if a.conn != nil {
			a.conn.Close()
		}
	}()
	err := a.execute(ctx, root(), args)
	if err != nil {
		render.Error(env.Stderr, err)
	}
	return exitcode.FromError(err)
}

// help prints the help of one command: usage, description, subcommands,
// flags, environment, examples and exit codes.
func (a *app) help(cmd *cobra.Command) {
	w := cmd.OutOrStdout()
	path := cmd.CommandPath()
	var subs []*cobra.Command
	for _, s := range cmd.Commands() {
		if s.IsAvailableCommand() {
			subs = append(subs, s)
		}
	}
	if len(subs) > 0 {
		fmt.Fprintf(w, "Usage: %s [flags] COMMAND [args]\n\n%s\n\nCommands:\n", path, strings.TrimSpace(cmd.Long))
		for _, sub := range subs {
			fmt.Fprintf(w, "  %-34s %s\n", sub.Use, sub.Short)
		}
		fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags and examples.\n", path)
	} else {
		args := strings.TrimSpace(strings.TrimPrefix(cmd.Use, cmd.Name()))
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace(path+" [flags] "+args), strings.TrimSpace(cmd.Long))
	}
	var local strings.Builder
	printFlags(&local, cmd.LocalNonPersistentFlags())
	fmt.Fprintf(w, "\nFlags:\n%s", local.String())
	if local.Len() > 0 {
		fmt.Fprintf(w, "\nGlobal flags:\n")
	}
	global := pflag.NewFlagSet("global", pflag.ContinueOnError)
	global.AddFlagSet(cmd.InheritedFlags())
	global.AddFlagSet(cmd.PersistentFlags())
	printFlags(w, global)
	fmt.Fprintf(w, "\nEnvironment:\n  SLIPWAY_ADDR   coordinator address (default %s); --addr overrides it\n  SLIPWAY_ACTOR  name recorded in the audit trail (default $USER); --by overrides it\n  SLIPWAY_TOKEN  ACL token secret sent on every call; --token overrides it\n", DefaultAddr)
	fmt.Fprint(w, tlsEnvHelp)
	if cmd.Example != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(cmd.Example, "\n"))
	}
	fmt.Fprintf(w, "\n%s\n", exitcode.Help)
}

// printFlags lists flags sorted by name, each with its current default.
func printFlags(w io.Writer, fs *pflag.FlagSet) {
	fs.SortFlags = true
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" || f.Name == "version" {
			return
		}
		name, usage := pflag.UnquoteUsage(f)
		left := "--" + f.Name
		if f.Shorthand != "" {
			left = "-" + f.Shorthand + ", " + left
		}
		if name != "" && name != "bool" {
			left += " " + name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  %-24s %s%s\n", left, usage, def)
	})
}

// client returns the connection to the coordinator, dialling it once.
func (a *app) client() (*grpc.ClientConn, error) {
	if a.conn != nil {
		return a.conn, nil
	}
	creds, err := rpc.NewCreds(a.g.sec, nil)
	if err != nil {
		return nil, exitcode.Usagef("%v", tlsHint(err))
	}
	var opts []grpc.DialOption
	if a.g.token != "" {
		opts = append(opts, rpc.WithToken(a.g.token))
	}
	conn, err := rpc.Dial(a.g.addr, creds, rpc.ExpectRole(pki.RoleCoordinator), opts...)
	if err != nil {
		return nil, exitcode.Usagef("bad coordinator address %q: %v", a.g.addr, err)
	}
	a.conn = conn
	return conn, nil
}

func (a *app) deploy() (deployv1.DeployServiceClient, error) {
	conn, err := a.client()
	if err != nil {
		return nil, err
	}
	return deployv1.NewDeployServiceClient(conn), nil
}

func (a *app) cluster() (clusterv1.ClusterServiceClient, error) {
	conn, err := a.client()
	if err != nil {
		return nil, err
	}
	return clusterv1.NewClusterServiceClient(conn), nil
}

// call runs one RPC under the --timeout deadline.
func call[Req, Resp any](ctx context.Context, a *app, fn func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, a.g.timeout)
	defer cancel()
	return fn(ctx, req)
}

// ask calls one method of a coordinator service (client is a.deploy or
// a.cluster, method a method expression of its client) within the global
// timeout.
func ask[C, Req, Resp any](ctx context.Context, a *app, client func() (C, error),
	method func(C, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	c, err := client()
	if err != nil {
		var zero Resp
		return zero, err
	}
	return call(ctx, a, func(ctx context.Context, req Req, opts ...grpc.CallOption) (Resp, error) {
		return method(c, ctx, req, opts...)
	}, req)
}

// query asks and shows the answer: JSON with -o json, text otherwise.
func query[C, Req any, Resp proto.Message](ctx context.Context, a *app, client func() (C, error),
	method func(C, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, text func(io.Writer, Resp) error) error {
	resp, err := ask(ctx, a, client, method, req)
	if err != nil {
		return err
	}
	return a.show(resp, func(w io.Writer) error { return text(w, resp) })
}

// show prints resp as JSON with -o json, or with text otherwise.
func (a *app) show(resp proto.Message, text func(io.Writer) error) error {
	if a.g.output == "json" {
		return render.JSON(a.env.Stdout, resp)
	}
	return text(a.env.Stdout)
}

// showLine is show with JSON on one line, for output followed by a stream.
func (a *app) showLine(resp proto.Message, text func(io.Writer) error) error {
	if a.g.output == "json" {
		return render.JSONLine(a.env.Stdout, resp)
	}
	return text(a.env.Stdout)
}

// note prints a line for people on stderr.
func (a *app) note(format string, args ...any) {
	fmt.Fprintf(a.env.Stderr, format+"\n", args...)
}

// NewRequestID returns a fresh random request id.
func NewRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "slipctl-" + hex.EncodeToString(b)
}
