// Package prometheus asks a Prometheus server an analysis gate's PromQL
// query (an instant query at the window's end) and judges the number.
package prometheus

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"slipway.dev/coordinator/analysis"
)

// Vars are what a query's placeholders stand for.
type Vars struct {
	Service        string
	Canary, Stable uint64
}

// Expand replaces {{service}}, {{canary}} and {{stable}} in query.
func Expand(query string, v Vars) string {
	return strings.NewReplacer("{{service}}", v.Service, "{{canary}}", strconv.FormatUint(v.Canary, 10),
		"{{stable}}", strconv.FormatUint(v.Stable, 10)).Replace(query)
}

// Ask runs q at time at and returns its answer as a gate: it passes when the
// query returns exactly one number within [q.Min, q.Max].
func Ask(ctx context.Context, q analysis.PromQuery, v Vars, at time.Time) analysis.Gate {
	g := analysis.Gate{Kind: "prometheus", Name: q.Name}
	value, err := query(ctx, q, Expand(q.Query, v), at)
	if err != nil {
		g.Detail = err.Error()
		return g
	}
	switch {
	case q.Min != nil && value < *q.Min:
		g.Detail = fmt.Sprintf("%s = %g, below min %g", q.Query, value, *q.Min)
	case q.Max != nil && value > *q.Max:
		g.Detail = fmt.Sprintf("%s = %g, above max %g", q.Query, value, *q.Max)
	default:
		g.Passed = true
		g.Detail = fmt.Sprintf("%s = %g within bounds", q.Query, value)
	}
	return g
}

func query(ctx context.Context, q analysis.PromQuery, expr string, at time.Time) (float64, error) {
	client, err := api.NewClient(api.Config{Address: q.Address})
	if err != nil {
		return 0, fmt.Errorf("prometheus %s: %w", q.Address, err)
	}
	qctx, cancel := context.WithTimeout(ctx, q.Timeout)
	defer cancel()
	res, _, err := promv1.NewAPI(client).Query(qctx, expr, at)
	if err != nil {
		return 0, fmt.Errorf("query %s at %s: %w", expr, q.Address, err)
	}
	var f float64
	switch r := res.(type) {
	case *model.Scalar:
		f = float64(r.Value)
	case model.Vector:
		if len(r) != 1 {
			return 0, fmt.Errorf("query %s returned %d series, want one number", expr, len(r))
		}
		f = float64(r[0].Value)
	default:
		return 0, fmt.Errorf("query %s returned a %s, want one number", expr, res.Type())
	}
	if math.IsNaN(f) {
		return 0, fmt.Errorf("query %s returned NaN (no data)", expr)
	}
	return f, nil
}
