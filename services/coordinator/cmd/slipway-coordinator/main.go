// Command slipway-coordinator runs one member of the raft-replicated
// Slipway coordinator: it accepts releases over gRPC (DeployService), manages
// its cluster (ClusterService) and replicates every change through raft.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/notify"
	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/server"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/buildinfo"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/telemetry"
)

const usage = `slipway-coordinator runs one member of the Slipway coordinator cluster.

Every flag can also be set in the environment as SLIPWAY_<FLAG>, e.g.
SLIPWAY_DATA_DIR or SLIPWAY_BOOTSTRAP_EXPECT; a flag on the command line wins.

Forming a cluster (nothing to do when -data-dir already holds raft state: the
node restarts as the member it was):
  single node     slipway-coordinator -bootstrap
  N new nodes     start each with -bootstrap-expect N -join A,B,C (the gRPC
                  addresses of all N servers; a node skips its own). Each node
                  asks the others who they are; once N servers without state
                  answer, each bootstraps the same sorted list of all N as
                  voters (identical bootstrap configurations are safe). If one
                  of them already belongs to a cluster, it joins that instead.
  add a node      start it with -join A (any member's gRPC address): the member
                  forwards the request to the leader, which adds it as a voter.
                  Or start it without -join and call ClusterService.AddPeer.

Writes sent to a follower are forwarded to the leader, whose gRPC address is
kept in the replicated state (each leader records its own on election).

Security: every link is mutual TLS with role-bearing certificates from one
CA (slipctl tls ca create / slipctl tls cert create --role coordinator). A
coordinator refuses to start without -tls-ca, -tls-cert and -tls-key unless
-insecure asks for plaintext. Listeners default to 127.0.0.1.

Tokens (-acl, on by default): every call needs a token sent as
"authorization: Bearer <secret>" (slipctl: SLIPWAY_TOKEN), except health,
reflection, ClusterService.GetLeader and AclService.Bootstrap, which works
once per cluster and returns the first management token (slipctl acl
bootstrap). Policies: deploy and
operate (scoped by service globs), read, admin. Only the SHA-256 of each
secret is kept, in raft; a revoked token is refused by every coordinator as
soon as it applies the revocation. InternalService (coordinator to
coordinator) is authorised by the coordinator certificate, not by tokens.

Secrets (-keyring-file): secrets and configs (slipctl secret / config) are
sealed by the leader with the keyring's primary key (AES-256-GCM) before
they enter the raft log, so the log and snapshots hold ciphertext only. The
keyring file lives outside the log; every coordinator needs the same one
('slipway-coordinator keyring' creates and rotates it).

Dashboard (-dashboard-addr, off by default; the conventional address is
127.0.0.1:7402): services, rollouts with their steps and weights, instances
per node, a live traffic chart, history, audit and the promote / pause /
resume / abort / rollback buttons. It is served over HTTPS with this
coordinator's certificate (browsers must trust the Slipway CA, or be told to
accept it); a user logs in by pasting a token, and every page and button is a
call of this coordinator's API with that token.

Consul: the leader engine finds node agents and writes traffic intents
through a Consul agent (-consul-addr). With Consul ACLs (default deny) give it
a token holding deployments/consul/coordinator.hcl (-consul-token-file,
-consul-token or CONSUL_HTTP_TOKEN); -consul-ca, -consul-cert and -consul-key
(or CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY) for HTTPS. A Consul
entry alone never makes a node: one counts once its agent has answered over
mutual TLS with a nodeagent certificate naming it.

Flags:
`

