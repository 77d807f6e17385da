package command

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
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

func TestParseInterleaved(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	to := fs.Uint64("to", 0, "")
	wait := fs.Bool("wait", false, "")
	pos, err := parseInterleaved(fs, []string{"web", "--to", "3", "extra", "--wait", "--", "--not-a-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web", "extra", "--not-a-flag"}, pos); diff != "" {
		t.Errorf("positional mismatch (-want +got):\n%s", diff)
	}
	if *to != 3 || !*wait {
		t.Errorf("flags after arguments not parsed: to=%d wait=%v", *to, *wait)
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
