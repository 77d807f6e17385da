// Package traffic sends continuous HTTP requests through the edge and
// records, for each, which release answered (the X-Slipway-Version header)
// or why it failed.
package traffic

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"slipway.dev/guide/summary"
)

// VersionHeader is the response header naming the release that answered.
const VersionHeader = "X-Slipway-Version"

// Config says where and how fast to send.
type Config struct {
	// URL is the edge's address, e.g. http://127.0.0.1:8080/.
	URL string
	// Host is the Host header (the spec's route host).
	Host string
	// Rate is requests per second across all workers (> 0).
	Rate int
	// Workers is how many requests may be in flight at once (> 0).
	Workers int
	// Timeout bounds each request.
	Timeout time.Duration
	// Header adds request headers (e.g. a preview pin), optional.
	Header http.Header
}

// Generator sends requests until stopped and keeps every sample.
type Generator struct {
	cfg    Config
	client *http.Client
	start  time.Time

	mu      sync.Mutex
	samples []summary.Sample

	cancel context.CancelFunc
	done   chan struct{}
}

// Once sends one request and returns its sample (At is zero).
func Once(ctx context.Context, client *http.Client, cfg Config) summary.Sample {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return summary.Sample{Err: err.Error()}
	}
	req.Host = cfg.Host
	for k, vs := range cfg.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return summary.Sample{Err: err.Error()}
	}
	defer resp.Body.Close()
	_, rerr := io.Copy(io.Discard, resp.Body)
	switch {
	case resp.StatusCode/100 != 2:
		// The release that answered, when it says (the demo does on 500).
		return summary.Sample{Version: resp.Header.Get(VersionHeader), Err: fmt.Sprintf("HTTP %d", resp.StatusCode)}
	case rerr != nil:
		return summary.Sample{Err: "reading body: " + rerr.Error()}
	}
	v := resp.Header.Get(VersionHeader)
	if v == "" {
		v = "?"
	}
	return summary.Sample{Version: v}
}

// NewClient returns an HTTP client keeping enough idle connections for the
// workers.
func NewClient(workers int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        workers * 2,
			MaxIdleConnsPerHost: workers * 2,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// Start begins sending; offsets in samples are measured from start.
func Start(cfg Config, start time.Time) (*Generator, error) {
	switch {
	case cfg.URL == "":
		return nil, fmt.Errorf("traffic: url is empty")
	case cfg.Rate <= 0:
		return nil, fmt.Errorf("traffic: rate must be > 0, got %d", cfg.Rate)
	case cfg.Workers <= 0:
		return nil, fmt.Errorf("traffic: workers must be > 0, got %d", cfg.Workers)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Generator{cfg: cfg, client: NewClient(cfg.Workers, cfg.Timeout), start: start, cancel: cancel, done: make(chan struct{})}
	tokens := make(chan struct{}, cfg.Workers)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tokens:
				}
				// A request in flight when stopping is finished, not
				// cancelled: cancelling it would count as a failure the
				// system did not cause.
				s := Once(context.Background(), g.client, cfg)
				s.At = time.Since(g.start)
				g.mu.Lock()
				g.samples = append(g.samples, s)
				g.mu.Unlock()
			}
		}()
	}
	go func() {
		defer close(g.done)
		t := time.NewTicker(time.Second / time.Duration(cfg.Rate))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case <-t.C:
				select {
				case tokens <- struct{}{}:
				default: // every worker busy: skip rather than queue
				}
			}
		}
	}()
	return g, nil
}

// Stop stops sending, waits for requests in flight and returns every sample.
func (g *Generator) Stop() []summary.Sample {
	g.cancel()
	<-g.done
	g.client.CloseIdleConnections()
	return g.Samples()
}

// Samples returns a copy of the samples so far.
func (g *Generator) Samples() []summary.Sample {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]summary.Sample(nil), g.samples...)
}

// Counts returns how many requests were sent and how many failed so far.
func (g *Generator) Counts() (sent, failed int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.samples {
		if !s.OK() {
			failed++
		}
	}
	return len(g.samples), failed
}