func main() {
	if buildinfo.Requested(os.Args[1:]) {
		buildinfo.Print(os.Stdout, "slipway-coordinator")
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "keyring" {
		if err := keyringCmd(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "slipway-coordinator:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "slipway-coordinator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("slipway-coordinator", flag.ContinueOnError)
	buildinfo.Flag(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var (
		cfg       server.Config
		join      string
		gateAllow string
		logLevel  string
		logFormat string
		sec       rpc.Security
		aclOn     bool
	)
	sec.RegisterFlags(fs)
	fs.StringVar(&cfg.ID, "id", server.DefaultID(), "raft server id, unique in the cluster")
	fs.StringVar(&cfg.DataDir, "data-dir", "slipway-data", "directory for the raft log, stable store and snapshots")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:7400", "gRPC listen address")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7401", "raft TCP listen address")
	fs.DurationVar(&cfg.RaftTimeouts.Heartbeat, "raft-heartbeat-timeout", raftnode.DefaultTimeouts.Heartbeat, "a follower starts an election after hearing nothing from the leader for between this and twice this; the LAN default elects a new leader within about a second; widen it (and the two below, alike on every coordinator) for slow or lossy links, e.g. 5x for a WAN")
	fs.DurationVar(&cfg.RaftTimeouts.Election, "raft-election-timeout", raftnode.DefaultTimeouts.Election, "how long a candidate waits for votes before a new election; at least -raft-heartbeat-timeout")
	fs.DurationVar(&cfg.RaftTimeouts.LeaderLease, "raft-leader-lease-timeout", raftnode.DefaultTimeouts.LeaderLease, "a leader that has not heard from a quorum for this long steps down (its writes in flight get OUTCOME_UNKNOWN); at most -raft-heartbeat-timeout")
	fs.StringVar(&cfg.Advertise, "advertise", "", "host or IP other coordinators use to reach this one (default: the listen host, or 127.0.0.1 when unspecified)")
	fs.BoolVar(&cfg.Bootstrap, "bootstrap", false, "bootstrap a single-node cluster when there is no state")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "form a new cluster once this many servers (listed in -join) are up")
	fs.StringVar(&join, "join", "", "comma-separated gRPC addresses of other coordinators")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at https://ADDR/metrics, requiring a client certificate from -tls-ca (slipctl tls cert create --role metrics); plain http:// only with -insecure (empty: off)")
	fs.StringVar(&cfg.DashboardAddr, "dashboard-addr", "", "serve the web dashboard at https://ADDR/ with this coordinator's certificate (plaintext only with -insecure); users log in with a Slipway token; e.g. 127.0.0.1:7402 (empty: off)")
	fs.StringVar(&gateAllow, "analysis-gate-allow", "", "comma-separated http(s) URL prefixes every URL a spec names may reach (analysis webhooks, Prometheus servers, update hooks), e.g. https://ci.example.com/gates/,http://prometheus:9090: Deploy refuses a spec naming another, and the leader fails (without asking) a committed gate or hook outside it; scheme and host:port match exactly, the path by prefix (empty: any URL, as before); use the same value on every coordinator of a cluster")
	fs.BoolVar(&cfg.Engine, "engine", true, "run the leader engine while leading (rollouts act on nodes and edges); -engine=false only records")
	cfg.Consul.RegisterFlags(fs) // the leader engine's Consul: -consul-addr, -consul-token, -consul-ca, ...
	fs.DurationVar(&cfg.NodeGrace, "node-grace", 10*time.Second, "how long a node whose agent does not stream heartbeats may be missing from Consul before its allocations are replaced")
	fs.DurationVar(&cfg.NodeTTL, "node-ttl", 10*time.Second, "how long a node whose agent streams heartbeats to the leader (nodeagent -coordinators) may send none before it is down and its allocations are replaced; a down node is up again after heartbeats for as long again; agents are told to send one every quarter of it")
	fs.DurationVar(&cfg.DrainDeadline, "drain-deadline", 5*time.Minute, "how long an allocation on a draining node keeps serving while its replacement elsewhere is not yet healthy; after it, the allocation is stopped anyway")
	fs.IntVar(&cfg.KeepEventRollouts, "keep-events-rollouts", state.DefaultKeepEventRollouts, "how many of each service's newest rollouts keep their events (older, finished rollouts keep their record and history, not their events); use the same value on every coordinator of a cluster")
	fs.IntVar(&cfg.KeepAudit, "keep-audit", state.DefaultKeepAudit, "how many audit entries each service keeps (the oldest go first); use the same value on every coordinator of a cluster")
	fs.BoolVar(&aclOn, "acl", true, "require a token (authorization: Bearer) on every call but health, reflection, GetLeader and AclService.Bootstrap: default deny; bootstrap the first management token with 'slipctl acl bootstrap'; use the same value on every coordinator of a cluster")
	var notifyURL, notifySlackURL, notifyKinds string
	fs.StringVar(&notifyURL, "notify-url", "", "POST every rollout event, as the JSON of a WatchEvents response, to this http(s) `URL` while this coordinator leads (empty: off); retried with backoff, never holding a rollout")
	fs.StringVar(&notifySlackURL, "notify-slack-url", "", "POST every rollout event as a Slack-compatible {\"text\": ...} body to this incoming-webhook `URL` while this coordinator leads (empty: off)")
	fs.StringVar(&notifyKinds, "notify-kinds", "", "send only these comma-separated event kinds, e.g. started,step,paused,analysis,promoted,succeeded,failed,reverted (empty: every kind)")
	fs.IntVar(&cfg.Notify.Queue, "notify-queue", notify.DefaultQueue, "events waiting to be sent at most; beyond it new events are dropped and counted in slipway_notify_dropped_total")
	fs.DurationVar(&cfg.Notify.Timeout, "notify-timeout", notify.DefaultTimeout, "deadline of one notification POST")
	fs.DurationVar(&cfg.Notify.MaxElapsed, "notify-retry-for", notify.DefaultMaxElapsed, "how long one event is retried (exponential backoff) after failed POSTs before it is given up")
	fs.StringVar(&cfg.KeyringFile, "keyring-file", "", "the keyring that encrypts secrets and configs in the raft state (AES-256-GCM); it must exist: create it once with 'slipway-coordinator keyring init -file F' and copy it, mode 0600, to every coordinator (all need the same keys). Empty: secrets and configs are refused")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	if err := envDefaults(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.DisableACL = !aclOn
	if notifyURL != "" {
		cfg.Notify.Targets = append(cfg.Notify.Targets, notify.Target{URL: notifyURL, Format: notify.JSON})
	}
	if notifySlackURL != "" {
		cfg.Notify.Targets = append(cfg.Notify.Targets, notify.Target{URL: notifySlackURL, Format: notify.Slack})
	}
	kinds, err := notify.ParseKinds(notifyKinds)
	if err != nil {
		return fmt.Errorf("-notify-kinds: %w", err)
	}
	cfg.Notify.Kinds = kinds
	if err := cfg.Notify.Validate(); err != nil {
		return fmt.Errorf("-notify-url, -notify-slack-url: %w", err)
	}
	if err := cfg.Consul.Validate(); err != nil {
		return err
	}
	if err := cfg.RaftTimeouts.Validate(); err != nil {
		return err
	}
	allow, err := analysis.ParseAllowlist(gateAllow)
	if err != nil {
		return fmt.Errorf("-analysis-gate-allow: %w", err)
	}
	cfg.GateAllow = allow
	for _, a := range strings.Split(join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Join = append(cfg.Join, a)
		}
	}
	logger, err := telemetry.NewLogger(os.Stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	if cfg.Creds, err = rpc.NewCreds(sec, logger); err != nil {
		return err
	}
	cfg.LogLevel = "warn"
	if logLevel == "debug" {
		cfg.LogLevel = "debug"
	}
	cfg.LogJSON = logFormat == "json"

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return server.Run(ctx, cfg)
}

// envDefaults sets each flag from SLIPWAY_<NAME> when that is set.
func envDefaults(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "SLIPWAY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
			}
		}
	})
	return err
}
