package rollout

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"slipway.dev/coordinator/analysis"

	"slipway.dev/platform/rpc"
	"slipway.dev/platform/spec"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// ErrInvalidSpec is returned (wrapped, naming the field) for a spec or
// update strategy the machine cannot run.
var ErrInvalidSpec = errors.New("rollout: invalid spec")

// Defaults applied by ConfigFromSpec and WithDefaults to unset fields: the
// update strategy's defaults are platform/spec's (the one table,
// spec.UpdateDefaults, also documented in the README); FlapTolerance is the
// machine's own (no spec field sets it).
const (
	DefaultMaxParallel      = int(spec.DefaultMaxParallel)
	DefaultMinHealthyTime   = spec.DefaultMinHealthyTime
	DefaultHealthyDeadline  = spec.DefaultHealthyDeadline
	DefaultProgressDeadline = spec.DefaultProgressDeadline
	DefaultFlapTolerance    = 10 * time.Second
	DefaultScaleDownDelay   = spec.DefaultScaleDownDelay
	DefaultPreviewHeader    = spec.DefaultPreviewHeader
)

// DefaultSteps are the canary steps used when a spec lists none
// (spec.DefaultCanarySteps).
func DefaultSteps() []CanaryStep {
	return stepsFromSpec(&deployv1.CanaryStrategy{Steps: spec.DefaultCanarySteps()})
}

// stepsFromSpec are a canary strategy's steps, each with the analysis that
// applies to it.
func stepsFromSpec(c *deployv1.CanaryStrategy) []CanaryStep {
	var out []CanaryStep
	for _, s := range c.GetSteps() {
		out = append(out, CanaryStep{Weight: int(s.GetWeight()), Pause: s.GetPause().AsDuration(), Manual: s.GetManual(),
			Analysis: AnalysisFromSpec(c.GetAnalysis(), s.GetAnalysis())})
	}
	return out
}

