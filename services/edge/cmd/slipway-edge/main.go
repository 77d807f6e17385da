// Command slipway-edge routes HTTP traffic to Slipway-managed services from
// Consul's passing instances and the coordinator's traffic intents, in its
// own proxy or through nginx, and acknowledges each route generation.
//
// Every flag can also be set from the environment as SLIPWAY_<FLAG> with
// dashes as underscores, e.g. SLIPWAY_CONSUL_ADDR.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"slipway.dev/edge/consul"
	"slipway.dev/edge/controller"
	"slipway.dev/edge/grpcapi"
	"slipway.dev/edge/internal/h1server"
	"slipway.dev/edge/nginx"
	"slipway.dev/edge/proxy"
	"slipway.dev/edge/signals"
	"slipway.dev/platform/buildinfo"
	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/telemetry"
)

type options struct {
	id, mode, httpAddr, grpcAddr, metricsAddr, logLevel, logFormat string
	nginxBinary, nginxDir, nginxControl, coordinators              string
	nginxWorkers                                                   int
	nginxExternal, accessLog                                       bool
	sessionTTL, nginxShutdown, coalesce, signalsEvery              time.Duration
	coalesceBudget                                                 float64
	connectTimeout                                                 time.Duration
	lean                                                           bool
	limits                                                         h1server.Limits
	sec                                                            rpc.Security
	consul                                                         consulconf.Config
}

