package main

import (
	"flag"
	"os"
	"strings"
	"testing"
)

func TestEnvDefaults(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	dir := fs.String("data-dir", "x", "")
	n := fs.Int("bootstrap-expect", 0, "")
	t.Setenv("SLIPWAY_DATA_DIR", "/var/lib/slipway")
	t.Setenv("SLIPWAY_BOOTSTRAP_EXPECT", "3")
	if err := envDefaults(fs); err != nil {
		t.Fatal(err)
	}
	if *dir != "/var/lib/slipway" || *n != 3 {
		t.Errorf("from env: data-dir=%q bootstrap-expect=%d", *dir, *n)
	}
	// The command line wins over the environment.
	if err := fs.Parse([]string{"-bootstrap-expect", "5"}); err != nil || *n != 5 {
		t.Errorf("command line: bootstrap-expect=%d, %v", *n, err)
	}
	t.Setenv("SLIPWAY_BOOTSTRAP_EXPECT", "three")
	err := envDefaults(fs)
	if err == nil || !strings.Contains(err.Error(), "SLIPWAY_BOOTSTRAP_EXPECT") {
		t.Errorf("bad env value: err = %v, want it to name SLIPWAY_BOOTSTRAP_EXPECT", err)
	}
}

func TestRefusesToStartWithoutTLSOrInsecure(t *testing.T) {
	for _, env := range []string{"SLIPWAY_TLS_CA", "SLIPWAY_TLS_CERT", "SLIPWAY_TLS_KEY", "SLIPWAY_INSECURE"} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	err := run([]string{"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "-tls-ca") || !strings.Contains(err.Error(), "-insecure") {
		t.Fatalf("no TLS flags: err = %v, want a refusal naming -tls-ca and -insecure", err)
	}
	err = run([]string{"-data-dir", t.TempDir(), "-tls-ca", "ca.pem", "-grpc-addr", "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "missing -tls-cert, -tls-key") {
		t.Fatalf("half the TLS flags: err = %v", err)
	}
	err = run([]string{"-data-dir", t.TempDir(), "-tls-ca", "/nonexistent/ca.pem", "-tls-cert", "c.pem", "-tls-key", "k.pem"})
	if err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Fatalf("missing TLS files: err = %v, want the file named", err)
	}
}

func TestRefusesRaftTimeoutsRaftWouldRefuse(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-raft-heartbeat-timeout", "1s", "-raft-election-timeout", "500ms"}, "election timeout 500ms must be at least the heartbeat timeout 1s"},
		{[]string{"-raft-leader-lease-timeout", "2s"}, "leader lease timeout 2s must be at most the heartbeat timeout 300ms"},
		{[]string{"-raft-heartbeat-timeout", "1ms", "-raft-leader-lease-timeout", "1ms"}, "heartbeat timeout 1ms is below the 5ms minimum"},
	} {
		err := run(append([]string{"-data-dir", t.TempDir(), "-insecure", "-grpc-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to say %q", tc.args, err, tc.want)
		}
	}
}

func TestRefusesBadNotifyFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-notify-url", "ftp://hooks"}, `notify url "ftp://hooks": must be an absolute http or https URL`},
		{[]string{"-notify-slack-url", "hooks.slack.com/x"}, `notify url "hooks.slack.com/x"`},
		{[]string{"-notify-url", "http://h", "-notify-kinds", "step,Paused!"}, `-notify-kinds: "Paused!" is not an event kind`},
		{[]string{"-notify-url", "http://h", "-notify-queue", "-1"}, "notify queue: must not be negative"},
	} {
		err := run(append([]string{"-data-dir", t.TempDir(), "-insecure", "-grpc-addr", "127.0.0.1:0", "-raft-addr", "127.0.0.1:0"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to say %q", tc.args, err, tc.want)
		}
	}
}
