// Command slipway-guide is `make run`: it starts the embedded default stack
// (Consul dev agent, single-node coordinator, node agent, edge), plays the
// guided tour of releases under live traffic, prints the summary, and keeps
// the stack up for the user until Ctrl-C (or exits with -once).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"

	"slipway.dev/guide/docker"
	"slipway.dev/guide/stack"
	"slipway.dev/guide/summary"
	"slipway.dev/guide/tour"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("slipway-guide", flag.ContinueOnError)
	var (
		cfg        stack.Config
		once       bool
		driver     string
		rate       int
		workers    int
		actTimeout time.Duration
		hold       time.Duration
	)
	fs.StringVar(&cfg.BinDir, "bin", "bin", "directory of consul, slipway-* and slipctl")
	fs.StringVar(&cfg.StateDir, "state", ".run", "directory for logs and data (wiped on start)")
	fs.StringVar(&cfg.ProcessDir, "process-dir", "bin/images", "process driver executables (scripts/demo-images.sh)")
	fs.StringVar(&cfg.PolicyDir, "consul-policies", "deployments/consul", "directory of each component's Consul ACL policy (<component>.hcl)")
	fs.StringVar(&driver, "driver", "auto", "node agent driver: auto (docker when the Engine answers), docker or process")
	fs.StringVar(&cfg.NodeID, "node-id", "guide-node", "node agent id; its containers are labelled slipway.node=<id> and removed on exit")
	fs.IntVar(&cfg.ConsulHTTP, "consul-port", 8500, "Consul HTTP port")
	fs.IntVar(&cfg.Coordinator, "coordinator-port", 7400, "coordinator gRPC port (raft: the next port)")
	fs.IntVar(&cfg.Dashboard, "dashboard-port", 7402, "coordinator web dashboard port (HTTPS)")
	fs.IntVar(&cfg.Agent, "agent-port", 7410, "node agent gRPC port")
	fs.IntVar(&cfg.EdgeGRPC, "edge-grpc-port", 7420, "edge RouteService gRPC port")
	fs.IntVar(&cfg.EdgeHTTP, "edge-port", 8080, "edge HTTP port")
	fs.BoolVar(&once, "once", os.Getenv("ONCE") != "", "exit after the summary (non-zero if a request failed); default from $ONCE")
	fs.IntVar(&rate, "rate", 50, "live traffic, requests per second")
	fs.IntVar(&workers, "workers", 8, "live traffic, requests in flight at most")
	fs.DurationVar(&actTimeout, "act-timeout", 3*time.Minute, "longest wait for one rollout")
	fs.DurationVar(&hold, "hold", 4*time.Second, "how long a step waiting for promote is held under traffic before the guide promotes it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, d := range []*string{&cfg.BinDir, &cfg.StateDir, &cfg.ProcessDir} {
		if abs, err := filepath.Abs(*d); err == nil {
			*d = abs
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("%8s  %s\n", fmt.Sprintf("+%.1fs", time.Since(start).Seconds()), fmt.Sprintf(format, args...))
	}
	cfg.Logf = say

	switch driver {
	case "auto":
		cfg.Driver = stack.DriverProcess
		if docker.Available(ctx) {
			cfg.Driver = stack.DriverDocker
		}
	case stack.DriverDocker, stack.DriverProcess:
		cfg.Driver = driver
	default:
		fmt.Fprintf(os.Stderr, "slipway-guide: -driver %q: want auto, docker or process\n", driver)
		return 2
	}
	acts := tour.Acts()
	for _, a := range acts {
		cfg.Images = append(cfg.Images, a.Spec.GetImage())
	}
	if err := stack.Preflight(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "slipway-guide:", err)
		return 1
	}

	fmt.Printf("\033[1m==> starting the stack\033[0m (node agent driver: %s; logs in %s)\n", cfg.Driver, cfg.StateDir)
	st, err := stack.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipway-guide:", err)
		return 1
	}
	defer func() {
		fmt.Printf("\n\033[1m==> stopping\033[0m\n")
		for _, what := range st.Stop() {
			say("stopped %s", what)
		}
	}()
	died := st.Died()

	operator, err := st.TLS.OperatorCreds()
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipway-guide:", err)
		return 1
	}
	conn, err := rpc.Dial(cfg.CoordinatorAddr(), operator, rpc.ExpectRole(pki.RoleCoordinator), rpc.WithToken(st.Token))
	if err != nil {
		fmt.Fprintln(os.Stderr, "slipway-guide:", err)
		return 1
	}
	defer conn.Close()
	if err := stack.WaitNode(ctx, conn, cfg.NodeID, 30*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "slipway-guide:", err)
		return 1
	}
	say("the coordinator sees node %s", cfg.NodeID)
	if st.Dashboard != "" {
		fmt.Print(dashboardHint(st))
	}

	tctx, tcancel := context.WithCancel(ctx)
	go func() {
		select {
		case name := <-died:
			fmt.Fprintf(os.Stderr, "slipway-guide: %s exited unexpectedly; last lines of its log:\n%s\n", name, st.Proc(name).Tail(15))
			tcancel()
		case <-tctx.Done():
		}
	}()
	res, tourErr := tour.Run(tctx, tour.Config{
		Client: deployv1.NewDeployServiceClient(conn), EdgeURL: cfg.EdgeURL(),
		Rate: rate, Workers: workers, ActTimeout: actTimeout, PromoteAfter: hold, Out: os.Stdout, Start: start,
	}, acts)

	rep := summary.Compute(res.Samples, res.Phases, 0, 30)
	fmt.Printf("\n\033[1m==> summary\033[0m\n")
	_ = rep.Write(os.Stdout)
	// The failed answers of a release that serves errors by design are
	// the point of its act, not failures of the demo.
	expected := 0
	for _, a := range acts {
		if a.ServesErrors && res.Rollouts[a.Name] != "" {
			expected += rep.FailedBy[a.Version]
			fmt.Printf("\nthe bad release %s served %d requests (%d answered 500) before canary analysis reverted it\n",
				a.Version, rep.Answered[a.Version], rep.FailedBy[a.Version])
		}
	}
	code := 0
	switch {
	case tourErr != nil:
		fmt.Fprintln(os.Stderr, "\nslipway-guide:", tourErr)
		code = 1
	case rep.Requests == 0:
		fmt.Fprintln(os.Stderr, "\nslipway-guide: no request was sent")
		code = 1
	case rep.Failures > expected:
		fmt.Fprintf(os.Stderr, "\nslipway-guide: %d of %d requests failed (%d of them answered by a bad release by design)\n", rep.Failures, rep.Requests, expected)
		code = 1
	}
	if once || errors.Is(ctx.Err(), context.Canceled) {
		tcancel()
		return code
	}
	id := res.Rollouts["bad v4"]
	fmt.Printf(`
==> the stack stays up; try (Ctrl-C stops everything and removes the instances):
  export SLIPWAY_ADDR=%[1]s SLIPWAY_TLS_CA=%[7]s SLIPWAY_TLS_CERT=%[8]s SLIPWAY_TLS_KEY=%[9]s
  export SLIPWAY_TOKEN=$(cat %[10]s)     # the management token; make scoped ones with slipctl acl token create
  bin/slipctl services
  bin/slipctl history %[2]s
  bin/slipctl rollout list
  bin/slipctl rollout get %[3]s
  bin/slipctl cluster nodes
  bin/slipctl rollback %[2]s --to 1 --wait          # back to v1, rolling
  bin/slipctl deploy -f deployments/examples/canary.yaml --wait   # service api, Host: api.local
  printf s3cret | bin/slipctl secret create %[2]s-db --from-file - --service %[2]s   # a spec mounts it: secrets: [{name: %[2]s-db}]
  curl -s -H 'Host: %[4]s' %[5]s
  bin/grpcurl -cacert %[7]s -cert %[8]s -key %[9]s -H "authorization: Bearer $SLIPWAY_TOKEN" %[1]s slipway.deploy.v1.DeployService/ListServices
  Consul UI: http://%[6]s/ui (ACLs on: log in with the token in %[11]s)
`, cfg.CoordinatorAddr(), tour.Service, id, tour.Host, cfg.EdgeURL(), cfg.ConsulAddr(), rel(st.TLS.CA), rel(st.TLS.Operator.Cert), rel(st.TLS.Operator.Key), rel(st.TokenFile), rel(st.ConsulTokenFile))
	if st.Dashboard != "" {
		fmt.Print(dashboardHint(st))
	}
	select {
	case <-ctx.Done():
	case <-tctx.Done():
		code = 1
	}
	tcancel()
	return code
}

// rel is path relative to the working directory when it lies below it.
func rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if r, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// dashboardHint says where the web dashboard is and how to log in.
func dashboardHint(st *stack.Stack) string {
	return fmt.Sprintf("\n\033[1m==> watch the tour live in the web dashboard\033[0m: %s\n"+`  log in with the management token: cat %s   (or a read-only one:
    bin/slipctl acl token create --policy read --description dashboard)
  the certificate is from the demo's own CA (%s): import it, or accept the browser's warning
  (headless: chromium --ignore-certificate-errors %s)

`, st.Dashboard, rel(st.TokenFile), rel(st.TLS.CA), st.Dashboard)
}
