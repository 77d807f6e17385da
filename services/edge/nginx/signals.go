package nginx

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"slipway.dev/edge/signals"
	"slipway.dev/platform/latency"
)

// Interface guards.
var _ signals.Source = (*Runner)(nil)

// Snapshot reads the cumulative golden signals nginx counted per service
// and release (log_by_lua into the slipway_signals dictionary). The counts
// survive reloads; a restarted nginx starts from zero (signals.Delta treats
// a count that went down as a reset).
func (r *Runner) Snapshot(ctx context.Context) (map[signals.Key]signals.Totals, error) {
	body, err := r.get(ctx, "/signals")
	if err != nil {
		return nil, fmt.Errorf("nginx: read signals: %w", err)
	}
	return parseSignals(body)
}

// parseSignals parses "service TAB release TAB field TAB count" lines;
// field is n (requests), e (errors) or bN (latency bucket N).
func parseSignals(body string) (map[signals.Key]signals.Totals, error) {
	out := map[signals.Key]signals.Totals{}
	for i, line := range strings.Split(body, "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("nginx: signals line %d %q: want 4 fields", i+1, line)
		}
		rel, err1 := strconv.ParseUint(f[1], 10, 64)
		n, err2 := strconv.ParseFloat(f[3], 64) // lua numbers print as floats past 1e14
		if err1 != nil || err2 != nil || n < 0 {
			return nil, fmt.Errorf("nginx: signals line %d %q: bad release or count", i+1, line)
		}
		k := signals.Key{Service: f[0], Release: rel}
		t := out[k]
		switch field := f[2]; {
		case field == "n":
			t.Requests = uint64(n)
		case field == "e":
			t.Errors = uint64(n)
		case strings.HasPrefix(field, "b"):
			b, err := strconv.Atoi(field[1:])
			if err != nil || b < 0 || b >= latency.Buckets {
				return nil, fmt.Errorf("nginx: signals line %d %q: bad bucket", i+1, line)
			}
			t.Latency.AddN(b, uint64(n))
		default:
			return nil, fmt.Errorf("nginx: signals line %d %q: unknown field %q", i+1, line, field)
		}
		out[k] = t
	}
	return out, nil
}
