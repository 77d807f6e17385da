// Package telemetry sets up structured logs and the Prometheus metrics
// endpoint that every Slipway service exposes.
package telemetry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"slipway.dev/platform/rpc"
)

// NewLogger returns a slog logger writing to w at the named level ("debug",
// "info", "warn", "error") in the named format ("text" or "json").
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("telemetry: log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("telemetry: log format %q: want text or json", format)
	}
}

// NewRegistry returns a Prometheus registry with the Go and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsServer serves /metrics for a registry.
type MetricsServer struct {
	srv    *http.Server
	lis    net.Listener
	scheme string
}

// ServeMetrics starts serving reg at /metrics on addr, secured like every
// other Slipway link by creds: with TLS credentials it serves HTTPS with the
// component's own certificate and requires a client certificate signed by
// the Slipway CA (any role; pki.RoleMetrics is the one made for scrapers),
// refusing other clients in the handshake; with insecure credentials (the
// component's -insecure) it serves plain HTTP with no authentication,
// logged as a warning. An empty addr returns nil and serves nothing; nil
// creds are an error.
func ServeMetrics(addr string, reg *prometheus.Registry, creds *rpc.Creds, logger *slog.Logger) (*MetricsServer, error) {
	if addr == "" {
		return nil, nil
	}
	if creds == nil {
		return nil, fmt.Errorf("telemetry: metrics on %s: no credentials: start the component with -tls-ca, -tls-cert and -tls-key (or -insecure for plaintext)", addr)
	}
	if logger == nil {
		logger = slog.Default()
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry: metrics listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		// Refused handshakes (no client certificate, another CA) land here.
		ErrorLog: slog.NewLogLogger(logger.With("listener", "metrics").Handler(), slog.LevelWarn)}
	m := &MetricsServer{srv: srv, lis: lis, scheme: "https"}
	if creds.Insecure() {
		m.scheme = "http"
		logger.Warn("metrics served as plaintext HTTP without authentication (-insecure)", "addr", lis.Addr().String())
	} else {
		m.lis = tls.NewListener(lis, creds.ServerTLS())
	}
	go func() {
		if err := srv.Serve(m.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "err", err)
		}
	}()
	return m, nil
}

// ScrapeClient is an HTTP client that scrapes a ServeMetrics listener
// secured by the same CA as creds, presenting creds' certificate (a
// scraper's is of role pki.RoleMetrics) and accepting only a server certificate from
// that CA, whatever its host name. With insecure creds it is a plain HTTP
// client. timeout bounds each request (0: none).
func ScrapeClient(creds *rpc.Creds, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if !creds.Insecure() {
		tr.TLSClientConfig = creds.ClientTLS(rpc.Expect{})
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Addr is the address the metrics server listens on.
func (m *MetricsServer) Addr() string {
	if m == nil {
		return ""
	}
	return m.lis.Addr().String()
}

// URL is the metrics endpoint's URL: https://ADDR/metrics, or http:// when
// insecure.
func (m *MetricsServer) URL() string {
	if m == nil {
		return ""
	}
	return m.scheme + "://" + m.Addr() + "/metrics"
}

// Close stops the metrics server.
func (m *MetricsServer) Close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	return m.srv.Shutdown(ctx)
}