func main() {
	if buildinfo.Requested(os.Args[1:]) {
		buildinfo.Print(os.Stdout, "slipway-edge")
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "slipway-edge:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("slipway-edge", flag.ContinueOnError)
	buildinfo.Flag(fs)
	fs.StringVar(&o.id, "id", host, "edge id (its ack key is slipway/edges/<id>)")
	o.consul.RegisterFlags(fs)
	fs.StringVar(&o.mode, "mode", "proxy", "data plane: proxy (built-in) or nginx")
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "client HTTP listener")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:7420", "RouteService gRPC listener (edges, coordinators and clients with a Slipway certificate)")
	o.sec.RegisterFlags(fs)
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "Prometheus metrics at https://ADDR/metrics, requiring a client certificate from -tls-ca (slipctl tls cert create --role metrics); plain http:// only with -insecure (empty: off)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&o.accessLog, "access-log", false, "log every request (proxy: to the log; nginx: DIR/logs/access.log)")
	fs.StringVar(&o.nginxBinary, "nginx-binary", "/usr/sbin/nginx", "nginx executable (mode nginx)")
	fs.StringVar(&o.nginxDir, "nginx-dir", "/var/lib/slipway-edge/nginx", "nginx prefix directory (mode nginx)")
	fs.StringVar(&o.nginxControl, "nginx-control-addr", "127.0.0.1:7421", "nginx's loopback control endpoint (mode nginx)")
	fs.IntVar(&o.nginxWorkers, "nginx-workers", 2, "nginx worker_processes (mode nginx)")
	fs.BoolVar(&o.nginxExternal, "nginx-external", false, "drive an nginx master already running from -nginx-dir instead of starting one")
	fs.DurationVar(&o.nginxShutdown, "nginx-worker-shutdown-timeout", 30*time.Second, "nginx worker_shutdown_timeout: how long old workers may finish requests after a reload (mode nginx)")
	d := h1server.DefaultLimits
	fs.BoolVar(&o.lean, "http-lean", true, "serve the common HTTP/1.1 request on the lean path (false: net/http for everything; mode proxy)")
	fs.IntVar(&o.limits.MaxHeaderBytes, "http-max-header-bytes", d.MaxHeaderBytes, "largest request head (431 above)")
	fs.IntVar(&o.limits.MaxHeaderCount, "http-max-header-count", d.MaxHeaderCount, "most request header fields (431 above; mode proxy)")
	fs.Int64Var(&o.limits.MaxBodyBytes, "http-max-body-bytes", d.MaxBodyBytes, "largest request body (413 above)")
	fs.DurationVar(&o.limits.ReadHeaderTimeout, "http-read-header-timeout", d.ReadHeaderTimeout, "time a request head may take from its first byte")
	fs.DurationVar(&o.limits.ReadBodyTimeout, "http-read-body-timeout", d.ReadBodyTimeout, "longest wait for each read of a request body")
	fs.DurationVar(&o.limits.IdleTimeout, "http-idle-timeout", d.IdleTimeout, "how long a keep-alive connection may wait for its next request")
	fs.DurationVar(&o.limits.WriteTimeout, "http-write-timeout", d.WriteTimeout, "longest a write to a client may block (proxy: both paths, HTTP/2 and upgraded connections too; nginx: send_timeout)")
	fs.IntVar(&o.limits.MaxConns, "http-max-conns", d.MaxConns, "most open client connections (more wait in the listen backlog; mode proxy)")
	fs.IntVar(&o.limits.MaxRequestsPerClient, "http-max-requests-per-client", d.MaxRequestsPerClient, "most requests in flight from one client address (429 above; nginx: limit_conn)")
	fs.DurationVar(&o.connectTimeout, "upstream-connect-timeout", 2*time.Second, "time to connect to an instance before trying another (mode proxy)")
	fs.DurationVar(&o.coalesce, "coalesce", 20*time.Millisecond, "quiet window of a costly burst: once route tables have cost more than -coalesce-budget of the time, a change waits until no other came for this long (bounded by 10x, which is also the work a burst may spend at once)")
	fs.Float64Var(&o.coalesceBudget, "coalesce-budget", controller.DefaultBudget, "share of time (0-1] the edge may spend building and applying route tables before it coalesces Consul changes; cheaper changes are applied at once")
	fs.StringVar(&o.coordinators, "coordinators", "", "comma-separated coordinator gRPC addresses to report golden signals to (canary analysis); empty: none reported")
	fs.DurationVar(&o.signalsEvery, "signals-interval", time.Second, "how often golden signals are reported to the coordinators")
	fs.DurationVar(&o.sessionTTL, "session-ttl", 10*time.Second, "TTL of the Consul session holding the edge's ack")
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv("SLIPWAY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))); ok {
			fs.Set(f.Name, v)
		}
	})
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.id == "" {
		return o, errors.New("-id: required")
	}
	if err := o.sec.Validate(); err != nil {
		return o, err
	}
	if err := o.consul.Validate(); err != nil {
		return o, err
	}
	if o.signalsEvery <= 0 {
		return o, fmt.Errorf("-signals-interval %s: must be positive", o.signalsEvery)
	}
	if o.coalesceBudget <= 0 || o.coalesceBudget > 1 {
		return o, fmt.Errorf("-coalesce-budget %v: want a share of time in (0, 1]", o.coalesceBudget)
	}
	if o.coalesce <= 0 {
		return o, fmt.Errorf("-coalesce %v: want a positive duration", o.coalesce)
	}
	if o.connectTimeout <= 0 {
		return o, fmt.Errorf("-upstream-connect-timeout %v: want a positive duration", o.connectTimeout)
	}
	if o.mode != "proxy" && o.mode != "nginx" {
		return o, fmt.Errorf("-mode %q: want proxy or nginx", o.mode)
	}
	return o, nil
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
	logger = logger.With("edge", o.id)
	creds, err := rpc.NewCreds(o.sec, logger)
	if err != nil {
		return err
	}
	reg := telemetry.NewRegistry()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	client, err := o.consul.Client()
	if err != nil {
		return err
	}
	logger.Info("consul", "endpoint", o.consul.Endpoint())
	go func() {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if who, err := o.consul.CheckToken(tctx, client, "edge"); err != nil {
			logger.Warn("consul token", "err", err)
		} else {
			logger.Info("consul token", "as", who)
		}
	}()
	metrics, err := telemetry.ServeMetrics(o.metricsAddr, reg, creds, logger)
	if err != nil {
		return err
	}
	defer metrics.Close(context.Background())

	var wg sync.WaitGroup
	defer wg.Wait()

	// The ack outlives the data plane: it is withdrawn (session destroyed)
	// only after in-flight requests have drained, so no agent stops an
	// instance this edge is still sending a request to.
	acker := consul.NewAcker(client, o.id, o.sessionTTL, logger)
	ackCtx, ackCancel := context.WithCancel(context.Background())
	ackDone := make(chan struct{})
	go func() { acker.Run(ackCtx); close(ackDone) }()
	defer func() { ackCancel(); <-ackDone }()

	dpCtx, dpCancel := context.WithCancel(context.Background())
	defer dpCancel()

	var applier controller.Applier
	var counts signals.Source
	switch o.mode {
	case "proxy":
		tuneGC()
		counter := &signals.Counter{}
		counts = signals.CounterSource{Counter: counter}
		p := proxy.New(proxy.Config{Logger: logger, Registerer: reg, AccessLog: o.accessLog, Signals: counter, ConnectTimeout: o.connectTimeout})
		lis, err := rpc.Listen(o.httpAddr)
		if err != nil {
			return fmt.Errorf("http listen: %w", err)
		}
		srv := proxy.NewServer(p, o.lean, o.limits, logger)
		wg.Go(func() {
			if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("http server stopped", "err", err)
			}
		})
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			p.Close()
		}()
		applier = p
		logger.Info("built-in proxy listening", "addr", lis.Addr().String())
	case "nginx":
		r, err := nginx.New(nginx.Config{Binary: o.nginxBinary, Dir: o.nginxDir, Listen: o.httpAddr, ControlAddr: o.nginxControl,
			Workers: o.nginxWorkers, WorkerShutdownTimeout: o.nginxShutdown, External: o.nginxExternal, AccessLog: o.accessLog, Limits: o.limits, Logger: logger, Registerer: reg})
		if err != nil {
			return err
		}
		if err := r.Start(dpCtx); err != nil {
			return err
		}
		defer func() { dpCancel(); r.Wait() }()
		applier = r
		counts = r
	}

	if counts != nil {
		// The golden signals per release, both modes, for dashboards and
		// alerts (deployments/grafana, deployments/prometheus).
		if err := reg.Register(signals.NewCollector(counts)); err != nil {
			return fmt.Errorf("register signal metrics: %w", err)
		}
	}
	if o.coordinators != "" && counts != nil {
		send, err := signals.DialGRPC(strings.Split(o.coordinators, ","), creds)
		if err != nil {
			return err
		}
		defer send.Close()
		rep := &signals.Reporter{EdgeID: o.id, Source: counts, Send: send.Send, Interval: o.signalsEvery, Logger: logger}
		repCtx, repCancel := context.WithCancel(ctx)
		repDone := make(chan struct{})
		go func() { rep.Run(repCtx); close(repDone) }()
		defer func() { repCancel(); <-repDone }()
		logger.Info("reporting golden signals", "coordinators", o.coordinators, "every", o.signalsEvery)
	}

	routes := grpcapi.New()
	gs := rpc.NewServer(rpc.ServerConfig{Name: "edge", Logger: logger, Registerer: reg, Creds: creds, Access: grpcapi.Access})
	routes.Register(gs)
	glis, err := rpc.Listen(o.grpcAddr)
	if err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	wg.Go(func() {
		if err := gs.Serve(glis); err != nil {
			logger.Error("grpc server stopped", "err", err)
		}
	})
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gs.Shutdown(sctx)
	}()
	logger.Info("RouteService listening", "addr", glis.Addr().String())

	watcher := consul.NewWatcher(client, logger)
	ctl := controller.New(controller.Config{EdgeID: o.id, Source: watcher, Applier: applier, Publisher: acker,
		Observer: routes, Logger: logger, Registerer: reg, Quiet: o.coalesce, MaxDelay: 10 * o.coalesce, Budget: o.coalesceBudget})
	var loops sync.WaitGroup
	loops.Go(func() { watcher.Run(ctx) })
	loops.Go(func() { ctl.Run(ctx) })
	<-ctx.Done()
	logger.Info("shutting down")
	loops.Wait()
	return nil
}
