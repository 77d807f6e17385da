// Package controller drives the edge: it turns input changes into a route
// table, applies it to the data plane, then acknowledges it (the route
// barrier) and tells route watchers.
package controller

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/edge/routetable"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// Source provides the inputs and signals their changes.
type Source interface {
	Changes() <-chan struct{}
	Ready() <-chan struct{}
	Snapshot() routetable.Input
}

// Applier puts a table into effect; it returns only once requests are
// routed by it.
type Applier interface {
	Apply(ctx context.Context, t routetable.Table) error
}

// Publisher stores the edge's acknowledgement.
type Publisher interface {
	Publish(ctx context.Context, ack *edgev1.EdgeAck) error
}

// Observer is told of each applied table.
type Observer interface {
	Applied(generation uint64, t routetable.Table, d routetable.Diff)
}

// Config configures a Controller.
type Config struct {
	EdgeID    string
	Source    Source
	Applier   Applier
	Publisher Publisher
	Observer  Observer // optional
	Logger    *slog.Logger
	// Registerer receives the controller's metrics; optional.
	Registerer prometheus.Registerer
	// Coalescing is adaptive, by what tables cost: a change is applied at
	// once while building and applying tables has taken at most Budget
	// (default 0.2) of the time, on average, with a reserve of MaxDelay's
	// worth of that work for a burst. Beyond that (a burst of
	// changes whose tables cost more than the budget) a change waits until
	// no further change came for Quiet (default 20ms), at most MaxDelay
	// (default 200ms). Cheap tables are never held back, however close
	// together their changes come.
	Quiet, MaxDelay time.Duration
	Budget          float64
	// Now is the clock that measures what tables cost (default time.Now).
	Now func() time.Time
}

// Controller is the edge's control loop.
type Controller struct {
	cfg      Config
	table    routetable.Table
	gen      uint64
	problems map[string]string // service -> last reported reason

	mProblems *prometheus.CounterVec
	mDegraded *prometheus.GaugeVec
	mApplied  prometheus.Counter
	mFailed   *prometheus.CounterVec
}

// New returns a controller.
func New(cfg Config) *Controller {
	if cfg.Quiet == 0 {
		cfg.Quiet = 20 * time.Millisecond
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = 200 * time.Millisecond
	}
	if cfg.Budget <= 0 || cfg.Budget > 1 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Controller{
		cfg:      cfg,
		table:    routetable.Table{Routes: map[string]routetable.Route{}},
		problems: map[string]string{},
		mProblems: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "edge", Name: "route_rejections_total",
			Help: "New routes rejected (last good kept), by service and kind."}, []string{"service", "kind"}),
		mDegraded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slipway", Subsystem: "edge", Name: "route_degraded",
			Help: "1 when a service keeps its last good routes."}, []string{"service"}),
		mApplied: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "edge", Name: "tables_applied_total",
			Help: "Route tables applied."}),
		mFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "slipway", Subsystem: "edge", Name: "failures_total",
			Help: "Failures to apply or acknowledge a table, by stage."}, []string{"stage"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.mProblems, c.mDegraded, c.mApplied, c.mFailed)
	}
	return c
}

// Run loops until ctx is done.
func (c *Controller) Run(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-c.cfg.Source.Ready():
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	needAck := false
	first := true
	gate := newCostGate(c.cfg.Budget, c.cfg.MaxDelay)
	for {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-c.cfg.Source.Changes():
				if !gate.immediate(c.cfg.Now()) {
					c.coalesce(ctx)
				}
			case <-retry.C:
			}
		}
		first = false
		ok := c.step(ctx, &needAck, gate)
		if !ok {
			retry.Reset(time.Second)
		}
	}
}

// DefaultBudget is the share of time the controller may spend building and
// applying route tables before it coalesces changes.
const DefaultBudget = 0.2

// costGate tells a change to apply at once from one that is part of a
// costly burst: a token bucket (golang.org/x/time/rate) of work time, one
// token a microsecond, refilled at budget microseconds a microsecond up to a
// reserve of quiet's worth of work, on the caller's clock. Each table built
// spends what it cost; a change is built at once while tokens are left.
type costGate struct{ l *rate.Limiter }

