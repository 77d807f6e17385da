// Package server wires a coordinator together: raft node, FSM, gRPC API,
// metrics, cluster formation (bootstrap, bootstrap-expect, join) and
// graceful shutdown.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"slipway.dev/coordinator/agentclient"
	"slipway.dev/coordinator/analysis"
	"slipway.dev/coordinator/consul"
	"slipway.dev/coordinator/dashboard"
	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/grpcapi"
	"slipway.dev/coordinator/heartbeat"
	"slipway.dev/coordinator/keyring"
	"slipway.dev/coordinator/notify"
	"slipway.dev/coordinator/raftnode"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/coordinator/secretstore"
	"slipway.dev/coordinator/signals"
	"slipway.dev/coordinator/state"
	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/telemetry"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// deployServiceName is the health-service name reported NOT_SERVING while
// no leader is known or the node is still replaying its raft log.
const deployServiceName = "slipway.deploy.v1.DeployService"

// Config is a coordinator's configuration.
type Config struct {
	// ID is the raft server id; unique in the cluster.
	ID string
	// DataDir holds the raft log, stable store and snapshots.
	DataDir string
	// GRPCAddr is the gRPC listen address.
	GRPCAddr string
	// RaftAddr is the raft TCP listen address.
	RaftAddr string
	// Advertise is the host (or IP) other coordinators use to reach this one;
	// empty means the listen host, or 127.0.0.1 when that is unspecified.
	Advertise string
	// Bootstrap makes a new single-node cluster when there is no state.
	Bootstrap bool
	// BootstrapExpect, with Join, forms a new cluster of that many servers.
	BootstrapExpect int
	// Join lists gRPC addresses of other coordinators.
	Join []string
	// MetricsAddr serves /metrics when set: HTTPS requiring a client
	// certificate from the Slipway CA, plain HTTP with insecure Creds.
	MetricsAddr string
	// RaftTimeouts are raft's failure-detection timeouts; zero fields take
	// raftnode.DefaultTimeouts.
	RaftTimeouts raftnode.Timeouts
	// GateAllow bounds the URLs analysis gates may reach (Deploy refuses
	// others; the engine fails them unasked); empty: any.
	GateAllow analysis.Allowlist
	// DashboardAddr serves the web dashboard (HTTPS with this
	// coordinator's certificate, plaintext only with insecure Creds) when
	// set; empty: off.
	DashboardAddr string
	// Creds secure every link: the gRPC server (clients and coordinators
	// call the public services, only coordinators InternalService), raft,
	// forwarding, joins and the calls to node agents. Required.
	Creds *rpc.Creds
	// Logger receives the coordinator's logs.
	Logger *slog.Logger
	// LogLevel and LogJSON configure raft's own logger.
	LogLevel string
	// LogJSON writes raft's logs as JSON.
	LogJSON bool
	// LogOutput is where raft's logger writes; default stderr.
	LogOutput io.Writer
	// Engine runs the leader engine while this node leads (rollouts act:
	// placements, agent syncs, traffic intents). Off in the zero Config.
	Engine bool
	// ConsulAddr is the Consul agent the engine uses (host:port) when
	// Consul.Addr is empty; default CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
	ConsulAddr string
	// Consul is how the engine reaches Consul: address, ACL token (the
	// policy is deployments/consul/coordinator.hcl) and TLS; CONSUL_HTTP_*
	// from the environment fill what it leaves empty.
	Consul consulconf.Config
	// EnginePoll is the engine's longest time between passes; default
	// 500ms.
	EnginePoll time.Duration
	// NodeGrace is how long a node may be missing from Consul before its
	// allocations are replaced; default 10s.
	NodeGrace time.Duration
	// NodeTTL is how long a node whose agent streams heartbeats to the
	// leader may send none before it is down (and, once down, how long it
	// must send them steadily before it is up again); default 10s. Nodes
	// that do not stream are judged by Consul and NodeGrace.
	NodeTTL time.Duration
	// DrainDeadline is how long an allocation on a draining node waits for
	// its replacement to pass its health check before it is stopped anyway.
	DrainDeadline time.Duration
	// KeepEventRollouts is how many of each service's newest rollouts keep
	// their events, and KeepAudit how many audit entries each service keeps
	// (zero: state.DefaultKeepEventRollouts, state.DefaultKeepAudit). They
	// shape the replicated state: every coordinator of a cluster must use
	// the same values.
	KeepEventRollouts int
	// KeepAudit: see KeepEventRollouts.
	KeepAudit int
	// KeyringFile is the keyring that encrypts secrets and configs
	// (package keyring); it must exist. Empty: no keyring, and every secret
	// write and every spec mounting one is refused. Every coordinator of a
	// cluster needs the same keys.
	KeyringFile string
	// DisableACL turns the token checks off: every caller that passes the
	// certificate role check may call every RPC. ACLs are on in the zero
	// Config (default deny: every call but health, reflection, GetLeader
	// and AclService.Bootstrap needs a token, until bootstrap too); the
	// binary's -acl flag defaults to on. Use the same setting on every
	// coordinator of a cluster.
	DisableACL bool
	// Notify sends every rollout event to webhooks while this node leads
	// (Targets empty: off). Its Registerer and Logger are set by Run.
	Notify notify.Config
}

