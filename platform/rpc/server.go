// Package rpc builds every Slipway gRPC server and client in one place, so
// that credentials, interceptors, reflection, health and metrics are the same
// on every link.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/pki"
)

// ServerConfig configures a gRPC server.
type ServerConfig struct {
	// Name names the component in logs and metrics, e.g. "coordinator".
	Name string
	// Logger receives one line per call at debug level and failures at warn.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil means none.
	Registerer prometheus.Registerer
	// Creds are the server's transport credentials (NewCreds); required.
	Creds *Creds
	// Access names, per gRPC service (e.g. "slipway.agent.v1.NodeAgentService"),
	// the certificate roles allowed to call it. A service not listed is
	// refused to everyone (default deny); health and reflection are open to
	// every authenticated peer. Not checked on insecure credentials.
	Access map[string][]pki.Role
	// UnaryInterceptors and StreamInterceptors run after the built-in ones
	// (recovery, metrics and logs, the role check), e.g. token checks.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
}

// Server is a gRPC server with the standard health service and reflection
// registered.
type Server struct {
	*grpc.Server
	health   *health.Server
	logger   *slog.Logger
	stopWarn chan struct{}
	warnOnce sync.Once
}

// NewServer returns a server with logging, metrics and panic-recovery
// interceptors, mutual TLS with a per-service role check (cfg.Access),
// reflection and the standard health service. Register the service
// implementations on it, then call Serve. Insecure credentials are logged as
// a warning at start and every minute until Shutdown.
func NewServer(cfg ServerConfig) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Creds == nil {
		panic("rpc: ServerConfig.Creds is required (NewCreds or InsecureCreds)")
	}
	m := newServerMetrics(cfg.Name, cfg.Registerer)
	unary := []grpc.UnaryServerInterceptor{unaryRecover(logger), unaryObserve(logger, m)}
	stream := []grpc.StreamServerInterceptor{streamRecover(logger), streamObserve(logger, m)}
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(MaxMsgSize),
		grpc.MaxSendMsgSize(MaxMsgSize),
	}
	if !cfg.Creds.Insecure() {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.Creds.ServerTLS())))
		acc := newAccess(cfg.Access)
		unary = append(unary, acc.unary)
		stream = append(stream, acc.stream)
	}
	unary = append(unary, cfg.UnaryInterceptors...)
	stream = append(stream, cfg.StreamInterceptors...)
	opts = append(opts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))
	gs := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	s := &Server{Server: gs, health: hs, logger: logger, stopWarn: make(chan struct{})}
	if cfg.Creds.Insecure() {
		go warnInsecure(logger, cfg.Name, s.stopWarn)
	}
	return s
}

// warnInsecure logs that the server runs plaintext, now and every minute.
func warnInsecure(logger *slog.Logger, name string, stop <-chan struct{}) {
	const msg = "INSECURE: gRPC is plaintext with no peer authentication (-insecure); anyone who reaches this port can call it"
	logger.Warn(msg, "component", name)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			logger.Warn(msg, "component", name)
		}
	}
}

// SetServing marks the named service (empty for the whole server) serving or
// not serving in the health service.
func (s *Server) SetServing(service string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(service, st)
}

// Shutdown marks every service not serving, then stops gracefully, forcing
// the stop when ctx ends first.
func (s *Server) Shutdown(ctx context.Context) {
	s.warnOnce.Do(func() { close(s.stopWarn) })
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
	}
}

// Listen opens a TCP listener on addr with a clear error.
func Listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: listen on %s: %w", addr, err)
	}
	return lis, nil
}

type serverMetrics struct {
	handled *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newServerMetrics(name string, reg prometheus.Registerer) *serverMetrics {
	m := &serverMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   "slipway",
			Name:        "grpc_server_handled_total",
			Help:        "gRPC calls completed by the server, by method and code.",
			ConstLabels: prometheus.Labels{"component": name},
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   "slipway",
			Name:        "grpc_server_handling_seconds",
			Help:        "Time to handle a gRPC call (for streams: the stream's life).",
			ConstLabels: prometheus.Labels{"component": name},
			Buckets:     prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.handled, m.latency} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					panic(fmt.Sprintf("rpc: register metrics: %v", err))
				}
			}
		}
	}
	return m
}

func (m *serverMetrics) observe(method string, start time.Time, err error) {
	m.handled.WithLabelValues(method, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

func logCall(logger *slog.Logger, method string, start time.Time, err error) {
	code := status.Code(err)
	switch code {
	case codes.OK, codes.Canceled, codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists:
		logger.Debug("rpc", "method", method, "code", code.String(), "took", time.Since(start))
	default:
		logger.Warn("rpc failed", "method", method, "code", code.String(), "took", time.Since(start), "err", err)
	}
}

func unaryObserve(logger *slog.Logger, m *serverMetrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		m.observe(info.FullMethod, start, err)
		logCall(logger, info.FullMethod, start, err)
		return resp, err
	}
}

func streamObserve(logger *slog.Logger, m *serverMetrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		m.observe(info.FullMethod, start, err)
		logCall(logger, info.FullMethod, start, err)
		return err
	}
}

func unaryRecover(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				logger.Error("panic in rpc handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return handler(ctx, req)
	}
}

func streamRecover(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				logger.Error("panic in rpc handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return handler(srv, ss)
	}
}