func newCostGate(budget float64, reserve time.Duration) costGate {
	return costGate{l: rate.NewLimiter(rate.Limit(budget*1e6), max(1, int(reserve/time.Microsecond)))}
}

// immediate reports whether a change seen at now is built at once rather
// than coalesced.
func (g costGate) immediate(now time.Time) bool { return g.l.TokensAt(now) > 0 }

// spent records that building and applying a table took cost, ending at
// now. A table costlier than the whole reserve empties it.
func (g costGate) spent(now time.Time, cost time.Duration) {
	n := min(max(0, int(cost/time.Microsecond)), g.l.Burst())
	g.l.ReserveN(now, n)
}

func (c *Controller) coalesce(ctx context.Context) {
	deadline := time.NewTimer(c.cfg.MaxDelay)
	defer deadline.Stop()
	for {
		quiet := time.NewTimer(c.cfg.Quiet)
		select {
		case <-ctx.Done():
			quiet.Stop()
			return
		case <-deadline.C:
			quiet.Stop()
			return
		case <-quiet.C:
			return
		case <-c.cfg.Source.Changes():
			quiet.Stop()
		}
	}
}

// step builds, applies and acknowledges; false means retry later. What the
// build and apply cost is spent from gate.
func (c *Controller) step(ctx context.Context, needAck *bool, gate costGate) bool {
	began := c.cfg.Now()
	next, problems := routetable.Build(c.table, c.cfg.Source.Snapshot())
	c.report(problems)
	d := routetable.Compare(c.table, next)
	if !d.Empty() || c.gen == 0 {
		err := c.cfg.Applier.Apply(ctx, next)
		end := c.cfg.Now()
		gate.spent(end, end.Sub(began))
		if err != nil {
			c.mFailed.WithLabelValues("apply").Inc()
			c.cfg.Logger.Error("apply route table failed; keeping the last good one", "err", err)
			return false
		}
		c.table = next
		c.gen++
		c.mApplied.Inc()
		c.cfg.Logger.Info("route table applied", "generation", c.gen, "upserted", len(d.Upserted), "removed", len(d.Removed))
		if c.cfg.Observer != nil {
			c.cfg.Observer.Applied(c.gen, next, d)
		}
		*needAck = true
	} else {
		end := c.cfg.Now()
		gate.spent(end, end.Sub(began))
	}
	if !*needAck || c.cfg.Publisher == nil {
		return true
	}
	if err := c.cfg.Publisher.Publish(ctx, Ack(c.cfg.EdgeID, c.table)); err != nil {
		c.mFailed.WithLabelValues("ack").Inc()
		c.cfg.Logger.Error("publish edge ack failed", "err", err)
		return false
	}
	*needAck = false
	return true
}

func (c *Controller) report(problems []routetable.Problem) {
	seen := map[string]bool{}
	for _, p := range problems {
		seen[p.Service] = true
		c.mDegraded.WithLabelValues(p.Service).Set(1)
		if c.problems[p.Service] == p.Reason {
			continue
		}
		c.problems[p.Service] = p.Reason
		c.mProblems.WithLabelValues(p.Service, p.Kind).Inc()
		c.cfg.Logger.Warn("routes not updated; keeping last good routes", "service", p.Service, "kind", p.Kind, "reason", p.Reason)
	}
	for svc := range c.problems {
		if !seen[svc] {
			delete(c.problems, svc)
			c.mDegraded.WithLabelValues(svc).Set(0)
			c.cfg.Logger.Info("routes healthy again", "service", svc)
		}
	}
}

// Ack is the acknowledgement of table t: per service, the intent generation
// routed and the instances routed to.
func Ack(edgeID string, t routetable.Table) *edgev1.EdgeAck {
	ack := &edgev1.EdgeAck{EdgeId: edgeID, Generations: map[string]uint64{}, Instances: map[string]*edgev1.InstanceList{}, At: timestamppb.Now()}
	for svc, r := range t.Routes {
		ack.Generations[svc] = r.Generation
		ack.Instances[svc] = &edgev1.InstanceList{Ids: r.InstanceIDs()}
	}
	return ack
}