func (c Config) validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("id: is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir: is required"))
	}
	if c.Bootstrap && c.BootstrapExpect > 0 {
		errs = append(errs, errors.New("bootstrap: cannot be combined with bootstrap-expect"))
	}
	if c.Creds == nil {
		errs = append(errs, errors.New("creds: are required (TLS files, or insecure)"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("bootstrap-expect: must not be negative"))
	}
	if c.KeepEventRollouts < 0 {
		errs = append(errs, fmt.Errorf("keep-events-rollouts: must not be negative, got %d", c.KeepEventRollouts))
	}
	if c.NodeTTL < 0 {
		errs = append(errs, fmt.Errorf("node-ttl: must not be negative, got %s", c.NodeTTL))
	}
	if c.KeepAudit < 0 {
		errs = append(errs, fmt.Errorf("keep-audit: must not be negative, got %d", c.KeepAudit))
	}
	if err := c.Notify.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 {
		errs = append(errs, errors.New("join: is required with bootstrap-expect > 1 (the other servers' gRPC addresses)"))
	}
	return errors.Join(errs...)
}

// advertised returns host:port with host replaced by adv when set, or by
// 127.0.0.1 when the bound host is unspecified.
func advertised(bound, adv string) (string, error) {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", bound, err)
	}
	switch {
	case adv != "":
		host = adv
	case host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified():
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Run runs a coordinator until ctx ends, then shuts it down gracefully:
// leadership is handed over first when this node leads.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("server: config: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("id", cfg.ID)
	var kfile *keyring.File
	if cfg.KeyringFile != "" {
		var err error
		if kfile, err = keyring.OpenFile(cfg.KeyringFile); err != nil {
			return fmt.Errorf("server: -keyring-file: %w", err)
		}
	}
	reg := telemetry.NewRegistry()
	ms, err := telemetry.ServeMetrics(cfg.MetricsAddr, reg, cfg.Creds, logger)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	defer ms.Close(context.Background())

	lis, err := rpc.Listen(cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	grpcAdv, err := advertised(lis.Addr().String(), cfg.Advertise)
	if err != nil {
		lis.Close()
		return fmt.Errorf("server: grpc %w", err)
	}
	raftAdv, err := advertised(cfg.RaftAddr, cfg.Advertise)
	if err != nil {
		lis.Close()
		return fmt.Errorf("server: raft %w", err)
	}

	rm := newRolloutMetrics()
	fsm := state.New(state.WithRetention(state.Retention{EventRollouts: cfg.KeepEventRollouts, Audit: cfg.KeepAudit}), state.WithEventObserver(rm.observe))
	rm.fsm = fsm
	if err := reg.Register(rm); err != nil {
		lis.Close()
		return fmt.Errorf("server: register rollout metrics: %w", err)
	}
	node, err := raftnode.New(raftnode.Config{
		ID: cfg.ID, DataDir: cfg.DataDir, BindAddr: cfg.RaftAddr, Advertise: raftAdv, Creds: cfg.Creds,
		Logger: logger, LogLevel: cfg.LogLevel, LogJSON: cfg.LogJSON, LogOutput: cfg.LogOutput, Registerer: reg,
		Timeouts: cfg.RaftTimeouts,
	}, fsm)
	if err != nil {
		lis.Close()
		return fmt.Errorf("server: %w", err)
	}
	api := grpcapi.New(node, fsm, grpcAdv, cfg.Creds, logger)
	secrets := secretstore.New(fsm, kfile)
	api.SetSecrets(secrets)
	// Edges report golden signals to any coordinator; the leader merges
	// them for its engine's canary analysis.
	sigs := signals.New(0)
	api.SetSignals(sigs)
	api.SetGateAllowlist(cfg.GateAllow)
	scfg := rpc.ServerConfig{Name: "coordinator", Logger: logger, Registerer: reg, Creds: cfg.Creds, Access: grpcapi.Access}
	if !cfg.DisableACL {
		scfg.UnaryInterceptors = append(scfg.UnaryInterceptors, api.UnaryACL())
		scfg.StreamInterceptors = append(scfg.StreamInterceptors, api.StreamACL())
	}
	srv := rpc.NewServer(scfg)
	api.Register(srv)
	srv.SetServing(deployServiceName, false)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	logger.Info("coordinator started", "grpc", grpcAdv, "raft", node.Addr(), "data_dir", cfg.DataDir, "had_state", node.HadState(), "metrics", ms.Addr(), "acl", !cfg.DisableACL)

	c := &coordinator{cfg: cfg, node: node, fsm: fsm, api: api, srv: srv, logger: logger, signals: sigs, secrets: secrets}
	if cfg.DashboardAddr != "" {
		if err := c.startDashboard(grpcAdv); err != nil {
			c.shutdown()
			return fmt.Errorf("server: %w", err)
		}
	}
	if cfg.Engine {
		ccfg := cfg.Consul
		if ccfg.Addr == "" {
			ccfg.Addr = cfg.ConsulAddr
		}
		cc, err := consul.NewFromConfig(ccfg, logger)
		if err != nil {
			c.shutdown()
			return fmt.Errorf("server: %w", err)
		}
		go func() {
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if who, err := cc.CheckToken(tctx); err != nil {
				logger.Warn("consul token", "err", err)
			} else {
				logger.Info("consul token", "as", who)
			}
		}()
		c.consul, c.agents = cc, agentclient.New(cfg.Creds)
		defer c.agents.Close()
	}
	var notifier *notify.Notifier
	if len(cfg.Notify.Targets) > 0 {
		ncfg := cfg.Notify
		ncfg.Registerer, ncfg.Logger = reg, logger
		if notifier, err = notify.New(ncfg); err != nil {
			c.shutdown()
			return fmt.Errorf("server: %w", err)
		}
	}
	loops, cancelLoops := context.WithCancel(ctx)
	done := make(chan struct{}, 4)
	waits := 2
	go func() { c.form(loops); done <- struct{}{} }()
	go func() { c.watchLeader(loops); c.stopEngine(); done <- struct{}{} }()
	if notifier != nil {
		waits += 2
		go func() { notifier.Run(loops); done <- struct{}{} }()
		go func() { c.feedNotifications(loops, notifier); done <- struct{}{} }()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("server: grpc serve: %w", err)
	}
	cancelLoops()
	for range waits {
		<-done
	}
	c.shutdown()
	return runErr
}

type coordinator struct {
	cfg    Config
	node   *raftnode.Node
	fsm    *state.FSM
	api    *grpcapi.API
	srv    *rpc.Server
	logger *slog.Logger
	// signals are the edges' golden signals, merged on the leader.
	signals *signals.Store
	// secrets opens the secrets the leader sends to node agents.
	secrets *secretstore.Store

	consul       *consul.Client
	agents       *agentclient.Client
	dash         *dashboard.Server
	dashConn     *grpc.ClientConn
	statuses     atomic.Pointer[map[string]*agentv1.AllocationStatus]
	engineStop   context.CancelFunc
	engineDone   chan struct{}
	engineFailed time.Time
	// verified are the nodes whose agents proved who they are; kept across
	// terms, so that a node proven once is not missing from a new term's
	// first view.
	verified *agentclient.Verified
}

// runEngine keeps the leader engine running exactly while this node leads:
// started after a raft barrier (so that it sees every committed entry),
// stopped as soon as leadership is lost.
func (c *coordinator) runEngine(ctx context.Context) {
	if c.consul == nil {
		return
	}
	leads := c.node.IsLeader()
	running := c.engineDone != nil
	if running {
		select {
		case <-c.engineDone: // exited by itself (leadership lost)
			c.engineStop()
			c.engineStop, c.engineDone = nil, nil
			c.api.SetHeartbeats(nil)
			running = false
		default:
		}
	}
	switch {
	case leads && !running:
		if time.Since(c.engineFailed) < time.Second {
			return
		}
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.node.VerifyLeader(bctx) // raft barrier: every committed entry applied
		cancel()
		if err != nil {
			c.engineFailed = time.Now()
			c.logger.Warn("engine not started: barrier failed", "err", err)
			return
		}
		ectx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		c.engineStop, c.engineDone = stop, done
		// A node is an agent entry in Consul whose agent proves the node id
		// with its certificate: an entry alone is not enough.
		if c.verified == nil {
			c.verified = agentclient.NewVerified(c.consul, c.agents, c.logger)
		}
		// Node agents' heartbeat streams feed a view of this term.
		hb := heartbeat.New(heartbeat.Config{TTL: c.cfg.NodeTTL})
		c.api.SetHeartbeats(hb)
		eng := engine.New(engine.Config{Raft: engineRaft{c.node}, FSM: c.fsm, Nodes: c.verified, Routes: c.consul, Agents: c.agents, Signals: c.signals, GateAllow: c.cfg.GateAllow, Secrets: c.secrets, Heartbeats: hb,
			Logger: c.logger, Poll: c.cfg.EnginePoll, NodeGrace: c.cfg.NodeGrace, DrainDeadline: c.cfg.DrainDeadline,
			OnStatuses: func(m map[string]*agentv1.AllocationStatus) { c.statuses.Store(&m) }})
		go func() {
			defer close(done)
			acks := make(chan struct{})
			go func() { c.consul.WatchAcks(ectx); close(acks) }()
			nodes := make(chan struct{})
			go func() { c.consul.WatchNodes(ectx); close(nodes) }()
			if err := eng.Run(ectx); err != nil {
				c.logger.Info("engine ended", "err", err)
			}
			stop()
			<-acks
			<-nodes
		}()
	case !leads && running:
		c.logger.Info("leadership lost: stopping the engine")
		c.stopEngine()
	}
}

func (c *coordinator) stopEngine() {
	if c.engineStop == nil {
		return
	}
	c.engineStop()
	<-c.engineDone
	c.engineStop, c.engineDone = nil, nil
	c.api.SetHeartbeats(nil) // streams go to the next leader
	c.statuses.Store(nil)    // a follower knows no instance health
}

func (c *coordinator) shutdown() {
	if c.node.IsLeader() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := c.node.TransferLeadership(ctx, ""); err != nil {
			c.logger.Warn("leadership transfer on shutdown failed", "err", err)
		} else {
			id, _ := c.node.Leader()
			c.logger.Info("leadership transferred on shutdown", "to", id)
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if c.dash != nil {
		if err := c.dash.Close(ctx); err != nil {
			c.logger.Warn("dashboard shutdown", "err", err)
		}
		c.dashConn.Close()
	}
	c.srv.Shutdown(ctx)
	cancel()
	c.api.Close()
	if err := c.node.Shutdown(); err != nil {
		c.logger.Warn("raft shutdown", "err", err)
	}
	c.logger.Info("coordinator stopped")
}

// watchLeader keeps the health service in step with leadership and, on the
// leader, registers this node's gRPC address in the replicated state so that
// followers can forward writes to it.
func (c *coordinator) watchLeader(ctx context.Context) {
	self := c.api.Self()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	serving := false
	for {
		// DeployService serves once a leader is known and this node has
		// replayed the log it had at start (local reads would miss state
		// before that).
		id, _ := c.node.Leader()
		if ready := id != "" && c.node.CaughtUp(); ready != serving {
			serving = ready
			c.srv.SetServing(deployServiceName, serving)
			c.logger.Info("deploy service serving changed", "serving", serving, "leader", id, "self_leads", id == self.GetId(),
				"applied_index", c.node.AppliedIndex(), "boot_index", c.node.BootIndex())
		}
		if err := c.api.RegisterSelf(ctx); err != nil {
			c.logger.Debug("register own address", "err", err)
		}
		c.runEngine(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.node.LeadershipChanges():
			// Elected (or deposed): start (or stop) the engine now, not
			// at the next tick.
		}
	}
}

// form brings a node without raft state into a cluster:
//   - -bootstrap: a single-node cluster of itself;
//   - -join without -bootstrap-expect: asks the listed coordinators, in
//     turn, to add it (a follower forwards the request to its leader);
//   - -bootstrap-expect N -join ...: asks every listed coordinator who it
//     is; as soon as one of them belongs to a cluster it joins that one,
//     and once N servers without state (itself included) answer, it
//     bootstraps all N as voters. Every server computes the same sorted
//     list, and identical bootstrap configurations are safe in raft.
//
// A node with state restarts as the member it was and does nothing here.
func (c *coordinator) form(ctx context.Context) {
	if c.node.HadState() {
		return
	}
	self := c.api.Self()
	if c.cfg.Bootstrap || c.cfg.BootstrapExpect == 1 {
		if err := c.node.Bootstrap([]raftnode.Server{{ID: self.GetId(), Address: self.GetRaftAddress(), Voter: true}}); err != nil {
			c.logger.Error("bootstrap", "err", err)
		}
		return
	}
	if len(c.cfg.Join) == 0 {
		c.logger.Info("no state, no -bootstrap and no -join: waiting to be added with ClusterService.AddPeer")
		return
	}
	for {
		if id, _ := c.node.Leader(); id != "" {
			return // added by someone (or bootstrapped by the others)
		}
		if c.tryForm(ctx, self) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// tryForm makes one attempt to join or bootstrap; true means done.
func (c *coordinator) tryForm(ctx context.Context, self *statev1.PeerAddress) bool {
	servers := map[string]raftnode.Server{self.GetId(): {ID: self.GetId(), Address: self.GetRaftAddress(), Voter: true}}
	var inCluster []string
	for _, addr := range c.cfg.Join {
		if addr == self.GetGrpcAddress() {
			continue
		}
		info, err := c.peerInfo(ctx, addr)
		if err != nil {
			c.logger.Debug("join: peer not reachable yet", "addr", addr, "err", err)
			continue
		}
		if info.GetPeer().GetId() == self.GetId() {
			continue
		}
		if info.GetHasState() || c.cfg.BootstrapExpect == 0 {
			inCluster = append(inCluster, addr)
		}
		servers[info.GetPeer().GetId()] = raftnode.Server{ID: info.GetPeer().GetId(), Address: info.GetPeer().GetRaftAddress(), Voter: true}
	}
	for _, addr := range inCluster {
		if err := c.join(ctx, addr, self); err != nil {
			c.logger.Info("join failed, will retry", "via", addr, "err", err)
			continue
		}
		c.logger.Info("joined cluster", "via", addr)
		return true
	}
	if c.cfg.BootstrapExpect > 1 && len(inCluster) == 0 && len(servers) >= c.cfg.BootstrapExpect {
		list := make([]raftnode.Server, 0, len(servers))
		for _, s := range servers {
			list = append(list, s)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		if len(list) > c.cfg.BootstrapExpect {
			c.logger.Warn("more servers answered than -bootstrap-expect; bootstrapping all of them", "expect", c.cfg.BootstrapExpect, "found", len(list))
		}
		if err := c.node.Bootstrap(list); err != nil {
			c.logger.Error("bootstrap", "err", err)
		} else {
			c.logger.Info("bootstrapped cluster", "servers", len(list))
		}
		return true
	}
	return false
}

func (c *coordinator) peerInfo(ctx context.Context, addr string) (*statev1.GetPeerInfoResponse, error) {
	conn, err := rpc.Dial(addr, c.cfg.Creds, rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return statev1.NewInternalServiceClient(conn).GetPeerInfo(cctx, &statev1.GetPeerInfoRequest{})
}

func (c *coordinator) join(ctx context.Context, addr string, self *statev1.PeerAddress) error {
	conn, err := rpc.Dial(addr, c.cfg.Creds, rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = statev1.NewInternalServiceClient(conn).Join(cctx, &statev1.JoinRequest{Peer: self})
	return err
}

// DefaultID is the default raft id: the host name.
func DefaultID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "coordinator-" + strconv.Itoa(os.Getpid())
	}
	return h
}

// startDashboard serves the web dashboard on cfg.DashboardAddr. It calls
// this coordinator's own gRPC API (as a coordinator, with each user's
// token), so the API's token checks decide every page and action.
func (c *coordinator) startDashboard(grpcAddr string) error {
	conn, err := rpc.Dial(grpcAddr, c.cfg.Creds, rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		return fmt.Errorf("dashboard: dial own API: %w", err)
	}
	dcfg := dashboard.Config{Addr: c.cfg.DashboardAddr, Conn: conn, Logger: c.logger, Changed: c.fsm.Changed,
		Instances: c.instances, Signals: c.signals.Series, PauseEnds: c.pauseEnds, Events: func(id string) []*deployv1.RolloutEvent {
			evs, err := c.fsm.EventsAfter(id, 0)
			if err != nil {
				return nil
			}
			return evs.Events
		}}
	if c.cfg.Creds.Insecure() {
		dcfg.Insecure = true
	} else {
		dcfg.TLS = c.cfg.Creds.WebTLS()
	}
	d, err := dashboard.Start(dcfg)
	if err != nil {
		conn.Close()
		return err
	}
	c.dash, c.dashConn = d, conn
	return nil
}

// pauseEnds is when the current timed pause of a rollout ends, from its
// committed machine state.
func (c *coordinator) pauseEnds(rolloutID string) (time.Time, bool) {
	raw, ok := c.fsm.Machine(rolloutID)
	if !ok {
		return time.Time{}, false
	}
	var st rollout.State
	if err := json.Unmarshal(raw, &st); err != nil {
		return time.Time{}, false
	}
	return st.PauseEnds()
}

// instances joins the committed allocations with the health their agents
// last reported to this node's engine (only the leader has any).
func (c *coordinator) instances() []dashboard.Instance {
	var sts map[string]*agentv1.AllocationStatus
	if p := c.statuses.Load(); p != nil {
		sts = *p
	}
	all := c.fsm.AllAllocations()
	out := make([]dashboard.Instance, 0, len(all))
	for _, sa := range all {
		in := dashboard.Instance{Allocation: sa.Allocation}
		if sa.CreatedAt != nil {
			in.CreatedAt = sa.CreatedAt.AsTime()
		}
		if st := sts[sa.Allocation.GetId()]; st != nil {
			in.Health, in.HealthSince = health(st), st.GetUpdatedAt().AsTime()
			if st.GetHealth() == agentv1.Health_HEALTH_PASSING && st.GetHealthySince() != nil {
				in.HealthSince = st.GetHealthySince().AsTime()
			}
		}
		out = append(out, in)
	}
	return out
}

// health names an allocation's condition: its health while it runs, else
// its state ("starting", "draining", "stopped").
func health(st *agentv1.AllocationStatus) string {
	if st.GetState() == agentv1.AllocationState_ALLOCATION_STATE_RUNNING && st.GetHealth() != agentv1.Health_HEALTH_UNSPECIFIED {
		return strings.ToLower(strings.TrimPrefix(st.GetHealth().String(), "HEALTH_"))
	}
	return strings.ToLower(strings.TrimPrefix(st.GetState().String(), "ALLOCATION_STATE_"))
}
