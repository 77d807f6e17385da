package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
	"slipway.dev/slipctl/specfile"
)

// run runs slipctl with args and returns its exit code, stdout and stderr.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, Env{
		Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) string { return env[k] },
		Now:    time.Now,
	})
	return code, out.String(), errOut.String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestHelpForEveryCommand(t *testing.T) {
	var walk func(c *command, path []string)
	walk = func(c *command, path []string) {
		t.Run(strings.Join(path, " "), func(t *testing.T) {
			code, out, errOut := run(t, nil, append(path[1:], "--help")...)
			if code != exitcode.OK || errOut != "" {
				t.Fatalf("--help: exit %d, stderr %q", code, errOut)
			}
			for _, want := range []string{"Usage: " + strings.Join(path, " "), "Flags:", "--addr", "SLIPWAY_ADDR", "Examples:", "Exit codes:", "4  conflict"} {
				if !strings.Contains(out, want) {
					t.Errorf("help lacks %q:\n%s", want, out)
				}
			}
		})
		for _, s := range c.subs {
			walk(s, append(append([]string{}, path...), s.name))
		}
	}
	walk(root(), []string{"slipctl"})
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no command", nil, "slipctl: missing command"},
		{"unknown command", []string{"deplyo"}, `unknown command "deplyo"`},
		{"unknown subcommand", []string{"rollout", "frobnicate"}, `slipctl rollout: unknown command "frobnicate"`},
		{"unknown flag", []string{"services", "--bogus"}, "flag provided but not defined: -bogus"},
		{"missing argument", []string{"history"}, "usage: slipctl history SERVICE"},
		{"extra argument", []string{"rollout", "get", "a", "b"}, "usage: slipctl rollout get ID"},
		{"cluster add needs two", []string{"cluster", "add", "c4"}, "usage: slipctl cluster add ID RAFTADDR"},
		{"bad output", []string{"-o", "yaml", "services"}, `-o must be text or json, got "yaml"`},
		{"deploy without file", []string{"deploy"}, "deploy: -f FILE is required"},
		{"deploy missing file", []string{"deploy", "-f", "/nonexistent/spec.yaml"}, "no such file"},
		{"bad limit", []string{"rollout", "list", "--limit", "-1"}, "--limit must be zero or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, map[string]string{"SLIPWAY_ADDR": closedAddr(t)}, tt.args...)
			if code != exitcode.Usage {
				t.Errorf("exit code = %d, want %d; stderr %q", code, exitcode.Usage, errOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr = %q, want it to contain %q", errOut, tt.wantErr)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing on a usage error", out)
			}
		})
	}
}

