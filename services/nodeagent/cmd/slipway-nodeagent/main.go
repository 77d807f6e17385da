// Command slipway-nodeagent runs on every host: it converges the host's
// containers (or processes) and their Consul registrations to the desired
// set the coordinator sends over slipway.agent.v1.NodeAgentService.
//
// Every flag can also be set by environment variable SLIPWAY_<FLAG> with
// dashes as underscores, e.g. SLIPWAY_NODE_ID; flags win.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"slipway.dev/nodeagent/agent"
	"slipway.dev/nodeagent/consul"
	"slipway.dev/nodeagent/docker"
	"slipway.dev/nodeagent/grpcapi"
	"slipway.dev/nodeagent/process"
	"slipway.dev/nodeagent/secretfs"
	"slipway.dev/platform/buildinfo"
	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/nodepolicy"
	"slipway.dev/platform/nodestream"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/telemetry"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

type options struct {
	nodeID, grpcAddr, driver, processDir, labels, advertise string
	dataDir, metricsAddr, logLevel, logFormat               string
	secretsDir, coordinators                                string
	cpuMHz, memoryMB                                        int
	sec                                                     rpc.Security
	consul                                                  consulconf.Config
	drainTimeout, drainWindow, confirmGrace, holdAfter      time.Duration
	hard                                                    hardening
}

// hardening holds the flags that widen what instances may do beyond the
// hardened default (see package nodepolicy), the pids limit and the
// process driver's user.
type hardening struct {
	allowPrivileged                              bool
	allowCaps, allowHostPaths, allowImages, user string
	pidsLimit                                    int
	policy                                       nodepolicy.Policy
	// Image pulls (docker driver).
	pullTimeout      time.Duration
	registryAuthFile string
}

// register adds the hardening flags to fs.
func (h *hardening) register(fs *flag.FlagSet) {
	fs.BoolVar(&h.allowPrivileged, "allow-privileged", false, "allow specs asking for privileged containers (docker driver)")
	fs.StringVar(&h.allowCaps, "allow-caps", "", "capabilities specs may add to the default (none), e.g. NET_ADMIN,SYS_TIME (docker driver)")
	fs.StringVar(&h.allowHostPaths, "allow-host-paths", "", "host directories specs may bind-mount, with everything under them, e.g. /data,/srv (docker driver)")
	fs.StringVar(&h.allowImages, "allow-images", "", "image patterns this node runs, '*' matching anything, e.g. 'slipway/*,registry.local/*' (empty: any image)")
	fs.IntVar(&h.pidsLimit, "pids-limit", docker.DefaultPidsLimit, "most processes and threads a container may have")
	fs.DurationVar(&h.pullTimeout, "pull-timeout", docker.DefaultPullTimeout, "longest an image pull may take (docker driver)")
	fs.StringVar(&h.registryAuthFile, "registry-auth-file", "", `registry credentials, Docker's config.json format {"auths": {"host:port": {"auth": base64(user:password)}}}, re-read at every pull (docker driver)`)
	fs.StringVar(&h.user, "process-user", process.DefaultUser, "process driver: user children run as when the agent runs as root (never root)")
}

// parse checks the hardening flags and builds the node's policy.
func (h *hardening) parse() error {
	var err error
	h.policy.Privileged = h.allowPrivileged
	if h.policy.Caps, err = nodepolicy.ParseCaps(h.allowCaps); err != nil {
		return fmt.Errorf("-allow-caps: %w", err)
	}
	if h.policy.HostPaths, err = nodepolicy.ParseHostPaths(h.allowHostPaths); err != nil {
		return fmt.Errorf("-allow-host-paths: %w", err)
	}
	if h.policy.Images, err = nodepolicy.ParseImages(h.allowImages); err != nil {
		return fmt.Errorf("-allow-images: %w", err)
	}
	if _, err := h.policy.Meta(); err != nil {
		return fmt.Errorf("allow lists: %w", err)
	}
	if h.pidsLimit < 1 {
		return fmt.Errorf("-pids-limit %d: must be at least 1", h.pidsLimit)
	}
	if h.pullTimeout <= 0 {
		return fmt.Errorf("-pull-timeout %s: must be positive", h.pullTimeout)
	}
	if h.registryAuthFile != "" {
		if _, err := docker.LoadCredentials(h.registryAuthFile); err != nil {
			return fmt.Errorf("-registry-auth-file: %w", err)
		}
	}
	if h.user == "" || h.user == "root" || h.user == "0" {
		return fmt.Errorf("-process-user %q: children never run as root; name another user", h.user)
	}
	return nil
}

// processPolicy is the policy of a process-driver node: its images only,
// since a process cannot be given capabilities, privileges or mounts.
func (h *hardening) processPolicy() (nodepolicy.Policy, error) {
	if p := h.policy; p.Privileged || len(p.Caps) > 0 || len(p.HostPaths) > 0 {
		return nodepolicy.Policy{}, errors.New("-allow-privileged, -allow-caps and -allow-host-paths need the docker driver; the process driver runs none of them")
	}
	return nodepolicy.Policy{Images: h.policy.Images}, nil
}

