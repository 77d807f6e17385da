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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// ServerConfig configures a gRPC server.
type ServerConfig struct {
	// Name names the component in logs and metrics, e.g. "coordinator".
	Name string
	// Logger receives one line per call at debug level and failures at warn.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil means none.
	Registerer prometheus.Registerer
}

// Server is a gRPC server with the standard health service and reflection
// registered.
type Server struct {
	*grpc.Server
	health *health.Server
	logger *slog.Logger
}

// NewServer returns a server with logging, metrics and panic-recovery
// interceptors, reflection and the standard health service. Register the
// service implementations on it, then call Serve.
func NewServer(cfg ServerConfig) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	m := newServerMetrics(cfg.Name, cfg.Registerer)
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(unaryRecover(logger), unaryObserve(logger, m)),
		grpc.ChainStreamInterceptor(streamRecover(logger), streamObserve(logger, m)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return &Server{Server: gs, health: hs, logger: logger}
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