func TestDeployBadSpecFileNamesEveryField(t *testing.T) {
	f := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(f, []byte("name: web\nimage: slipway/demo:v2\nport: 8080\nupdate:\n  strategy: zigzag\n  canary: {steps: [{weight: 10, pause: forever}]}\ncolour: red\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, map[string]string{"SLIPWAY_ADDR": closedAddr(t)}, "deploy", "-f", f)
	if code != exitcode.Usage {
		t.Errorf("exit code = %d, want %d", code, exitcode.Usage)
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing", out)
	}
	for _, want := range []string{
		f + `:5: update.strategy: unknown strategy "zigzag"`,
		f + `:6: update.canary.steps[0].pause: "forever" is not a duration`,
		f + `:7: colour: unknown field "colour"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestDeployReadsStdin(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"deploy", "-f", "-"}, Env{
		Stdin:  strings.NewReader("name: web\nimage: slipway/demo:v2\nport: 8080\nreplicas: 2\n"),
		Stdout: &out, Stderr: &errOut,
		Getenv: func(string) string { return "" },
	})
	if code != exitcode.Usage {
		t.Errorf("exit code = %d, want %d", code, exitcode.Usage)
	}
	if want := `<stdin>:4: replicas: unknown field "replicas"`; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr = %q, want it to contain %q", errOut.String(), want)
	}
}

func TestTLSRequiredUnlessInsecure(t *testing.T) {
	code, _, errOut := run(t, map[string]string{"SLIPWAY_ADDR": closedAddr(t)}, "services")
	if code != exitcode.Usage || !strings.Contains(errOut, "--tls-ca") || !strings.Contains(errOut, "--insecure") {
		t.Errorf("no TLS flags: exit %d, stderr %q; want a usage error naming --tls-ca and --insecure", code, errOut)
	}
	code, _, errOut = run(t, map[string]string{"SLIPWAY_TLS_CA": "ca.pem"}, "services")
	if code != exitcode.Usage || !strings.Contains(errOut, "missing --tls-cert, --tls-key") {
		t.Errorf("half the TLS flags: exit %d, stderr %q", code, errOut)
	}
}

func TestTLSCreateWritesAUsableCertificate(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := run(t, nil, "tls", "ca", "create", "--dir", dir); code != exitcode.OK {
		t.Fatalf("ca create: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, nil, "tls", "ca", "create", "--dir", dir); code != exitcode.Usage || !strings.Contains(errOut, "--force") {
		t.Errorf("second ca create: exit %d, stderr %q; want a refusal naming --force", code, errOut)
	}
	code, out, errOut := run(t, nil, "tls", "cert", "create", "--dir", dir, "--role", "nodeagent", "--name", "node-a", "--ip", "10.0.0.7", "--days", "30")
	if code != exitcode.OK || !strings.Contains(out, "spiffe://slipway/nodeagent/node-a") {
		t.Fatalf("cert create: exit %d\n%s%s", code, out, errOut)
	}
	sec := rpc.Security{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "nodeagent-node-a.pem"), KeyFile: filepath.Join(dir, "nodeagent-node-a-key.pem")}
	creds, err := rpc.NewCreds(sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := creds.Identity(); got != (pki.Identity{Role: pki.RoleNodeAgent, Name: "node-a"}) {
		t.Errorf("identity %v", got)
	}
	if st, _ := os.Stat(sec.KeyFile); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	// A scraper's certificate for the components' -metrics-addr.
	code, out, errOut = run(t, nil, "tls", "cert", "create", "--dir", dir, "--role", "metrics", "--name", "prometheus")
	if code != exitcode.OK || !strings.Contains(out, "spiffe://slipway/metrics/prometheus") {
		t.Fatalf("cert create --role metrics: exit %d\n%s%s", code, out, errOut)
	}
	mcreds, err := rpc.NewCreds(rpc.Security{CAFile: sec.CAFile, CertFile: filepath.Join(dir, "metrics-prometheus.pem"), KeyFile: filepath.Join(dir, "metrics-prometheus-key.pem")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := mcreds.Identity(); got != (pki.Identity{Role: pki.RoleMetrics, Name: "prometheus"}) {
		t.Errorf("metrics identity %v", got)
	}
	code, _, errOut = run(t, nil, "tls", "cert", "create", "--dir", dir, "--role", "root", "--name", "a/b", "--ip", "x", "--days", "-1")
	for _, want := range []string{"--role", "--name", "--ip", "--days"} {
		if code != exitcode.Usage || !strings.Contains(errOut, want) {
			t.Errorf("bad cert create: exit %d, stderr %q; want it to name %s", code, errOut, want)
		}
	}
}

func TestUnavailableExitCode(t *testing.T) {
	addr := closedAddr(t)
	for _, args := range [][]string{
		{"services"},
		{"--addr", addr, "cluster", "peers"},
		{"rollout", "watch", "web-1", "--timeout", "300ms"},
	} {
		code, _, errOut := run(t, map[string]string{"SLIPWAY_ADDR": addr, "SLIPWAY_INSECURE": "1"}, args...)
		if code != exitcode.Unavailable {
			t.Errorf("%v: exit code = %d, want %d; stderr %q", args, code, exitcode.Unavailable, errOut)
		}
		if !strings.Contains(errOut, "slipctl: unavailable") && !strings.Contains(errOut, "no coordinator answered") {
			t.Errorf("%v: stderr = %q, want it to say the coordinator is unavailable", args, errOut)
		}
	}
}

// TestFlagsInterleaved checks that flags may come before, between or
// after the positional arguments, and that everything after "--" is
// positional, through the cobra wiring of a real command tree.
func TestFlagsInterleaved(t *testing.T) {
	var got []string
	o := &opts{}
	tree := &command{name: "slipctl", subs: []*command{{
		name: "t", args: "ARGS", maxArgs: 5,
		flags: func(fs *pflag.FlagSet, opt *opts) {
			fs.Uint64Var(&opt.to, "to", 0, "")
			fs.BoolVar(&opt.wait, "wait", false, "")
		},
		run: func(_ context.Context, _ *app, opt *opts, args []string) error {
			got, o = args, opt
			return nil
		},
	}}}
	a := &app{env: Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" }}}
	if err := a.execute(context.Background(), tree, []string{"t", "web", "--to", "3", "extra", "-wait", "--", "--not-a-flag"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web", "extra", "--not-a-flag"}, got); diff != "" {
		t.Errorf("positional mismatch (-want +got):\n%s", diff)
	}
	if o.to != 3 || !o.wait {
		t.Errorf("flags after arguments not parsed: to=%d wait=%v", o.to, o.wait)
	}
}

func TestOutcome(t *testing.T) {
	for s := range deployv1.RolloutState_name {
		state := deployv1.RolloutState(s)
		err := Outcome(&deployv1.Rollout{Id: "web-2", State: state, Message: "why"})
		want := exitcode.Failed
		if state == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
			want = exitcode.OK
		}
		if got := exitcode.FromError(err); got != want {
			t.Errorf("Outcome(%v) exit code = %d, want %d", state, got, want)
		}
	}
	final := map[deployv1.RolloutState]bool{
		deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED: true, deployv1.RolloutState_ROLLOUT_STATE_FAILED: true,
		deployv1.RolloutState_ROLLOUT_STATE_REVERTED: true, deployv1.RolloutState_ROLLOUT_STATE_ABORTED: true,
		deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED: true,
	}
	for s := range deployv1.RolloutState_name {
		if got := Final(deployv1.RolloutState(s)); got != final[deployv1.RolloutState(s)] {
			t.Errorf("Final(%v) = %v", deployv1.RolloutState(s), got)
		}
	}
}

func TestNewRequestIDIsFresh(t *testing.T) {
	a, b := NewRequestID(), NewRequestID()
	if a == b || !strings.HasPrefix(a, "slipctl-") || len(a) != len("slipctl-")+24 {
		t.Errorf("NewRequestID() = %q, %q; want two different slipctl-<24 hex> ids", a, b)
	}
}

func TestWatchRetryable(t *testing.T) {
	tests := []struct {
		code codes.Code
		seen uint64
		want bool
	}{
		{codes.Unavailable, 0, true},
		{codes.Unavailable, 5, true},
		{codes.NotFound, 0, false},
		{codes.NotFound, 5, true},
		{codes.InvalidArgument, 5, false},
		{codes.Internal, 5, false},
	}
	for _, tt := range tests {
		if got := retryable(status.Error(tt.code, "x"), tt.seen); got != tt.want {
			t.Errorf("retryable(%v, seen %d) = %v, want %v", tt.code, tt.seen, got, tt.want)
		}
	}
}

func TestServerViolationsNamedAtTheirLines(t *testing.T) {
	f, err := specfile.Load("web.yaml", []byte("name: web\nimage: slipway/demo:v2\nport: 8080\nenv:\n  A: x\nupdate:\n  strategy: canary\n  canary:\n    steps:\n      - weight: 50\n      - {pause: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := status.New(codes.InvalidArgument, "invalid spec").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "spec.port", Description: "taken"},
			{Field: `spec.env["A"]`, Description: "bad"},
			{Field: "spec.update.canary.steps[1].weight", Description: "must be greater than the previous step's weight (50)"},
			{Field: "spec.count", Description: "not given, so no line"},
			{Field: "spec", Description: "too big"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := locateStatus(f, fmt.Errorf("deploy: %w", st.Err()))
	if code := exitcode.FromError(got); code != exitcode.Usage {
		t.Errorf("exit code %d, want %d", code, exitcode.Usage)
	}
	var b bytes.Buffer
	render.Error(&b, got)
	want := "slipctl: invalid argument: 5 violation(s):\n" +
		"  web.yaml:3: port: taken\n" +
		"  web.yaml:5: env[\"A\"]: bad\n" +
		"  web.yaml:11: update.canary.steps[1].weight: must be greater than the previous step's weight (50)\n" +
		"  web.yaml:1: count: not given, so no line\n" +
		"  web.yaml:1: too big\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	// Other errors pass unchanged.
	other := status.Error(codes.NotFound, "no such service")
	if got := locateStatus(f, other); got != other {
		t.Errorf("locateStatus(NotFound) = %v", got)
	}
}

func TestErrorsNameTheCommandOnce(t *testing.T) {
	code, _, errOut := run(t, nil, "rollout", "frobnicate")
	if code != exitcode.Usage || strings.Contains(errOut, "slipctl: slipctl") || !strings.HasPrefix(errOut, "slipctl rollout: unknown command") {
		t.Errorf("exit %d, stderr %q; want one 'slipctl rollout:' prefix", code, errOut)
	}
	_, _, errOut = run(t, nil, "deplyo")
	if !strings.Contains(errOut, `did you mean "deploy"?`) || strings.Contains(errOut, "slipctl: slipctl") {
		t.Errorf("stderr %q; want a suggestion and one prefix", errOut)
	}
}

func TestByHelpShowsOneDefault(t *testing.T) {
	_, out, _ := run(t, map[string]string{"USER": "ann"}, "rollout", "promote", "--help")
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--by name") {
			line = l
		}
	}
	if strings.Count(line, "default") != 1 || !strings.HasSuffix(line, "(default ann)") {
		t.Errorf("--by help line = %q; want a single default, the actual one (ann)", line)
	}
}

func TestSingleDashLongFlagsStillWork(t *testing.T) {
	// Go's flag package, which slipctl used before cobra, accepted -name.
	code, _, errOut := run(t, map[string]string{"SLIPWAY_ADDR": closedAddr(t)}, "rollout", "list", "-limit", "-1")
	if code != exitcode.Usage || !strings.Contains(errOut, "--limit must be zero or more") {
		t.Errorf("-limit -1: exit %d, stderr %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, nil, "version")
	if code != exitcode.OK || !strings.HasPrefix(out, "slipctl ") || !strings.Contains(out, "(commit ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	code, out, _ = run(t, nil, "version", "-o", "json")
	var v struct{ Version, Commit, Go, Platform string }
	if err := json.Unmarshal([]byte(out), &v); code != exitcode.OK || err != nil || v.Version == "" || v.Commit == "" || v.Platform == "" {
		t.Errorf("version -o json: exit %d, %v, %q", code, err, out)
	}
	if code, out2, _ := run(t, nil, "--version"); code != exitcode.OK || !strings.HasPrefix(out2, "slipctl ") {
		t.Errorf("--version: exit %d, %q", code, out2)
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string][]string{
		"bash": {"# bash completion V2 for slipctl", "__start_slipctl", "complete -o default -F __start_slipctl slipctl"},
		"zsh":  {"#compdef slipctl", "compdef _slipctl slipctl"},
		"fish": {"complete -c slipctl", "__slipctl_perform_completion"},
	} {
		code, out, errOut := run(t, nil, "completion", shell)
		if code != exitcode.OK || errOut != "" {
			t.Errorf("completion %s: exit %d, stderr %q", shell, code, errOut)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("completion %s lacks %q", shell, w)
			}
		}
	}
	if code, _, errOut := run(t, nil, "completion", "tcsh"); code != exitcode.Usage || !strings.Contains(errOut, "bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d, stderr %q", code, errOut)
	}
	// The scripts call back into slipctl: commands, flags and values.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "roll"}, "rollout\tinspect and steer rollouts"},
		{[]string{"__complete", "rollout", "pro"}, "promote"},
		{[]string{"__complete", "deploy", "--su"}, "--supersede"},
		{[]string{"__complete", "services", "-o", ""}, "json\tprotojson, for scripts"},
		{[]string{"__complete", "completion", ""}, "fish"},
	} {
		code, out, _ := run(t, nil, tt.args...)
		if code != exitcode.OK || !strings.Contains(out, tt.want) {
			t.Errorf("slipctl %s: exit %d, want %q in:\n%s", strings.Join(tt.args, " "), code, tt.want, out)
		}
	}
}
