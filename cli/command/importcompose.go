package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"slipway.dev/platform/spec"
	"slipway.dev/slipctl/compose"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
	"slipway.dev/slipctl/specfile"
)

// composeDefaults are the file names Compose looks for, in its order.
var composeDefaults = []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}

func importCmd() *command {
	return &command{
		name: "import", summary: "turn other tools' files into Slipway specs",
		help:     "Import the services of another tool's files as Slipway spec files.",
		examples: "  slipctl import compose docker-compose.yml --out specs/",
		subs: []*command{{
			name: "compose", args: "[FILE]", summary: "write a Slipway spec per service of a Compose file", maxArgs: 1,
			help: `Read a Compose file (the Compose Specification: docker-compose.yml,
compose.yaml; FILE or -f, default the first of compose.yaml, compose.yml,
docker-compose.yaml, docker-compose.yml here) and write one spec file per
service, SERVICE.yaml in --out, the format slipctl deploy -f reads.
Variables are interpolated as Compose does (${VAR}, ${VAR:-default},
${VAR:?error}; .env beside the file, then the environment).

What maps: image; command (args) and entrypoint; environment (list or
map) and env_file; the first of ports (the container port; host ports are
the agent's, further ports are warned about); healthcheck, when its test is
an HTTP probe of the container (curl/wget http://localhost:PORT/PATH) or
nc -z; deploy.replicas (or scale) as count; deploy.update_config
(parallelism, delay as stagger, monitor as min_healthy_time, failure_action
rollback as auto_revert, order start-first as max_surge with
max_unavailable 0, stop-first the other way round); deploy.restart_policy
and restart as the restart policy; deploy.resources (cpus at 1 CPU = 1000
MHz, memory in MiB); labels and deploy.labels; stop_signal;
stop_grace_period as kill_timeout; named volumes (read-only kept);
absolute bind mounts as security.host_mounts (with a warning: nodes must
allow the path); secrets and configs by name, target, mode, uid and gid.
Their values are not imported: the slipctl secret/config create commands
to run are printed, scoped (--service) to the services that mount them.

A hand-made blue/green pair (services X-blue and X-green that differ only
in image and a label or env value naming their colour) becomes one service
X with update.strategy blue_green, the blue one's image first and the
command that releases the green one's printed; --keep-pairs keeps them
apart.

Everything else (build, depends_on, networks, privileged, cap_add, ...) is
a warning naming the service, the key and its line, never dropped
silently; --strict makes any key not carried over an error. Every spec is
checked by the rules slipctl validate and deploy apply before anything is
written; a violation names the service and field, and nothing is written.
Existing files are not overwritten without --force. --out - prints the
specs on stdout, separated by ---.`,
			examples: `  slipctl import compose docker-compose.yml --out specs/
  slipctl import compose -f stack.yml --service web --service api --out -
  TAG=v2 slipctl import compose --strict --out specs/ && slipctl deploy -f specs/web.yaml --wait`,
			flags: func(fs *pflag.FlagSet, o *opts) {
				fs.StringVarP(&o.file, "file", "f", "", "Compose `file` (instead of FILE)")
				fs.StringArrayVar(&o.files, "service", nil, "import only this Compose `service`; repeatable (default: all)")
				fs.StringVar(&o.out, "out", ".", "`dir`ectory to write SERVICE.yaml into ('-': stdout)")
				fs.BoolVar(&o.strict, "strict", false, "refuse the file if any key cannot be carried over")
				fs.BoolVar(&o.force, "force", false, "overwrite spec files that exist")
				fs.BoolVar(&o.keepPairs, "keep-pairs", false, "keep a hand-made blue/green pair (web-blue, web-green) as two services instead of folding it into one")
			},
			run: runImportCompose,
		}},
	}
}

// importJSON is import compose's answer with -o json.
type importJSON struct {
	File     string          `json:"file"`
	Services []importService `json:"services"`
	Warnings []string        `json:"warnings,omitempty"`
}

