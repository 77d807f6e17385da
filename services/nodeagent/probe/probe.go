// Package probe runs an allocation's health check (HTTP GET or TCP connect)
// from the agent, so a fresh instance is registered once it already passes.
package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"slipway.dev/nodeagent/allocation"
)

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// Once runs the spec's check against address:port once.
func Once(ctx context.Context, s allocation.Spec, address string, port int) error {
	ctx, cancel := context.WithTimeout(ctx, s.CheckTimeout())
	defer cancel()
	target := net.JoinHostPort(address, strconv.Itoa(port))
	if s.Check.HTTP == "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return fmt.Errorf("probe: tcp %s: %w", target, err)
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+s.Check.HTTP, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe: GET %s: %w", req.URL, err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("probe: GET %s: status %d", req.URL, resp.StatusCode)
	}
	return nil
}

// Ready probes a fresh instance until the check passes, ctx ends or within
// passes: every fast while fastFor lasts, then every check interval (a
// start period can be minutes long). It returns the last error when it
// never passed.
func Ready(ctx context.Context, s allocation.Spec, address string, port int, fastFor, fast, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t0 := time.Now()
	for {
		err := Once(ctx, s, address, port)
		if err == nil {
			return nil
		}
		wait := fast
		if time.Since(t0) >= fastFor {
			wait = s.CheckInterval()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Until runs the check every interval until it passes, ctx ends or within
// passes; it returns the last error when it never passed.
func Until(ctx context.Context, s allocation.Spec, address string, port int, within, interval time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := Once(ctx, s, address, port)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}
