// Package loadgen sends HTTP requests at a steady rate over a fixed set of
// keep-alive connections and counts every outcome, for zero-downtime tests.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config configures a run.
type Config struct {
	// URL is requested with GET.
	URL string
	// Host overrides the Host header.
	Host string
	// Header is added to every request.
	Header http.Header
	// Conns is the number of keep-alive connections (default 8).
	Conns int
	// Rate is the total requests per second (default 200).
	Rate int
	// CountHeader names a response header whose values are tallied
	// (default X-Slipway-Version).
	CountHeader string
}

// Result counts a run's outcomes.
type Result struct {
	Requests, OK, Non2xx, TransportErrors int64
	// ByValue tallies CountHeader over 2xx responses.
	ByValue map[string]int64
	// Errors holds the first few failures.
	Errors []string
	// Latencies are the 2xx latencies, sorted.
	Latencies []time.Duration
}

// Quantile returns the q-quantile (0..1) of the 2xx latencies.
func (r Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[max(0, int(math.Ceil(q*float64(len(r.Latencies))))-1)]
}

func (r Result) String() string {
	return fmt.Sprintf("requests=%d ok=%d non2xx=%d transport_errors=%d by=%v p50=%v p99=%v", r.Requests, r.OK, r.Non2xx,
		r.TransportErrors, r.ByValue, r.Quantile(0.5), r.Quantile(0.99))
}

// Run generates load until ctx is done and returns the counts.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Conns <= 0 {
		cfg.Conns = 8
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.CountHeader == "" {
		cfg.CountHeader = "X-Slipway-Version"
	}
	var mu sync.Mutex
	res := Result{ByValue: map[string]int64{}}
	interval := time.Duration(float64(time.Second) * float64(cfg.Conns) / float64(cfg.Rate))
	var wg sync.WaitGroup
	for i := 0; i < cfg.Conns; i++ {
		wg.Go(func() {
			tr := &http.Transport{
				MaxConnsPerHost:     1,
				MaxIdleConnsPerHost: 1,
				DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				status, value, took, err := one(client, cfg)
				if ctx.Err() != nil && err != nil {
					return // cut off by the end of the run, not a failure
				}
				mu.Lock()
				res.Requests++
				switch {
				case err != nil:
					res.TransportErrors++
					if len(res.Errors) < 10 {
						res.Errors = append(res.Errors, err.Error())
					}
				case status < 200 || status > 299:
					res.Non2xx++
					if len(res.Errors) < 10 {
						res.Errors = append(res.Errors, fmt.Sprintf("status %d", status))
					}
				default:
					res.OK++
					res.ByValue[value]++
					res.Latencies = append(res.Latencies, took)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(res.Latencies, func(i, j int) bool { return res.Latencies[i] < res.Latencies[j] })
	return res
}

func one(client *http.Client, cfg Config) (int, string, time.Duration, error) {
	req, err := http.NewRequest(http.MethodGet, cfg.URL, nil)
	if err != nil {
		return 0, "", 0, err
	}
	if cfg.Host != "" {
		req.Host = cfg.Host
	}
	for k, vs := range cfg.Header {
		req.Header[k] = vs
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, "", 0, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, strings.TrimSpace(resp.Header.Get(cfg.CountHeader)), time.Since(start), nil
}
