// Package compose turns the services of a Compose file (the Compose
// Specification, docker-compose.yml) into Slipway service specs, naming
// every key it cannot carry over.
//
// Parsing, interpolation (${VAR}, ${VAR:-default}, ...), env_file, extends
// and the schema are compose-go's, the library Docker Compose itself uses;
// this package maps the loaded model onto deployv1.ServiceSpec and decides
// what each key becomes. The keys it maps are declared to compose-go as the
// supported attributes, so anything else a file holds, including keys the
// specification gains later, comes back as a warning rather than being
// dropped silently.
package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/tree"
	ctypes "github.com/compose-spec/compose-go/v2/types"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// ErrLoad is wrapped by errors about a Compose file that cannot be read:
// a YAML syntax error, a schema violation, an undefined reference.
var ErrLoad = errors.New("compose: cannot load")

// Kind says how serious a Warning is.
type Kind int

const (
	// Unsupported is a key (or value) that is not carried over: the
	// imported spec behaves without it. --strict refuses these.
	Unsupported Kind = iota
	// Caution is a key carried over with a caveat the user must act on
	// (a host path needing the node's allow-list, a secret to create).
	Caution
)

// Warning is one thing the import could not carry over exactly.
type Warning struct {
	// Service is the Compose service it concerns; empty for top-level keys.
	Service string
	// Key is the Compose key path under the service (or from the top),
	// e.g. "build", "deploy.placement", "ports[1]".
	Key string
	// Line is the key's line in the main Compose file, 0 if unknown (a
	// key from an extended or included file).
	Line int
	// Kind says whether it was dropped or carried with a caveat.
	Kind Kind
	// Message says what happened and what to do.
	Message string
}

// String renders the warning as "file:line: service web: build: message".
func (w Warning) String(file string) string {
	var b strings.Builder
	if file != "" {
		b.WriteString(file)
		if w.Line > 0 {
			fmt.Fprintf(&b, ":%d", w.Line)
		}
		b.WriteString(": ")
	}
	if w.Service != "" {
		fmt.Fprintf(&b, "service %s: ", w.Service)
	}
	if w.Key != "" {
		b.WriteString(w.Key)
		b.WriteString(": ")
	}
	b.WriteString(w.Message)
	return b.String()
}

// Service is one imported service.
type Service struct {
	// Compose is the service's name in the Compose file.
	Compose string
	// Spec is the Slipway spec it became.
	Spec *deployv1.ServiceSpec
	// Warnings are this service's, in key order.
	Warnings []Warning
	// Commands are the slipctl commands that create the secrets and
	// configs the spec references (their values are not imported).
	Commands []string
}

// Result is what Import made of one Compose file.
type Result struct {
	// File is the Compose file as named to Import.
	File string
	// Services are the imported services, sorted by name.
	Services []Service
	// Warnings are about top-level keys (networks, x-...).
	Warnings []Warning
}

// Options are Import's inputs besides the file.
type Options struct {
	// Services restricts the import to these Compose services; empty: all.
	Services []string
	// Env is the environment that ${VAR} reads (the caller's os.Environ);
	// a .env file beside the Compose file adds to it, as in Compose.
	Env map[string]string
	// ProjectName names the project for compose-go; default: the file's
	// directory name, as Compose does.
	ProjectName string
	// KeepPairs keeps a hand-made blue/green pair (web-blue, web-green)
	// as two services instead of folding it into one blue_green service.
	KeepPairs bool
}