func main() {
	if buildinfo.Requested(os.Args[1:]) {
		buildinfo.Print(os.Stdout, "slipway-nodeagent")
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "slipway-nodeagent:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	host, _ := os.Hostname()
	var o options
	fs := flag.NewFlagSet("slipway-nodeagent", flag.ContinueOnError)
	buildinfo.Flag(fs)
	fs.StringVar(&o.nodeID, "node-id", host, "this node's id (default: the host name)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:7410", "gRPC listen address (only the leader coordinator calls it, with a coordinator certificate)")
	o.sec.RegisterFlags(fs)
	o.consul.RegisterFlags(fs)
	fs.StringVar(&o.driver, "driver", "", "docker or process (default: docker when the Engine answers, else process)")
	fs.StringVar(&o.processDir, "process-dir", "bin/images", "process driver: directory of executables; image a/b:c runs <dir>/a_b_c")
	o.hard.register(fs)
	fs.StringVar(&o.labels, "labels", "", "node labels k=v,k2=v2")
	fs.StringVar(&o.coordinators, "coordinators", "", "gRPC addresses of coordinators, comma separated (any of them: the agent finds the leader), to stream heartbeats and statuses to the leader, which then judges this node by them (down after the coordinators' -node-ttl without one) instead of by its Consul check; empty: no stream, the leader polls this agent and goes by Consul")
	fs.IntVar(&o.cpuMHz, "cpu-mhz", 4000, "CPU offered to allocations")
	fs.IntVar(&o.memoryMB, "memory-mb", 4096, "memory offered to allocations")
	fs.StringVar(&o.advertise, "advertise", "127.0.0.1", "address instances are reachable on (host ports bind there)")
	fs.StringVar(&o.secretsDir, "secrets-dir", "/run/slipway/secrets", "directory on tmpfs for the secrets and configs instances mount (a 0700 directory per allocation, removed when it stops; docker: each file bind-mounted read-only at its target; process: SLIPWAY_SECRETS_DIR); a directory not on tmpfs is refused, and instances mounting secrets then fail to start")
	fs.StringVar(&o.dataDir, "data-dir", "/var/lib/slipway/nodeagent", "state: newest fencing token, last desired set, process driver state")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "longest wait for the edges to stop routing to a stopping instance")
	fs.DurationVar(&o.holdAfter, "hold-after", 10*time.Second, "after a heartbeat lapse longer than this (the agent restarted, hung or was cut off; set it to the coordinators' -node-grace, after which they replace a missing node's allocations) the agent keeps its instances out of traffic until a leader syncs it and stops those it no longer owns")
	fs.DurationVar(&o.confirmGrace, "confirm-grace", 30*time.Second, "how long instances held after a lapse (see -hold-after) wait for a leader's sync; with no leader for this long, the last known desired set serves again")
	fs.DurationVar(&o.drainWindow, "drain-window", 2*time.Second, "wait after deregistering when no edge is live")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "Prometheus metrics at https://ADDR/metrics, requiring a client certificate from -tls-ca (slipctl tls cert create --role metrics); plain http:// only with -insecure (empty: off)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv("SLIPWAY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))); ok {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("env SLIPWAY_%s: %w", strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), err)
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := o.consul.Validate(); err != nil {
		return o, err
	}
	if o.nodeID == "" {
		return o, errors.New("-node-id: must not be empty")
	}
	for _, r := range o.nodeID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return o, fmt.Errorf("-node-id %q: only letters, digits, '.', '_' and '-' are allowed", o.nodeID)
		}
	}
	if err := o.sec.Validate(); err != nil {
		return o, err
	}
	if o.driver != "" && o.driver != "docker" && o.driver != "process" {
		return o, fmt.Errorf("-driver %q: want docker or process", o.driver)
	}
	if ip := net.ParseIP(o.advertise); ip == nil || ip.IsUnspecified() {
		return o, fmt.Errorf("-advertise %q: want the IP address instances are reachable on", o.advertise)
	}
	if _, err := parseLabels(o.labels); err != nil {
		return o, err
	}
	if err := o.hard.parse(); err != nil {
		return o, err
	}
	return o, nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-labels: %q is not k=v", kv)
		}
		out[k] = v
	}
	return out, nil
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	labels, _ := parseLabels(o.labels)
	creds, err := rpc.NewCreds(o.sec, logger)
	if err != nil {
		return err
	}
	if want := (pki.Identity{Role: pki.RoleNodeAgent, Name: o.nodeID}); !creds.Insecure() && creds.Identity() != want {
		return fmt.Errorf("-tls-cert names %s, but this agent is %s: the coordinator only talks to an agent whose certificate names its node id (slipctl tls cert create --role nodeagent --name %s)", creds.Identity(), want, o.nodeID)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	secrets := secretfs.New(o.secretsDir)
	if err := secrets.Err(); err != nil {
		logger.Warn("secrets and configs cannot be mounted on this node: instances mounting them fail to start", "err", err)
	}
	var drv agent.Driver
	if o.driver == "" || o.driver == "docker" {
		cli, err := docker.Dial(ctx, 2*time.Second)
		switch {
		case err == nil:
			drv = docker.New(cli, o.nodeID, o.advertise, logger, docker.WithPolicy(o.hard.policy), docker.WithPidsLimit(int64(o.hard.pidsLimit)),
				docker.WithPullTimeout(o.hard.pullTimeout), docker.WithRegistryAuthFile(o.hard.registryAuthFile), docker.WithSecrets(secrets))
			defer cli.Close()
		case o.driver == "docker":
			return err
		default:
			logger.Info("Docker Engine does not answer; using the process driver", "err", err)
		}
	}
	if drv == nil {
		if o.hard.policy, err = o.hard.processPolicy(); err != nil {
			return err
		}
		pd, err := process.New(o.processDir, o.dataDir+"/process", o.advertise, logger, process.WithUser(o.hard.user), process.WithSecrets(secrets))
		if err != nil {
			return err
		}
		drv = pd
	}

	reg := telemetry.NewRegistry()
	if o.metricsAddr != "" {
		ms, err := telemetry.ServeMetrics(o.metricsAddr, reg, creds, logger)
		if err != nil {
			return err
		}
		defer ms.Close(context.Background())
	}
	lis, err := rpc.Listen(o.grpcAddr)
	if err != nil {
		return err
	}
	cons, err := consul.NewFromConfig(o.consul, o.nodeID, logger)
	if err != nil {
		return err
	}
	go logConsulToken(ctx, cons.CheckToken, logger)
	// The heartbeat stream is made once the agent is (it streams the
	// agent's statuses); the agent asks it how long no leader held it.
	var stream atomic.Pointer[nodestream.Stream]
	leaderLapse := func(now time.Time) (time.Duration, time.Duration) {
		if st := stream.Load(); st != nil {
			return st.Lapse(now)
		}
		return 0, 0
	}
	a, err := agent.New(agent.Config{
		LeaderLapse: leaderLapse,
		NodeID:      o.nodeID, Labels: labels, CPUMHz: o.cpuMHz, MemoryMB: o.memoryMB,
		Address: o.advertise, GRPCAddr: advertisedAddr(lis.Addr(), o.advertise), DataDir: o.dataDir,
		DrainTimeout: o.drainTimeout, ConfirmGrace: o.confirmGrace, HoldAfter: o.holdAfter, DrainWindow: o.drainWindow, Logger: logger, Registerer: reg,
		Policy: o.hard.policy, StartTimeout: o.hard.pullTimeout + time.Minute,
	}, drv, cons)
	if err != nil {
		return err
	}
	srv := rpc.NewServer(rpc.ServerConfig{Name: "nodeagent", Logger: logger, Registerer: reg, Creds: creds,
		Access: map[string][]pki.Role{agentv1.NodeAgentService_ServiceDesc.ServiceName: {pki.RoleCoordinator}}})
	agentv1.RegisterNodeAgentServiceServer(srv, grpcapi.New(a))
	srv.SetServing("", true)
	srv.SetServing(agentv1.NodeAgentService_ServiceDesc.ServiceName, true)
	serveErr := make(chan error, 1)
	runDone := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	go func() { runDone <- a.Run(ctx) }()
	streamDone := make(chan struct{})
	if addrs := splitList(o.coordinators); len(addrs) > 0 {
		src := grpcapi.NewStreamSource(ctx, a)
		st, err := nodestream.New(nodestream.Config{Coordinators: addrs, Creds: creds, NodeID: o.nodeID,
			Statuses: src.Statuses, Changed: src.Changed(), Logger: logger})
		if err != nil {
			stop()
			return err
		}
		stream.Store(st)
		go func() { st.Run(ctx); close(streamDone) }()
	} else {
		close(streamDone)
	}
	logger.Info("node agent up", "node", o.nodeID, "grpc", lis.Addr().String(), "driver", drv.Name(), "consul", o.consul.Endpoint())
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
		stop()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-streamDone
	// Let operations in flight finish or give up (they see ctx end).
	select {
	case <-runDone:
	case <-time.After(10 * time.Second):
		logger.Warn("operations still in flight at exit; the next start adopts or removes what they left")
	}
	if runErr != nil {
		return fmt.Errorf("serve gRPC: %w", runErr)
	}
	logger.Info("node agent stopped; instances keep running and are adopted on restart")
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// advertisedAddr is the gRPC address registered in Consul: the listener's,
// with the advertise address when it listens on all interfaces.
func advertisedAddr(a net.Addr, advertise string) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = advertise
	}
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p))
}

// logConsulToken logs, once Consul answers (within 10s), which token the
// agent runs as, or a warning saying which policy and flags it lacks.
func logConsulToken(ctx context.Context, check func(context.Context) (string, error), logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if who, err := check(ctx); err != nil {
		logger.Warn("consul token", "err", err)
	} else {
		logger.Info("consul token", "as", who)
	}
}
