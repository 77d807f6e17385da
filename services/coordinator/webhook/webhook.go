// Package webhook asks analysis webhooks over HTTP: it POSTs a window's
// context as JSON and reads a 2xx answer as a pass.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"slipway.dev/coordinator/analysis"
)

// Context is the JSON body a webhook receives.
type Context struct {
	Rollout       string    `json:"rollout"`
	Service       string    `json:"service"`
	CanaryRelease uint64    `json:"canary_release"`
	StableRelease uint64    `json:"stable_release"`
	Step          int       `json:"step"`
	Weight        int       `json:"weight"`
	WindowStart   time.Time `json:"window_start"`
	WindowEnd     time.Time `json:"window_end"`
	Canary        Signals   `json:"canary"`
	Stable        Signals   `json:"stable"`
}

// Signals are one release's window as the webhook sees it.
type Signals struct {
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
}

// SignalsOf summarises a sample for the body.
func SignalsOf(s analysis.Sample) Signals {
	sum := analysis.Summarize(s)
	return Signals{Requests: sum.Requests, Errors: sum.Errors, ErrorRate: sum.ErrorRate,
		P50Ms: float64(sum.P50) / float64(time.Millisecond), P99Ms: float64(sum.P99) / float64(time.Millisecond)}
}

// Ask POSTs body to the webhook, retrying up to h.Retries times after a
// failed attempt (a transport error, a timeout or a non-2xx status), each
// attempt bounded by h.Timeout, and returns its answer as a gate.
func Ask(ctx context.Context, client *http.Client, h analysis.Webhook, body Context) analysis.Gate {
	return Post(ctx, client, h, body)
}

// HookContext is the JSON body a rollout hook receives.
type HookContext struct {
	// Hook is the hook's name and Type its point (pre_rollout, rollout,
	// confirm_promotion, post_rollout, rollback).
	Hook string `json:"hook"`
	Type string `json:"type"`
	// Rollout and Service name the rollout.
	Rollout string `json:"rollout"`
	Service string `json:"service"`
	// CanaryRelease is the release rolled out, StableRelease the one it
	// replaces (zero for a first deploy).
	CanaryRelease uint64 `json:"canary_release"`
	StableRelease uint64 `json:"stable_release"`
	// Step is the rollout's step (from one), Weight the new release's
	// traffic percentage, Phase the rollout's state.
	Step   int    `json:"step"`
	Weight int    `json:"weight"`
	Phase  string `json:"phase"`
}

// Post POSTs body as JSON to the webhook, retrying up to h.Retries times
// after a failed attempt (a transport error, a timeout or a non-2xx
// status), each attempt bounded by h.Timeout, and returns its answer as a
// gate (passed on a 2xx answer).
func Post(ctx context.Context, client *http.Client, h analysis.Webhook, body any) analysis.Gate {
	g := analysis.Gate{Kind: "webhook", Name: h.Name}
	raw, err := json.Marshal(body)
	if err != nil {
		g.Detail = "encode the context: " + err.Error()
		return g
	}
	var last string
	attempts := 0
	for attempts <= h.Retries {
		attempts++
		status, err := post(ctx, client, h, raw)
		switch {
		case err != nil:
			last = err.Error()
		case status/100 == 2:
			g.Passed = true
			g.Detail = fmt.Sprintf("POST %s answered %d", h.URL, status)
			if attempts > 1 {
				g.Detail += fmt.Sprintf(" (attempt %d)", attempts)
			}
			return g
		default:
			last = fmt.Sprintf("answered %d", status)
		}
		if ctx.Err() != nil {
			break
		}
	}
	g.Detail = fmt.Sprintf("POST %s %s (%d attempts)", h.URL, last, attempts)
	return g
}

func post(ctx context.Context, client *http.Client, h analysis.Webhook, raw []byte) (int, error) {
	actx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.URL, bytes.NewReader(raw))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "slipway-coordinator analysis")
	resp, err := client.Do(req)
	if err != nil {
		if actx.Err() == context.DeadlineExceeded {
			return 0, fmt.Errorf("timed out after %s", h.Timeout)
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
