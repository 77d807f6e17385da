package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

// TestGuideOnceEndToEnd runs the whole guide (`make run ONCE=1`) against
// real Consul, coordinator, node agent (process driver) and edge on free
// ports: every rollout must end as expected with no failed request, the
// summary must show each version served, and nothing may be left running.
func TestGuideOnceEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the end-to-end guide run takes about a minute")
	}
	bin := t.TempDir()
	link := func(src, name string) {
		t.Helper()
		if err := os.Symlink(src, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(testenv.Binary(t, "consul"), "consul")
	for _, c := range []string{
		"./services/coordinator/cmd/slipway-coordinator",
		"./services/nodeagent/cmd/slipway-nodeagent",
		"./services/edge/cmd/slipway-edge",
		"./cli/cmd/slipctl",
	} {
		link(testenv.BuildBinary(t, c), filepath.Base(c))
	}
	images := t.TempDir()
	// A root agent runs the demo as nobody, who must reach it: a
	// t.TempDir's parent is 0700.
	if err := os.Chmod(filepath.Dir(images), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, vc := range []string{"v1:blue", "v2:green", "v3:red", "v4:yellow", "v5:purple:4"} {
		parts := strings.Split(vc, ":")
		flags := []string{"-X main.version=" + parts[0], "-X main.colour=" + parts[1]}
		if len(parts) == 3 {
			flags = append(flags, "-X main.errorRate="+parts[2]) // as scripts/demo-images.sh builds v5
		}
		v := parts[0]
		exe := testenv.BuildBinary(t, "./deployments/demo", flags...)
		if err := os.Symlink(exe, filepath.Join(images, "slipway_demo_"+v)); err != nil {
			t.Fatal(err)
		}
	}
	guide := testenv.BuildBinary(t, "./deployments/guide/cmd/slipway-guide")
	state := filepath.Join(t.TempDir(), "run")
	coordinator := pairPort(t)
	dashboard := testenv.FreePort(t)
	args := []string{
		"-once", "-driver", "process", "-bin", bin, "-state", state, "-process-dir", images,
		"-node-id", "smoke-" + strconv.Itoa(os.Getpid()),
		"-consul-port", strconv.Itoa(testenv.FreePort(t)), "-coordinator-port", strconv.Itoa(coordinator),
		"-agent-port", strconv.Itoa(testenv.FreePort(t)), "-edge-port", strconv.Itoa(testenv.FreePort(t)),
		"-edge-grpc-port", strconv.Itoa(testenv.FreePort(t)), "-dashboard-port", strconv.Itoa(dashboard), "-rate", "40", "-act-timeout", "90s",
		"-consul-policies", filepath.Join(testenv.RepoRoot(t), "deployments", "consul"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, guide, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) } // the guide cleans up on SIGINT
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	t.Logf("guide output:\n%s", out.String())
	if err != nil {
		t.Fatalf("guide -once: %v", err)
	}
	text := out.String()
	m := regexp.MustCompile(`requests sent: (\d+)\s+failed: (\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("no summary line")
	}
	// The only failed requests are the bad v5's 500s, counted in the summary.
	bad := regexp.MustCompile(`the bad release v5 served (\d+) requests \((\d+) answered 500\)`).FindStringSubmatch(text)
	if bad == nil {
		t.Fatal("the summary does not say what the bad v5 served")
	}
	if sent, _ := strconv.Atoi(m[1]); sent < 100 || m[2] != bad[2] || bad[2] == "0" {
		t.Fatalf("requests sent %s, failed %s, v5's 500s %s: want >= 100 sent and v5's (some) the only failures", m[1], m[2], bad[2])
	}
	for _, want := range []string{
		"operator", "rollout promote", // the manual canary step and the blue/green switch were promoted
		"canary v2", "succeeded", "blue/green v3", "bad v4", "reverted", "bad v5", "analysis of #5 failed (2/2)",
		"stopped consul",
		"secrets and configs sealed with a throwaway keyring",
		// where to watch it, and how to log in
		"watch the tour live in the web dashboard\x1b[0m: https://127.0.0.1:" + strconv.Itoa(dashboard) + "/", "log in with the management token",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Each of v1, v2, v3 served traffic, v5 as a canary; v4 never did.
	header := regexp.MustCompile(`(?m)^\s+phase\s+duration\s+outcome\s+requests\s+failed((?:\s+v\d)+)\s*$`).FindStringSubmatch(text)
	if header == nil {
		t.Fatal("no per-phase table")
	}
	if got := strings.Fields(header[1]); strings.Join(got, ",") != "v1,v2,v3,v5" {
		t.Errorf("versions served = %v, want v1,v2,v3,v5", got)
	}
	// Nothing left behind: no process of the stack, no demo instance.
	if leftovers := processesUnder(t, bin, images); len(leftovers) > 0 {
		t.Fatalf("processes left running: %v", leftovers)
	}
}

// pairPort returns a free port whose successor is free too (coordinator
// gRPC and raft).
func pairPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := testenv.FreePort(t)
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no pair of free ports")
	return 0
}

// processesUnder lists running processes whose command line names a file
// under one of dirs.
func processesUnder(t *testing.T, dirs ...string) []string {
	t.Helper()
	var out []string
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		for _, d := range dirs {
			if strings.Contains(cmdline, d) {
				out = append(out, e.Name()+": "+cmdline)
			}
		}
	}
	return out
}
