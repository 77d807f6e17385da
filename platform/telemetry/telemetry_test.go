package telemetry_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/telemetry"
	"slipway.dev/platform/testenv"
)

// serve starts a real metrics listener on a free port with creds and a
// registry holding one counter, slipway_test_scrapes_total.
func serve(t *testing.T, creds *rpc.Creds) *telemetry.MetricsServer {
	t.Helper()
	reg := telemetry.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "slipway_test_scrapes_total", Help: "test"})
	c.Add(3)
	reg.MustRegister(c)
	ms, err := telemetry.ServeMetrics("127.0.0.1:0", reg, creds, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ms.Close(ctx)
	})
	return ms
}

// get fetches url with client and returns the body of a 200 answer.
func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), &statusError{resp.StatusCode}
	}
	return string(b), nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

const want = "slipway_test_scrapes_total 3"

func TestMetricsRequireAClientCertificateFromTheCA(t *testing.T) {
	p := testenv.NewPKI(t)
	ms := serve(t, p.Creds(t, pki.RoleCoordinator, "c1"))
	if !strings.HasPrefix(ms.URL(), "https://") {
		t.Fatalf("URL = %s, want https", ms.URL())
	}

	for _, role := range []pki.Role{pki.RoleMetrics, pki.RoleClient} {
		body, err := get(telemetry.ScrapeClient(p.Creds(t, role, "scraper"), 5*time.Second), ms.URL())
		if err != nil || !strings.Contains(body, want) {
			t.Fatalf("%s certificate from the CA: got %v, body %.200q; want the metrics", role, err, body)
		}
	}

	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	if body, err := get(noCert, ms.URL()); err == nil || strings.Contains(body, want) {
		t.Fatalf("TLS client without a certificate: got %v, body %.200q; want the handshake refused", err, body)
	}

	other := testenv.NewPKI(t)
	if body, err := get(telemetry.ScrapeClient(other.Creds(t, pki.RoleMetrics, "scraper"), 5*time.Second), ms.URL()); err == nil || strings.Contains(body, want) {
		t.Fatalf("certificate from another CA: got %v, body %.200q; want refused", err, body)
	}
	// The same certificate, trusting the server's CA, so only the server's
	// check of the client certificate refuses it.
	otherFiles := other.Files(t, pki.RoleMetrics, "scraper")
	cert, err := tls.LoadX509KeyPair(otherFiles.Cert, otherFiles.Key)
	if err != nil {
		t.Fatal(err)
	}
	foreign := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}}}
	if body, err := get(foreign, ms.URL()); err == nil || strings.Contains(body, want) {
		t.Fatalf("client certificate from another CA (server trusted): got %v, body %.200q; want the handshake refused", err, body)
	}

	plain := "http://" + ms.Addr() + "/metrics"
	if body, err := get(&http.Client{Timeout: 5 * time.Second}, plain); err == nil || strings.Contains(body, want) {
		t.Fatalf("plain HTTP to the TLS listener: got %v, body %.200q; want refused", err, body)
	}
}

func TestScrapeClientRefusesAServerFromAnotherCA(t *testing.T) {
	ms := serve(t, testenv.NewPKI(t).Creds(t, pki.RoleEdge, "e1"))
	client := testenv.NewPKI(t).MetricsClient(t)
	if body, err := get(client, ms.URL()); err == nil || strings.Contains(body, want) {
		t.Fatalf("server from another CA: got %v, body %.200q; want refused", err, body)
	}
}

func TestInsecureMetricsArePlainHTTP(t *testing.T) {
	ms := serve(t, rpc.InsecureCreds())
	if !strings.HasPrefix(ms.URL(), "http://") {
		t.Fatalf("URL = %s, want http", ms.URL())
	}
	body, err := get(telemetry.ScrapeClient(rpc.InsecureCreds(), 5*time.Second), ms.URL())
	if err != nil || !strings.Contains(body, want) {
		t.Fatalf("plain HTTP with -insecure: got %v, body %.200q; want the metrics", err, body)
	}
}

func TestServeMetricsConfigErrors(t *testing.T) {
	reg := telemetry.NewRegistry()
	if _, err := telemetry.ServeMetrics("127.0.0.1:0", reg, nil, nil); err == nil || !strings.Contains(err.Error(), "-tls-ca") {
		t.Fatalf("no credentials: got %v, want an error naming the TLS flags", err)
	}
	ms, err := telemetry.ServeMetrics("", reg, nil, nil)
	if ms != nil || err != nil {
		t.Fatalf("empty addr: got %v, %v; want nothing served", ms, err)
	}
	if _, err := telemetry.ServeMetrics("256.0.0.1:bad", reg, rpc.InsecureCreds(), nil); err == nil || !strings.Contains(err.Error(), "metrics listen") {
		t.Fatalf("bad address: got %v, want a listen error", err)
	}
}