type importService struct {
	Compose  string   `json:"compose"`
	Service  string   `json:"service"`
	File     string   `json:"file,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Commands []string `json:"commands,omitempty"`
}

func runImportCompose(ctx context.Context, a *app, o *opts, args []string) error {
	file := o.file
	if len(args) == 1 {
		if file != "" {
			return exitcode.Usagef("import compose: give FILE or -f, not both")
		}
		file = args[0]
	}
	if file == "" {
		for _, n := range composeDefaults {
			if _, err := os.Stat(n); err == nil {
				file = n
				break
			}
		}
		if file == "" {
			return exitcode.Usagef("import compose: no FILE given and none of %s here (see slipctl import compose --help)", strings.Join(composeDefaults, ", "))
		}
	}
	env := map[string]string{}
	environ := a.env.Environ
	if environ == nil {
		environ = os.Environ
	}
	for _, kv := range environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	res, err := compose.Import(ctx, file, compose.Options{Services: o.files, Env: env, KeepPairs: o.keepPairs})
	if err != nil {
		return exitcode.With(exitcode.Usage, err)
	}
	warnings := allWarnings(res)
	for _, w := range warnings {
		a.note("warning: %s", w.String(file))
	}
	if o.strict {
		var n int
		for _, w := range warnings {
			if w.Kind == compose.Unsupported {
				n++
			}
		}
		if n > 0 {
			return exitcode.Usagef("import compose: --strict: %d key(s) of %s cannot be carried over (warnings above); nothing written", n, file)
		}
	}

	// Render every spec and check it as deploy -f would read it: the file
	// format, then the coordinator's rules. Nothing is written unless all
	// pass.
	type output struct {
		svc  compose.Service
		path string
		data []byte
	}
	var outs []output
	var errs specfile.Errors
	names := map[string]string{}
	for _, s := range res.Services {
		name := s.Spec.GetName()
		if other, dup := names[name]; dup && name != "" {
			errs = append(errs, &specfile.Error{File: file, Field: "services." + s.Compose,
				Message: fmt.Sprintf("becomes service %q, as %s does; rename one", name, other)})
			continue
		}
		names[name] = s.Compose
		path := "-"
		if o.out != "-" {
			path = filepath.Join(o.out, fileName(s)+".yaml")
		}
		data, err := compose.Marshal(s.Spec, header(file, s))
		if err != nil {
			return err
		}
		f, err := specfile.Load(path, data)
		if err != nil {
			var es specfile.Errors
			if errors.As(err, &es) {
				errs = append(errs, es...)
				continue
			}
			return err
		}
		if !proto.Equal(f.Spec, s.Spec) {
			return fmt.Errorf("import compose: service %s: the rendered spec does not read back as the imported one (a bug)", s.Compose)
		}
		for _, v := range spec.Validate(f.Spec) {
			e := f.Locate(v.Field, v.Description)
			e.Message = fmt.Sprintf("%s (from Compose service %s)", e.Message, s.Compose)
			errs = append(errs, e)
		}
		outs = append(outs, output{svc: s, path: path, data: data})
	}
	if len(errs) > 0 {
		return exitcode.With(exitcode.Usage, fmt.Errorf("import compose: nothing written: %w", &specViolations{errs: errs}))
	}

	if o.out == "-" {
		for i, out := range outs {
			if i > 0 {
				fmt.Fprintln(a.env.Stdout, "---")
			}
			if _, err := a.env.Stdout.Write(out.data); err != nil {
				return err
			}
		}
		printCommands(a.env.Stderr, res)
		return nil
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("import compose: %w", err)
	}
	if !o.force {
		for _, out := range outs {
			if _, err := os.Stat(out.path); err == nil {
				return exitcode.Usagef("import compose: %s exists; nothing written (--force overwrites)", out.path)
			}
		}
	}
	for _, out := range outs {
		if err := os.WriteFile(out.path, out.data, 0o644); err != nil {
			return fmt.Errorf("import compose: %w", err)
		}
	}
	if a.g.output == "json" {
		j := importJSON{File: file}
		for _, w := range res.Warnings {
			j.Warnings = append(j.Warnings, w.String(file))
		}
		for _, out := range outs {
			is := importService{Compose: out.svc.Compose, Service: out.svc.Spec.GetName(), File: out.path, Commands: out.svc.Commands}
			for _, w := range out.svc.Warnings {
				is.Warnings = append(is.Warnings, w.String(file))
			}
			j.Services = append(j.Services, is)
		}
		return render.JSONValue(a.env.Stdout, j)
	}
	for _, out := range outs {
		n := len(out.svc.Warnings)
		fmt.Fprintf(a.env.Stdout, "wrote %s (service %s, %d warning%s)\n", out.path, out.svc.Spec.GetName(), n, plural(n))
	}
	fmt.Fprintf(a.env.Stdout, "%d service(s) imported from %s, %d warning%s\n", len(outs), file, len(warnings), plural(len(warnings)))
	printCommands(a.env.Stdout, res)
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// fileName is the spec file's name for s (without .yaml): its Slipway
// name, or the Compose name when it has none.
func fileName(s compose.Service) string {
	if n := s.Spec.GetName(); n != "" {
		return n
	}
	return strings.NewReplacer("/", "_", "\\", "_").Replace(s.Compose)
}

func allWarnings(res *compose.Result) []compose.Warning {
	ws := append([]compose.Warning(nil), res.Warnings...)
	for _, s := range res.Services {
		ws = append(ws, s.Warnings...)
	}
	return ws
}

// header is the comment heading a written spec: where it came from and
// what was not carried over.
func header(file string, s compose.Service) []string {
	lines := []string{fmt.Sprintf("Imported from Compose service %q of %s by slipctl import compose.", s.Compose, filepath.Base(file))}
	if len(s.Warnings) > 0 {
		lines = append(lines, "Not carried over, or carried with a caveat:")
		for _, w := range s.Warnings {
			w.Service, w.Line = "", 0
			lines = append(lines, "  "+w.String(""))
		}
	}
	if len(s.Commands) > 0 {
		lines = append(lines, "Create its secrets and configs before deploying:")
		for _, c := range s.Commands {
			lines = append(lines, "  "+c)
		}
	}
	return lines
}

// printCommands lists the secret and config commands to run, once each.
func printCommands(w io.Writer, res *compose.Result) {
	seen := map[string]bool{}
	var cmds []string
	for _, s := range res.Services {
		for _, c := range s.Commands {
			if !seen[c] {
				seen[c] = true
				cmds = append(cmds, c)
			}
		}
	}
	if len(cmds) == 0 {
		return
	}
	fmt.Fprintln(w, "Values of secrets and configs are not imported; create them before deploying:")
	for _, c := range cmds {
		fmt.Fprintln(w, "  "+c)
	}
}