// ConfigFromSpec turns the API's update strategy (nil means all defaults)
// into a Config with defaults applied, and validates it.
func ConfigFromSpec(u *deployv1.UpdateStrategy) (Config, error) {
	if err := invalid(spec.ValidateUpdate(u)); err != nil {
		return Config{}, err
	}
	c := Config{
		Strategy:         u.GetStrategy(),
		MaxParallel:      int(u.GetMaxParallel()),
		MinHealthyTime:   u.GetMinHealthyTime().AsDuration(),
		HealthyDeadline:  u.GetHealthyDeadline().AsDuration(),
		ProgressDeadline: u.GetProgressDeadline().AsDuration(),
		AutoRevert:       u.GetAutoRevert(),
		AutoPromote:      u.GetAutoPromote(),
		ScaleDownDelay:   u.GetScaleDownDelay().AsDuration(),
		PreviewHeader:    u.GetBlueGreen().GetPreviewHeader(),
		Steps:            stepsFromSpec(u.GetCanary()),
		MaxSurge:         u.GetMaxSurge(),
		MaxUnavailable:   u.GetMaxUnavailable(),
		Stagger:          u.GetStagger().AsDuration(),
		Hooks:            hooksFromSpec(u.GetHooks()),
	}
	for _, h := range u.GetCanary().GetHeaderRoutes() {
		c.HeaderRoutes = append(c.HeaderRoutes, HeaderRoute{Header: h.GetHeader(), Cookie: h.GetCookie(), Value: h.GetValue()})
	}
	switch c.Strategy {
	case deployv1.Strategy_STRATEGY_BLUE_GREEN:
		c.Analysis = AnalysisFromSpec(nil, u.GetBlueGreen().GetAnalysis())
	case deployv1.Strategy_STRATEGY_CANARY:
	default:
		c.Analysis = AnalysisFromSpec(nil, u.GetRolling().GetAnalysis())
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// invalid is the first violation as an ErrInvalidSpec naming its field.
func invalid(vs []rpc.FieldViolation) error {
	if len(vs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s: %w", vs[0].Field, vs[0].Description, ErrInvalidSpec)
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Strategy == deployv1.Strategy_STRATEGY_UNSPECIFIED {
		c.Strategy = deployv1.Strategy_STRATEGY_ROLLING
	}
	if c.MaxParallel == 0 && !c.surgeMode() {
		c.MaxParallel = DefaultMaxParallel
	}
	if c.MinHealthyTime == 0 {
		c.MinHealthyTime = DefaultMinHealthyTime
	}
	if c.HealthyDeadline == 0 {
		c.HealthyDeadline = DefaultHealthyDeadline
	}
	if c.ProgressDeadline == 0 {
		c.ProgressDeadline = DefaultProgressDeadline
	}
	if c.FlapTolerance == 0 {
		c.FlapTolerance = DefaultFlapTolerance
	}
	if c.ScaleDownDelay == 0 {
		c.ScaleDownDelay = DefaultScaleDownDelay
	}
	if c.PreviewHeader == "" {
		c.PreviewHeader = DefaultPreviewHeader
	}
	if c.Strategy == deployv1.Strategy_STRATEGY_CANARY && len(c.Steps) == 0 {
		c.Steps = DefaultSteps()
	}
	for i, st := range c.Steps {
		if st.Analysis != nil {
			a := st.Analysis.WithDefaults()
			c.Steps[i].Analysis = &a
		}
	}
	if c.Analysis != nil {
		a := c.Analysis.WithDefaults()
		c.Analysis = &a
	}
	return c
}

// Validate checks a Config with defaults applied; the error names the
// offending field. The update strategy's rules are platform/spec's
// (spec.ValidateUpdate, the one validator, which spec validation uses at
// Deploy); the machine adds only its own: max_parallel at least 1 once
// defaulted, flap_tolerance not negative, and each step's analysis Config
// (with its defaults applied) valid.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("update.%s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidSpec)
	}
	if !c.surgeMode() && (c.MaxParallel < 1 || c.MaxParallel > math.MaxInt32) {
		return bad("max_parallel", "must be at least 1, got %d", c.MaxParallel)
	}
	if c.FlapTolerance < 0 {
		return bad("flap_tolerance", "must not be negative, got %s", c.FlapTolerance)
	}
	if err := invalid(spec.ValidateUpdate(c.proto())); err != nil {
		return err
	}
	for i, s := range c.Steps {
		if s.Analysis != nil {
			if err := s.Analysis.Validate(); err != nil {
				return bad(fmt.Sprintf("canary.steps[%d].analysis", i), "%v", err)
			}
		}
	}
	if a := c.Analysis; a != nil {
		field := "rolling.analysis"
		switch c.Strategy {
		case deployv1.Strategy_STRATEGY_BLUE_GREEN:
			field = "blue_green.analysis"
		case deployv1.Strategy_STRATEGY_CANARY:
			return bad("analysis", "a canary's analysis belongs to its steps (canary.analysis)")
		}
		if err := a.Validate(); err != nil {
			return bad(field, "%v", err)
		}
	}
	return nil
}

// surgeMode reports whether a rolling update runs by max_surge and
// max_unavailable rather than max_parallel batches.
func (c Config) surgeMode() bool { return c.MaxSurge != "" || c.MaxUnavailable != "" }

// Bounds are the rolling update's max_surge and max_unavailable resolved
// for count instances (spec.SurgeBounds); max_parallel N is max_surge N
// with max_unavailable 0.
func (c Config) Bounds(count int) (surge, unavailable int) {
	if s, u, ok := spec.SurgeBounds(c.MaxSurge, c.MaxUnavailable, count); ok {
		return s, u
	}
	return c.MaxParallel, 0
}

// ServingBound is the most instances of a service of count instances that
// may serve at once under c: count + max_surge (max_parallel) for a rolling
// update; twice the count for a canary or blue/green (the new release runs
// beside the old at up to full count by design). A rollout places nothing
// beyond it (strays included); package migrate moves allocations within
// it.
func (c Config) ServingBound(count int) int {
	if c.Strategy == deployv1.Strategy_STRATEGY_CANARY || c.Strategy == deployv1.Strategy_STRATEGY_BLUE_GREEN {
		return 2 * count
	}
	surge, _ := c.Bounds(count)
	return count + surge
}

// proto is c as the API's update strategy.
func (c Config) proto() *deployv1.UpdateStrategy {
	u := &deployv1.UpdateStrategy{
		Strategy: c.Strategy, MaxParallel: int32(c.MaxParallel),
		MinHealthyTime: durationpb.New(c.MinHealthyTime), HealthyDeadline: durationpb.New(c.HealthyDeadline),
		ProgressDeadline: durationpb.New(c.ProgressDeadline), ScaleDownDelay: durationpb.New(c.ScaleDownDelay),
		AutoRevert: c.AutoRevert, AutoPromote: c.AutoPromote,
		BlueGreen: &deployv1.BlueGreenStrategy{PreviewHeader: c.PreviewHeader},
		MaxSurge:  c.MaxSurge, MaxUnavailable: c.MaxUnavailable,
	}
	if c.Stagger != 0 {
		u.Stagger = durationpb.New(c.Stagger)
	}
	if len(c.Steps) > 0 || len(c.HeaderRoutes) > 0 {
		u.Canary = &deployv1.CanaryStrategy{}
		for _, h := range c.HeaderRoutes {
			u.Canary.HeaderRoutes = append(u.Canary.HeaderRoutes, &deployv1.HeaderRoute{Header: h.Header, Cookie: h.Cookie, Value: h.Value})
		}
		for _, s := range c.Steps {
			u.Canary.Steps = append(u.Canary.Steps, &deployv1.CanaryStep{Weight: int32(s.Weight), Pause: durationpb.New(s.Pause), Manual: s.Manual})
		}
	}
	return u
}

// hookPoints maps the API's hook types to points.
var hookPoints = map[deployv1.HookType]HookPoint{
	deployv1.HookType_HOOK_TYPE_PRE_ROLLOUT:       HookPreRollout,
	deployv1.HookType_HOOK_TYPE_ROLLOUT:           HookRollout,
	deployv1.HookType_HOOK_TYPE_CONFIRM_PROMOTION: HookConfirmPromotion,
	deployv1.HookType_HOOK_TYPE_POST_ROLLOUT:      HookPostRollout,
	deployv1.HookType_HOOK_TYPE_ROLLBACK:          HookRollback,
}

// hooksFromSpec converts validated hooks, with their defaults.
func hooksFromSpec(hs []*deployv1.Hook) []Hook {
	var out []Hook
	for _, h := range hs {
		hk := Hook{Name: h.GetName(), Point: hookPoints[h.GetType()], URL: h.GetUrl(), Timeout: h.GetTimeout().AsDuration(),
			Retries: int(h.GetRetries()), Interval: h.GetInterval().AsDuration()}
		if hk.Timeout == 0 {
			hk.Timeout = spec.DefaultHookTimeout
		}
		if hk.Interval == 0 {
			hk.Interval = spec.DefaultHookInterval
		}
		out = append(out, hk)
	}
	return out
}

// AnalysisFromSpec is the analysis of a canary step: the step's own
// (step), else the canary-level one (canary); nil when neither is set or the
// one that applies is disabled. Defaults are applied by WithDefaults.
func AnalysisFromSpec(canary, step *deployv1.Analysis) *analysis.Config {
	a := canary
	if step != nil {
		a = step
	}
	if a == nil || a.GetDisabled() {
		return nil
	}
	c := analysis.Config{
		Interval:     a.GetInterval().AsDuration(),
		MinRequests:  uint64(a.GetMinRequests()),
		FailureLimit: int(a.GetFailureLimit()),
		Confidence:   a.GetConfidence(),
	}
	switch a.GetNoData() {
	case deployv1.NoDataPolicy_NO_DATA_POLICY_FAIL:
		c.NoData = analysis.NoDataFail
	case deployv1.NoDataPolicy_NO_DATA_POLICY_PASS:
		c.NoData = analysis.NoDataPass
	default:
		c.NoData = analysis.NoDataHold
	}
	if sr := a.GetSuccessRate(); sr != nil {
		c.SuccessRateMin = sr.GetMin()
	}
	if l := a.GetLatencyP99(); l != nil {
		c.LatencyP99Max = l.GetMax().AsDuration()
	}
	if cmp := a.GetCompare(); cmp != nil {
		c.Compare = &analysis.Compare{MaxErrorRateIncrease: cmp.GetMaxErrorRateIncrease(), MaxLatencyRatio: cmp.GetMaxLatencyRatio(), Confidence: cmp.GetConfidence()}
	}
	for _, w := range a.GetWebhooks() {
		c.Webhooks = append(c.Webhooks, analysis.Webhook{Name: w.GetName(), URL: w.GetUrl(), Timeout: w.GetTimeout().AsDuration(), Retries: int(w.GetRetries())})
	}
	for _, q := range a.GetPrometheus() {
		pq := analysis.PromQuery{Name: q.GetName(), Address: q.GetAddress(), Query: q.GetQuery(), Timeout: q.GetTimeout().AsDuration()}
		if q.Min != nil {
			v := q.GetMin()
			pq.Min = &v
		}
		if q.Max != nil {
			v := q.GetMax()
			pq.Max = &v
		}
		c.Prometheus = append(c.Prometheus, pq)
	}
	c = c.WithDefaults()
	return &c
}

// New validates spec and returns the initial (pending) State of its rollout.
// The first Step starts it.
func New(spec Spec) (State, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidSpec)
	}
	switch {
	case spec.Service == "":
		return State{}, bad("service", "must not be empty")
	case spec.To == 0:
		return State{}, bad("to", "must not be zero")
	case spec.To == spec.From:
		return State{}, bad("to", "must differ from from (%d)", spec.From)
	case spec.Count < 0:
		return State{}, bad("count", "must not be negative, got %d", spec.Count)
	case spec.FromCount < 0:
		return State{}, bad("from_count", "must not be negative, got %d", spec.FromCount)
	}
	cfg := spec.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return State{}, err
	}
	s := State{
		Service:    spec.Service,
		From:       spec.From,
		To:         spec.To,
		FromCount:  spec.FromCount,
		Count:      spec.Count,
		Config:     cfg,
		Phase:      deployv1.RolloutState_ROLLOUT_STATE_PENDING,
		Stage:      StageDeploy,
		Generation: spec.Generation,
		Weights:    copyWeights(spec.Weights),
		Pins:       append([]Pin(nil), spec.Pins...),
	}
	if spec.FastRollback != "" && spec.From != 0 {
		s.FastRollback, s.Promoted = spec.FastRollback, true
	}
	for _, d := range spec.Draining {
		if d.ID == "" {
			return State{}, bad("draining", "an instance without an id")
		}
		s.PendingStops = append(s.PendingStops, PendingStop{ID: d.ID, Release: d.Release, Stray: true})
	}
	sort.Slice(s.PendingStops, func(i, j int) bool { return s.PendingStops[i].ID < s.PendingStops[j].ID })
	s.PendingStops = slices.CompactFunc(s.PendingStops, func(a, b PendingStop) bool { return a.ID == b.ID })
	return s, nil
}