// Import loads the Compose file at path and maps its services. A file that
// cannot be loaded is an error wrapping ErrLoad, naming the key or line.
// The returned specs are not yet validated against Slipway's rules; the
// caller does that (see package platform/spec).
func Import(ctx context.Context, path string, o Options) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLoad, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLoad, err)
	}
	dir := filepath.Dir(abs)
	env := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(dir, ".env")); err == nil {
		denv, err := dotenv.ParseWithLookup(bytes.NewReader(b), func(k string) (string, bool) { v, ok := o.Env[k]; return v, ok })
		if err == nil {
			for k, v := range denv {
				env[k] = v
			}
		} else {
			return nil, fmt.Errorf("%w: .env: %v", ErrLoad, err)
		}
	}
	for k, v := range o.Env { // the process environment wins over .env, as in Compose
		env[k] = v
	}
	name := o.ProjectName
	if name == "" {
		name = loader.NormalizeProjectName(filepath.Base(dir))
		if name == "" {
			name = "compose"
		}
	}
	lines := keyLines(data)
	var findings []loader.UnsupportedAttribute
	details := ctypes.ConfigDetails{WorkingDir: dir, Environment: env,
		ConfigFiles: []ctypes.ConfigFile{{Filename: abs, Content: data}}}
	project, err := loader.LoadWithContext(ctx, details,
		func(lo *loader.Options) {
			lo.SetProjectName(name, true)
			// Host paths are kept as written: a relative bind mount cannot
			// become a host mount (those must be absolute); env_file is
			// resolved below, against the file's directory.
			lo.ResolvePaths = false
			lo.SkipResolveEnvironment = true
		},
		loader.WithSupportedAttributes(supportedPaths(), func(f []loader.UnsupportedAttribute) { findings = f }))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrLoad, loadError(err, path, lines))
	}
	selected, err := selectServices(project, o.Services)
	if err != nil {
		return nil, err
	}
	res := &Result{File: path}
	byService := map[string][]Warning{}
	for _, f := range findings {
		w, ok := unsupportedWarning(f, lines)
		if !ok {
			continue
		}
		if w.Service == "" {
			res.Warnings = append(res.Warnings, w)
			continue
		}
		byService[w.Service] = append(byService[w.Service], w)
	}
	for _, sname := range selected {
		svc := project.Services[sname]
		for i, ef := range svc.EnvFiles {
			if !filepath.IsAbs(ef.Path) {
				svc.EnvFiles[i].Path = filepath.Join(dir, ef.Path)
			}
		}
		m := &mapper{project: project, svc: svc, lines: lines}
		m.warnings = append(m.warnings, byService[sname]...)
		spec := m.spec()
		sort.SliceStable(m.warnings, func(i, j int) bool { return keyLess(m.warnings[i].Key, m.warnings[j].Key) })
		res.Services = append(res.Services, Service{Compose: sname, Spec: spec, Warnings: m.warnings, Commands: m.commands})
	}
	if !o.KeepPairs {
		res.Services = foldBlueGreen(res.Services)
	}
	scopeCommands(res.Services)
	return res, nil
}

// scopeCommands adds to each create command the services allowed to mount
// what it creates (--service, one per imported service whose spec mounts
// it): a secret created without one may be mounted by no service.
func scopeCommands(services []Service) {
	users := map[string][]string{} // "secret db" -> spec names, sorted
	for _, s := range services {
		for kind, ms := range map[string][]*deployv1.FileMount{"secret": s.Spec.GetSecrets(), "config": s.Spec.GetConfigs()} {
			for _, m := range ms {
				k := kind + " create " + m.GetName()
				if !slices.Contains(users[k], s.Spec.GetName()) {
					users[k] = append(users[k], s.Spec.GetName())
				}
			}
		}
	}
	for _, s := range services {
		for i, c := range s.Commands {
			for k, names := range users {
				if !strings.Contains(c, " "+k+" --from-file") {
					continue
				}
				slices.Sort(names)
				var flags []string
				for _, n := range names {
					flags = append(flags, "--service "+n)
				}
				s.Commands[i] = strings.Replace(c, " "+k+" ", " "+k+" "+strings.Join(flags, " ")+" ", 1)
				break
			}
		}
	}
}

