package rollout

import (
	"errors"
	"fmt"
	"time"

	"slipway.dev/coordinator/analysis"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// ErrInvalidSpec is returned (wrapped, naming the field) for a spec or
// update strategy the machine cannot run.
var ErrInvalidSpec = errors.New("rollout: invalid spec")

// Defaults applied by ConfigFromSpec to unset fields.
const (
	DefaultMaxParallel      = 1
	DefaultMinHealthyTime   = 3 * time.Second
	DefaultHealthyDeadline  = 60 * time.Second
	DefaultProgressDeadline = 5 * time.Minute
	DefaultFlapTolerance    = 10 * time.Second
	DefaultScaleDownDelay   = 30 * time.Second
	DefaultPreviewHeader    = "X-Slipway-Preview"
)

// DefaultSteps are the canary steps used when a spec lists none.
func DefaultSteps() []CanaryStep {
	return []CanaryStep{
		{Weight: 10, Pause: 30 * time.Second},
		{Weight: 50, Pause: 30 * time.Second},
		{Weight: 100},
	}
}

// ConfigFromSpec turns the API's update strategy (nil means all defaults)
// into a Config with defaults applied, and validates it.
func ConfigFromSpec(u *deployv1.UpdateStrategy) (Config, error) {
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
	}
	for _, s := range u.GetCanary().GetSteps() {
		c.Steps = append(c.Steps, CanaryStep{Weight: int(s.GetWeight()), Pause: s.GetPause().AsDuration(), Manual: s.GetManual(),
			Analysis: AnalysisFromSpec(u.GetCanary().GetAnalysis(), s.GetAnalysis())})
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Strategy == deployv1.Strategy_STRATEGY_UNSPECIFIED {
		c.Strategy = deployv1.Strategy_STRATEGY_ROLLING
	}
	if c.MaxParallel == 0 {
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
	return c
}

// Validate checks a Config with defaults applied; the error names the
// offending field.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("update.%s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidSpec)
	}
	switch c.Strategy {
	case deployv1.Strategy_STRATEGY_ROLLING, deployv1.Strategy_STRATEGY_BLUE_GREEN, deployv1.Strategy_STRATEGY_CANARY:
	default:
		return bad("strategy", "unknown strategy %d", c.Strategy)
	}
	if c.MaxParallel < 1 {
		return bad("max_parallel", "must be at least 1, got %d", c.MaxParallel)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"min_healthy_time", c.MinHealthyTime},
		{"healthy_deadline", c.HealthyDeadline},
		{"progress_deadline", c.ProgressDeadline},
		{"flap_tolerance", c.FlapTolerance},
		{"scale_down_delay", c.ScaleDownDelay},
	} {
		if d.v < 0 {
			return bad(d.name, "must not be negative, got %s", d.v)
		}
	}
	if c.MinHealthyTime >= c.HealthyDeadline {
		return bad("min_healthy_time", "must be less than healthy_deadline (%s), got %s", c.HealthyDeadline, c.MinHealthyTime)
	}
	if c.HealthyDeadline >= c.ProgressDeadline {
		return bad("healthy_deadline", "must be less than progress_deadline (%s), got %s", c.ProgressDeadline, c.HealthyDeadline)
	}
	prev := 0
	for i, s := range c.Steps {
		field := fmt.Sprintf("canary.steps[%d]", i)
		if s.Weight < 0 || s.Weight > 100 {
			return bad(field+".weight", "must be 0-100, got %d", s.Weight)
		}
		if i > 0 && s.Weight <= prev {
			return bad(field+".weight", "must be greater than the previous step's %d, got %d", prev, s.Weight)
		}
		if s.Pause < 0 {
			return bad(field+".pause", "must not be negative, got %s", s.Pause)
		}
		if s.Manual && s.Pause != 0 {
			return bad(field+".pause", "a manual step has no duration, got %s", s.Pause)
		}
		prev = s.Weight
		if s.Analysis != nil {
			if err := s.Analysis.Validate(); err != nil {
				return bad(field+".analysis", "%v", err)
			}
		}
	}
	return nil
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
	return s, nil
}