// selectServices returns the names to import, sorted: want (every one must
// exist), or every service of the project.
func selectServices(p *ctypes.Project, want []string) ([]string, error) {
	var names []string
	if len(want) == 0 {
		for n := range p.Services {
			names = append(names, n)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%w: the file has no services", ErrLoad)
		}
	} else {
		seen := map[string]bool{}
		for _, n := range want {
			if _, ok := p.Services[n]; !ok {
				return nil, fmt.Errorf("compose: --service %q: no such service in the file (it has %s)", n, strings.Join(p.ServiceNames(), ", "))
			}
			if !seen[n] {
				names = append(names, n)
				seen[n] = true
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// unescapeKey undoes compose-go's escaping of dots in map keys
// ("com.example.team" labels).
func unescapeKey(k string) string { return strings.ReplaceAll(k, "\U0001F47B", ".") }

// falseSchema is the schema's word for a key the specification does not
// have: "services.web.imagee false schema".
var falseSchema = regexp.MustCompile(`(?:validating [^:]*: )?(\S+) false schema`)

// loadError words compose-go's error about path: absolute paths of the
// file are shown as the user named it, and an unknown key is named with
// its line.
func loadError(err error, path string, lines map[string]int) string {
	msg := err.Error()
	if abs, aerr := filepath.Abs(path); aerr == nil {
		msg = strings.ReplaceAll(msg, abs, path)
	}
	if m := falseSchema.FindStringSubmatch(msg); m != nil {
		key := unescapeKey(m[1])
		where := path
		if l := lines[key]; l > 0 {
			where = fmt.Sprintf("%s:%d", path, l)
		}
		last := key[strings.LastIndexByte(key, '.')+1:]
		return fmt.Sprintf("%s: %s: unknown key %q (not in the Compose Specification)", where, key, last)
	}
	return msg
}

// unsupportedWarning turns a compose-go finding (a path outside the
// supported attributes) into a warning; ok is false for findings that need
// none (the model's own defaults).
func unsupportedWarning(f loader.UnsupportedAttribute, lines map[string]int) (Warning, bool) {
	parts := f.Path.Parts()
	for i, p := range parts {
		parts[i] = unescapeKey(p)
	}
	if len(parts) == 0 {
		return Warning{}, false
	}
	if parts[0] == "services" && len(parts) >= 3 {
		svc := parts[1]
		key := strings.Join(parts[2:], ".")
		key = strings.ReplaceAll(key, "."+tree.PathMatchList, "[]")
		line := 0
		for n := len(parts); n >= 3 && line == 0; n-- {
			if parts[n-1] != tree.PathMatchList {
				line = lines[lineKey(parts[:n]...)]
			}
		}
		w := Warning{Service: svc, Key: key, Line: line, Kind: Unsupported}
		w.Message = unsupportedMessage(parts[2], key)
		return w, true
	}
	top := parts[0]
	switch top {
	case "name", "version":
		return Warning{}, false
	}
	key := strings.Join(parts, ".")
	return Warning{Key: key, Line: lines[lineKey(parts[0])], Kind: Unsupported,
		Message: "not supported by Slipway; not imported"}, true
}

// why explains the unsupported service keys people write most.
var why = map[string]string{
	"build":          "Slipway runs images; build and push it first and set image",
	"depends_on":     "Slipway starts services independently; each is health-gated on its own",
	"networks":       "instances reach each other through Consul and the edges, not Compose networks",
	"network_mode":   "instances run on the agent's network",
	"privileged":     "a privileged container must be asked for by hand (security.privileged) and allowed by the node agent (-allow-privileged)",
	"cap_add":        "capabilities must be asked for by hand (security.cap_add) and allowed by the node agent (-allow-caps)",
	"cap_drop":       "every capability is dropped already",
	"container_name": "instance names are the agent's",
	"links":          "instances reach each other through Consul and the edges",
	"extra_hosts":    "not supported",
	"profiles":       "every imported service is deployed on its own",
	"user":           "not supported: the image's user runs",
	"working_dir":    "not supported: the image's working directory is used",
	"hostname":       "instance host names are the agent's",
	"deploy":         "not supported",
	"logging":        "the agent's Docker log driver is used",
	"ulimits":        "not supported",
	"sysctls":        "not supported",
	"devices":        "devices are never given to containers",
	"pid":            "instances never share the host's PID namespace",
	"ipc":            "instances never share an IPC namespace",
	"tmpfs":          "not supported",
	"init":           "not supported",
	"scale":          "use deploy.replicas",
}

func unsupportedMessage(top, key string) string {
	if strings.HasPrefix(key, "deploy.") {
		return "not supported by Slipway; not imported"
	}
	if r, ok := why[top]; ok && key == top {
		return "not imported: " + r
	}
	return "not supported by Slipway; not imported"
}

// keyLess orders warning keys: by top key, then as strings.
func keyLess(a, b string) bool { return a < b }
