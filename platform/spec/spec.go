// Package spec validates service specs and fills in their defaults. It is
// pure: no I/O.
package spec

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/rpc"
	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Defaults applied by Normalize. They are the contract documented in
// proto/slipway/deploy/v1/spec.proto.
const (
	// DefaultCPUMHz is the CPU reservation of an instance without one.
	DefaultCPUMHz int32 = 100
	// DefaultMemoryMB is the memory limit of an instance without one.
	DefaultMemoryMB int32 = 64
	// DefaultCheckInterval is the time between health probes.
	DefaultCheckInterval = time.Second
	// DefaultCheckTimeout is the timeout of one health probe.
	DefaultCheckTimeout = time.Second
	// DefaultRoutePath is the path prefix routed to a service.
	DefaultRoutePath = "/"
	// DefaultMaxParallel is how many instances a rolling update replaces at once.
	DefaultMaxParallel int32 = 1
	// DefaultMinHealthyTime is how long an instance must be healthy to count.
	DefaultMinHealthyTime = 3 * time.Second
	// DefaultHealthyDeadline is how long an instance has to become healthy.
	DefaultHealthyDeadline = 60 * time.Second
	// DefaultProgressDeadline is how long a rollout may go without progress.
	DefaultProgressDeadline = 5 * time.Minute
	// DefaultScaleDownDelay is how long blue/green keeps the old colour warm.
	DefaultScaleDownDelay = 30 * time.Second
	// DefaultKillTimeout is the time between SIGTERM and SIGKILL.
	DefaultKillTimeout = 5 * time.Second
	// DefaultCanaryPause is the pause of each default canary step but the last.
	DefaultCanaryPause = 30 * time.Second
	// DefaultPreviewHeader is the header routing requests to a blue/green preview.
	DefaultPreviewHeader = "X-Slipway-Preview"
	// DefaultRollbackWindow is how many of the latest releases a rollback
	// returns to without steps or analysis when update.rollback_window is
	// unset (Normalize leaves it unset; RollbackWindow reads it).
	DefaultRollbackWindow int32 = 3
	// MaxRollbackWindow bounds rollback_window.releases.
	MaxRollbackWindow = 100
	// The analysis defaults are the coordinator's analysis package's
	// (a coordinator test holds them equal).

	// DefaultAnalysisInterval is the length of each analysis window.
	DefaultAnalysisInterval = 10 * time.Second
	// DefaultMinRequests is the traffic a window needs to be judged.
	DefaultMinRequests uint32 = 100
	// DefaultFailureLimit is how many failed verdicts fail a rollout.
	DefaultFailureLimit int32 = 2
	// MaxFailureLimit bounds failure_limit.
	MaxFailureLimit = 1000
	// DefaultMaxErrorRateIncrease is the comparison's allowed error rate
	// increase, in percentage points.
	DefaultMaxErrorRateIncrease = 1.0
	// DefaultMaxLatencyRatio is the comparison's allowed p99 ratio.
	DefaultMaxLatencyRatio = 1.3
	// DefaultWebhookTimeout bounds each attempt of an analysis webhook.
	DefaultWebhookTimeout = 5 * time.Second
	// MaxWebhookTimeout, MaxWebhookRetries and MaxWebhooks bound analysis
	// webhooks.
	MaxWebhookTimeout = 30 * time.Second
	// MaxWebhookRetries bounds a webhook's retries.
	MaxWebhookRetries = 5
	// MaxWebhooks bounds the webhooks of one analysis.
	MaxWebhooks = 8
	// DefaultConfidence is the comparison's confidence level.
	DefaultConfidence = 0.95
)

// DefaultCanarySteps returns the canary steps used when a canary spec lists
// none: 10% and 50% held 30s each, then 100%.
func DefaultCanarySteps() []*deployv1.CanaryStep {
	return []*deployv1.CanaryStep{
		{Weight: 10, Pause: durationpb.New(DefaultCanaryPause)},
		{Weight: 50, Pause: durationpb.New(DefaultCanaryPause)},
		{Weight: 100},
	}
}

// Operators lists the constraint operators Validate accepts.
var Operators = []string{"=", "==", "!=", "regexp"}

// violations collects field violations.
type violations []rpc.FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, rpc.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// check adds a violation of field when a specrules rule describes one.
func (v *violations) check(field, description string) {
	if description != "" {
		*v = append(*v, rpc.FieldViolation{Field: field, Description: description})
	}
}

// Validate returns every violation in s, each naming its field path (e.g.
// "spec.update.canary.steps[1].weight"); nil means s is valid. A spec Validate
// accepts is still accepted after Normalize.
//
// Every rule the node agent or the edge enforces on what a spec becomes is
// checked here by the same code (package specrules), with the limits that
// keep a release small enough to place, replicate and send: a spec Validate
// accepts can always be run by an agent and routed by an edge.
func Validate(s *deployv1.ServiceSpec) []rpc.FieldViolation {
	if s == nil {
		return []rpc.FieldViolation{{Field: "spec", Description: "is required"}}
	}
	var v violations
	// Sizes are those of the spec as recorded, defaults filled in, so that
	// a spec accepted here is still accepted after Normalize.
	size := proto.Size(Normalize(s))
	v.check("spec", specrules.SpecSize(size))
	v.check("spec.name", specrules.ServiceName(s.GetName()))
	validateImage(&v, s.GetImage())
	if d := specrules.Count(int64(s.GetCount())); d != "" {
		v.check("spec.count", d)
	} else if size <= specrules.MaxSpecBytes {
		v.check("spec.count", specrules.ReleaseSize(int64(s.GetCount()), size))
	}
	validatePorts(&v, s)
	validateEnv(&v, s.GetEnv())
	v.check("spec.args", specrules.ArgsTotal(s.GetArgs()))
	for i, a := range s.GetArgs() {
		v.check(fmt.Sprintf("spec.args[%d]", i), specrules.Arg(a))
	}
	if r := s.GetResources(); r != nil {
		v.check("spec.resources.cpu_mhz", specrules.CPUMHz(int64(r.GetCpuMhz())))
		v.check("spec.resources.memory_mb", specrules.MemoryMB(int64(r.GetMemoryMb())))
	}
	validateCheck(&v, s.GetCheck(), s.GetUpdate())
	validateRoute(&v, s.GetRoute())
	if n := len(s.GetConstraints()); n > specrules.MaxConstraints {
		v.add("spec.constraints", "%d constraints, more than the %d allowed", n, specrules.MaxConstraints)
	}
	for i, c := range s.GetConstraints() {
		validateConstraint(&v, fmt.Sprintf("spec.constraints[%d]", i), c)
	}
	validateUpdate(&v, "spec.update", s.GetUpdate())
	validateSecurity(&v, s.GetSecurity())
	validateVolumes(&v, s)
	validateContainer(&v, s)
	validateFiles(&v, s)
	validateRestart(&v, s.GetRestart())
	validDuration(&v, "spec.kill_timeout", s.GetKillTimeout())
	if len(v) == 0 {
		return nil
	}
	return v
}

func validateEnv(v *violations, env map[string]string) {
	v.check("spec.env", specrules.EnvTotal(env))
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field := fmt.Sprintf("spec.env[%q]", k)
		if d := specrules.EnvName(k); d != "" {
			v.check(field, d)
		} else {
			v.check(field, specrules.EnvValue(env[k]))
		}
	}
}

func validateImage(v *violations, image string) {
	if image == "" {
		v.add("spec.image", "is required")
		return
	}
	if strings.TrimSpace(image) != image {
		v.add("spec.image", "%q has leading or trailing spaces", image)
		return
	}
	if _, err := reference.ParseNormalizedNamed(image); err != nil {
		v.add("spec.image", "%q is not a valid image reference: %v", image, err)
	}
}

func validateCheck(v *violations, c *deployv1.HealthCheck, u *deployv1.UpdateStrategy) {
	if c == nil {
		return
	}
	switch {
	case c.GetHttp() != "" && c.GetTcp():
		v.add("spec.check", "http and tcp are exclusive; set one")
	case c.GetHttp() == "" && !c.GetTcp():
		v.add("spec.check", "needs http (a path) or tcp: true; omit check for none")
	}
	if h := c.GetHttp(); h != "" {
		v.check("spec.check.http", specrules.CheckPath(h))
	}
	okI := validDuration(v, "spec.check.interval", c.GetInterval())
	okT := validDuration(v, "spec.check.timeout", c.GetTimeout())
	if okI && okT {
		interval := orDefault(c.GetInterval(), DefaultCheckInterval)
		timeout := orDefault(c.GetTimeout(), DefaultCheckTimeout)
		if compare(timeout, interval) > 0 {
			v.add("spec.check.timeout", "%s must not exceed the interval (%s)", show(timeout), show(interval))
		}
	}
	if sp := c.GetStartPeriod(); sp != nil && validDuration(v, "spec.check.start_period", sp) {
		if d := specrules.StartPeriod(sp.AsDuration()); d != "" {
			v.check("spec.check.start_period", d)
		} else if h := u.GetHealthyDeadline(); h == nil || h.CheckValid() == nil {
			// An instance in its start period is not healthy yet: the
			// grace must end before the rollout gives up on it.
			healthy := orDefault(h, DefaultHealthyDeadline)
			if compare(sp, healthy) >= 0 {
				v.add("spec.check.start_period", "%s must be less than update.healthy_deadline (%s)", show(sp), show(healthy))
			}
		}
	}
}

func validateRoute(v *violations, r *deployv1.Route) {
	if r == nil {
		return
	}
	if h := r.GetHost(); h != "" {
		v.check("spec.route.host", specrules.RouteHost(h))
	}
	if p := r.GetPath(); p != "" {
		v.check("spec.route.path", specrules.RoutePath(p))
	}
}

func validateConstraint(v *violations, path string, c *deployv1.Constraint) {
	if strings.TrimSpace(c.GetAttribute()) == "" {
		v.add(path+".attribute", "is required, e.g. \"node.label.zone\" or \"node.id\"")
	} else if n := len(c.GetAttribute()); n > specrules.MaxConstraintBytes {
		v.add(path+".attribute", "is %d bytes, more than the %d allowed", n, specrules.MaxConstraintBytes)
	}
	if n := len(c.GetValue()); n > specrules.MaxConstraintBytes {
		v.add(path+".value", "is %d bytes, more than the %d allowed", n, specrules.MaxConstraintBytes)
		return
	}
	switch op := c.GetOperator(); op {
	case "=", "==", "!=":
	case "regexp":
		if _, err := regexp.Compile(c.GetValue()); err != nil {
			v.add(path+".value", "is not a valid regular expression: %v", err)
		}
	case "":
		v.add(path+".operator", "is required, one of %s", strings.Join(Operators, ", "))
	default:
		v.add(path+".operator", "%q is not one of %s", op, strings.Join(Operators, ", "))
	}
}

// validateUpdate is the one validator of the update strategy (see
// ValidateUpdate); at prefixes the fields it names.
func validateUpdate(v *violations, at string, u *deployv1.UpdateStrategy) {
	if u == nil {
		// Defaults are valid and ordered.
		return
	}
	if _, ok := deployv1.Strategy_name[int32(u.GetStrategy())]; !ok {
		v.add(at+".strategy", "unknown strategy %d (want rolling, blue_green or canary)", int32(u.GetStrategy()))
	}
	if u.GetMaxParallel() < 0 {
		v.add(at+".max_parallel", "must be zero (default %d) or more, got %d", DefaultMaxParallel, u.GetMaxParallel())
	}
	validateSurge(v, at, u)
	validateCanaryRouting(v, at, u)
	okM := validDuration(v, at+".min_healthy_time", u.GetMinHealthyTime())
	okH := validDuration(v, at+".healthy_deadline", u.GetHealthyDeadline())
	okP := validDuration(v, at+".progress_deadline", u.GetProgressDeadline())
	validDuration(v, at+".scale_down_delay", u.GetScaleDownDelay())
	minHealthy := orDefault(u.GetMinHealthyTime(), DefaultMinHealthyTime)
	healthy := orDefault(u.GetHealthyDeadline(), DefaultHealthyDeadline)
	progress := orDefault(u.GetProgressDeadline(), DefaultProgressDeadline)
	if okM && okH && compare(minHealthy, healthy) >= 0 {
		v.add(at+".min_healthy_time", "%s must be less than healthy_deadline (%s)", show(minHealthy), show(healthy))
	}
	if okH && okP && compare(healthy, progress) >= 0 {
		v.add(at+".healthy_deadline", "%s must be less than progress_deadline (%s)", show(healthy), show(progress))
	}
	if n := len(u.GetCanary().GetSteps()); n > specrules.MaxCanarySteps {
		v.add(at+".canary.steps", "%d steps, more than the %d allowed", n, specrules.MaxCanarySteps)
	}
	prev := int32(-1)
	for i, st := range u.GetCanary().GetSteps() {
		path := fmt.Sprintf("%s.canary.steps[%d]", at, i)
		w := st.GetWeight()
		switch {
		case w < 0 || w > 100:
			v.add(path+".weight", "must be between 0 and 100, got %d", w)
		case w <= prev:
			v.add(path+".weight", "%d must be greater than the previous step's weight (%d)", w, prev)
		}
		if w >= 0 && w <= 100 {
			prev = w
		}
		if validDuration(v, path+".pause", st.GetPause()) && st.GetManual() && !isZero(st.GetPause()) {
			v.add(path+".pause", "a step is either paused for a duration or manual, not both")
		}
	}
	strategy := u.GetStrategy()
	if strategy == deployv1.Strategy_STRATEGY_UNSPECIFIED {
		strategy = deployv1.Strategy_STRATEGY_ROLLING
	}
	canary := strategy == deployv1.Strategy_STRATEGY_CANARY
	if a := u.GetCanary().GetAnalysis(); a != nil {
		validateAnalysis(v, at+".canary.analysis", a, canary, "canary steps", "canary")
	}
	for i, st := range u.GetCanary().GetSteps() {
		if a := st.GetAnalysis(); a != nil {
			validateAnalysis(v, fmt.Sprintf("%s.canary.steps[%d].analysis", at, i), a, canary, "canary steps", "canary")
		}
	}
	if a := u.GetBlueGreen().GetAnalysis(); a != nil {
		validateAnalysis(v, at+".blue_green.analysis", a, strategy == deployv1.Strategy_STRATEGY_BLUE_GREEN, "blue/green previews", "blue_green")
	}
	if a := u.GetRolling().GetAnalysis(); a != nil {
		validateAnalysis(v, at+".rolling.analysis", a, strategy == deployv1.Strategy_STRATEGY_ROLLING, "rolling batches", "rolling")
	}
	if h := u.GetBlueGreen().GetPreviewHeader(); h != "" {
		v.check(at+".blue_green.preview_header", specrules.HeaderName(h))
	}
	if n := u.GetRollbackWindow().GetReleases(); n < 0 || n > MaxRollbackWindow {
		v.add(at+".rollback_window.releases", "must be 0 (no fast rollback) to %d, got %d", MaxRollbackWindow, n)
	}
	validateHooks(v, at, u)
}

// RollbackWindow is how many of the latest releases a rollback under u may
// return to without canary steps, preview or analysis: update.rollback_window
// .releases, DefaultRollbackWindow when unset.
func RollbackWindow(u *deployv1.UpdateStrategy) int {
	if w := u.GetRollbackWindow(); w != nil {
		return int(w.GetReleases())
	}
	return int(DefaultRollbackWindow)
}

// Hook bounds.
const (
	// MaxHooks bounds the hooks of a spec.
	MaxHooks = 16
	// DefaultHookTimeout is a hook attempt's default timeout.
	DefaultHookTimeout = 5 * time.Second
	// DefaultHookInterval is how long a failing gate hook waits before it is
	// asked again.
	DefaultHookInterval = 10 * time.Second
)

// validateHooks checks update.hooks: names, types (rollout hooks need
// canary steps or rolling batches, confirm_promotion a promotion), URLs, timeouts, retries.
func validateHooks(v *violations, at string, u *deployv1.UpdateStrategy) {
	if n := len(u.GetHooks()); n > MaxHooks {
		v.add(at+".hooks", "%d hooks, more than the %d allowed", n, MaxHooks)
	}
	names := map[string]bool{}
	for i, h := range u.GetHooks() {
		hp := fmt.Sprintf("%s.hooks[%d]", at, i)
		if d := specrules.ServiceName(h.GetName()); d != "" {
			v.add(hp+".name", "%s", d)
		} else if names[h.GetName()] {
			v.add(hp+".name", "%q is used by another hook", h.GetName())
		}
		names[h.GetName()] = true
		switch t := h.GetType(); t {
		case deployv1.HookType_HOOK_TYPE_PRE_ROLLOUT, deployv1.HookType_HOOK_TYPE_POST_ROLLOUT, deployv1.HookType_HOOK_TYPE_ROLLBACK:
		case deployv1.HookType_HOOK_TYPE_ROLLOUT:
			if u.GetStrategy() == deployv1.Strategy_STRATEGY_BLUE_GREEN {
				v.add(hp+".type", "rollout hooks gate canary steps and rolling batches; strategy is blue_green (use pre_rollout or confirm_promotion)")
			}
		case deployv1.HookType_HOOK_TYPE_CONFIRM_PROMOTION:
			if u.GetStrategy() != deployv1.Strategy_STRATEGY_CANARY && u.GetStrategy() != deployv1.Strategy_STRATEGY_BLUE_GREEN {
				v.add(hp+".type", "confirm_promotion hooks gate a canary or blue/green promotion; strategy is %s", strings.ToLower(strings.TrimPrefix(u.GetStrategy().String(), "STRATEGY_")))
			}
		default:
			v.add(hp+".type", "is required: pre_rollout, rollout, confirm_promotion, post_rollout or rollback")
		}
		if ur, err := url.Parse(h.GetUrl()); err != nil || (ur.Scheme != "http" && ur.Scheme != "https") || ur.Host == "" || len(h.GetUrl()) > 2048 {
			v.add(hp+".url", "%q is not an absolute http or https URL (at most 2048 bytes)", h.GetUrl())
		}
		if validDuration(v, hp+".timeout", h.GetTimeout()) && h.GetTimeout().AsDuration() > MaxWebhookTimeout {
			v.add(hp+".timeout", "must be at most %s, got %s", MaxWebhookTimeout, show(h.GetTimeout()))
		}
		if validDuration(v, hp+".interval", h.GetInterval()) && h.GetInterval() != nil && !isZero(h.GetInterval()) && h.GetInterval().AsDuration() < time.Second {
			v.add(hp+".interval", "must be at least 1s, got %s", show(h.GetInterval()))
		}
		if r := h.GetRetries(); r < 0 || r > MaxWebhookRetries {
			v.add(hp+".retries", "must be 0 to %d, got %d", MaxWebhookRetries, r)
		}
	}
}

// validateAnalysis checks one analysis block at path; applies says whether
// the update's strategy uses it (it judges what, under strategy want).
func validateAnalysis(v *violations, path string, a *deployv1.Analysis, applies bool, what, want string) {
	if !applies {
		v.add(path, "this analysis judges %s: set strategy %s, or put the analysis under canary (steps), blue_green (the preview) or rolling (batches) to match the strategy", what, want)
	}
	if validDuration(v, path+".interval", a.GetInterval()) && !isZero(a.GetInterval()) && a.GetInterval().AsDuration() < time.Second {
		v.add(path+".interval", "must be at least 1s (signals are merged per second), got %s", show(a.GetInterval()))
	}
	if n := a.GetFailureLimit(); n < 0 || n > MaxFailureLimit {
		v.add(path+".failure_limit", "must be between 0 (default %d) and %d, got %d", DefaultFailureLimit, MaxFailureLimit, n)
	}
	if _, ok := deployv1.NoDataPolicy_name[int32(a.GetNoData())]; !ok {
		v.add(path+".no_data", "unknown policy %d (want hold, fail or pass)", int32(a.GetNoData()))
	}
	if sr := a.GetSuccessRate(); sr != nil && !(sr.GetMin() > 0 && sr.GetMin() <= 100) {
		v.add(path+".success_rate.min", "must be a percentage above 0 and at most 100, got %v", sr.GetMin())
	}
	if l := a.GetLatencyP99(); l != nil {
		if validDuration(v, path+".latency_p99.max", l.GetMax()) && isZero(l.GetMax()) {
			v.add(path+".latency_p99.max", "must be set and above 0")
		}
	}
	if n := len(a.GetWebhooks()); n > MaxWebhooks {
		v.add(path+".webhooks", "%d webhooks, more than the %d allowed", n, MaxWebhooks)
	}
	names := map[string]bool{}
	for i, w := range a.GetWebhooks() {
		wp := fmt.Sprintf("%s.webhooks[%d]", path, i)
		if d := specrules.ServiceName(w.GetName()); d != "" {
			v.add(wp+".name", "%s", d)
		} else if names[w.GetName()] {
			v.add(wp+".name", "%q is used by another webhook of this analysis", w.GetName())
		}
		names[w.GetName()] = true
		if u, err := url.Parse(w.GetUrl()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(w.GetUrl()) > 2048 {
			v.add(wp+".url", "%q is not an absolute http or https URL (at most 2048 bytes)", w.GetUrl())
		}
		if validDuration(v, wp+".timeout", w.GetTimeout()) && w.GetTimeout().AsDuration() > MaxWebhookTimeout {
			v.add(wp+".timeout", "must be at most %s, got %s", MaxWebhookTimeout, show(w.GetTimeout()))
		}
		if r := w.GetRetries(); r < 0 || r > MaxWebhookRetries {
			v.add(wp+".retries", "must be 0 to %d, got %d", MaxWebhookRetries, r)
		}
	}
	if n := len(a.GetPrometheus()); n > MaxWebhooks {
		v.add(path+".prometheus", "%d queries, more than the %d allowed", n, MaxWebhooks)
	}
	for i, q := range a.GetPrometheus() {
		qp := fmt.Sprintf("%s.prometheus[%d]", path, i)
		if d := specrules.ServiceName(q.GetName()); d != "" {
			v.add(qp+".name", "%s", d)
		} else if names[q.GetName()] {
			v.add(qp+".name", "%q is used by another gate of this analysis", q.GetName())
		}
		names[q.GetName()] = true
		if u, err := url.Parse(q.GetAddress()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(q.GetAddress()) > 2048 {
			v.add(qp+".address", "%q is not an absolute http or https URL (at most 2048 bytes)", q.GetAddress())
		}
		if q.GetQuery() == "" || len(q.GetQuery()) > 4096 {
			v.add(qp+".query", "must be a PromQL expression of 1 to 4096 bytes")
		}
		if q.Min == nil && q.Max == nil {
			v.add(qp, "needs min or max")
		}
		for _, b := range []struct {
			name string
			set  bool
			v    float64
		}{{"min", q.Min != nil, q.GetMin()}, {"max", q.Max != nil, q.GetMax()}} {
			if b.set && (math.IsNaN(b.v) || math.IsInf(b.v, 0)) {
				v.add(qp+"."+b.name, "must be a finite number, got %v", b.v)
			}
		}
		if q.Min != nil && q.Max != nil && q.GetMin() > q.GetMax() {
			v.add(qp+".min", "%v is above max %v", q.GetMin(), q.GetMax())
		}
		if validDuration(v, qp+".timeout", q.GetTimeout()) && q.GetTimeout().AsDuration() > MaxWebhookTimeout {
			v.add(qp+".timeout", "must be at most %s, got %s", MaxWebhookTimeout, show(q.GetTimeout()))
		}
	}
	if x := a.GetConfidence(); !(x == 0 || (x >= 0.5 && x <= 0.9999)) {
		v.add(path+".confidence", "must be 0 (default compare.confidence, else %v) or 0.5 to 0.9999, got %v", DefaultConfidence, x)
	}
	if c := a.GetCompare(); c != nil {
		if x := c.GetMaxErrorRateIncrease(); !(x >= 0 && x <= 100) {
			v.add(path+".compare.max_error_rate_increase", "must be 0 (default %v) to 100 percentage points, got %v", DefaultMaxErrorRateIncrease, x)
		}
		if x := c.GetMaxLatencyRatio(); !(x == 0 || (x >= 1 && x <= 1000)) {
			v.add(path+".compare.max_latency_ratio", "must be 0 (default %v) or 1 to 1000, got %v", DefaultMaxLatencyRatio, x)
		}
		if x := c.GetConfidence(); !(x == 0 || (x >= 0.5 && x <= 0.9999)) {
			v.add(path+".compare.confidence", "must be 0 (default %v) or 0.5 to 0.9999, got %v", DefaultConfidence, x)
		}
	}
}

// normalizeAnalysis fills a's defaults in place.
func normalizeAnalysis(a *deployv1.Analysis) {
	if a == nil || a.Disabled {
		return
	}
	a.Interval = orDefault(a.Interval, DefaultAnalysisInterval)
	if a.MinRequests == 0 {
		a.MinRequests = DefaultMinRequests
	}
	if a.FailureLimit == 0 {
		a.FailureLimit = DefaultFailureLimit
	}
	if a.NoData == deployv1.NoDataPolicy_NO_DATA_POLICY_UNSPECIFIED {
		a.NoData = deployv1.NoDataPolicy_NO_DATA_POLICY_HOLD
	}
	if a.SuccessRate == nil && a.LatencyP99 == nil && a.Compare == nil && len(a.Webhooks) == 0 && len(a.Prometheus) == 0 {
		a.Compare = &deployv1.Comparison{}
	}
	for _, w := range a.Webhooks {
		w.Timeout = orDefault(w.Timeout, DefaultWebhookTimeout)
	}
	for _, q := range a.Prometheus {
		q.Timeout = orDefault(q.Timeout, DefaultWebhookTimeout)
	}
	if c := a.Compare; c != nil {
		if c.MaxErrorRateIncrease == 0 {
			c.MaxErrorRateIncrease = DefaultMaxErrorRateIncrease
		}
		if c.MaxLatencyRatio == 0 {
			c.MaxLatencyRatio = DefaultMaxLatencyRatio
		}
		if c.Confidence == 0 {
			c.Confidence = DefaultConfidence
		}
	}
}

// validDuration reports whether d is unset, or a valid duration that is not
// negative and at most specrules.MaxDuration, adding a violation otherwise.
func validDuration(v *violations, path string, d *durationpb.Duration) bool {
	if d == nil {
		return true
	}
	if err := d.CheckValid(); err != nil {
		// The error text of protobuf varies by design; describe it ourselves.
		v.add(path, "is not a valid duration (seconds %d, nanos %d: out of range or of different signs)", d.GetSeconds(), d.GetNanos())
		return false
	}
	if d.GetSeconds() < 0 || d.GetNanos() < 0 {
		v.add(path, "must not be negative, got %s", show(d))
		return false
	}
	if desc := specrules.Duration(d.AsDuration()); desc != "" {
		v.add(path, "must be at most %s, got %s", specrules.MaxDuration, show(d))
		return false
	}
	return true
}

func isZero(d *durationpb.Duration) bool { return d.GetSeconds() == 0 && d.GetNanos() == 0 }

// orDefault returns d, or def when d is unset or zero.
func orDefault(d *durationpb.Duration, def time.Duration) *durationpb.Duration {
	if isZero(d) {
		return durationpb.New(def)
	}
	return d
}

// compare orders two valid durations without overflowing time.Duration.
func compare(a, b *durationpb.Duration) int {
	switch {
	case a.GetSeconds() != b.GetSeconds():
		if a.GetSeconds() < b.GetSeconds() {
			return -1
		}
		return 1
	case a.GetNanos() != b.GetNanos():
		if a.GetNanos() < b.GetNanos() {
			return -1
		}
		return 1
	}
	return 0
}

// show renders a duration for people, e.g. "1m30s".
func show(d *durationpb.Duration) string {
	const maxSeconds = 9_000_000_000 // beyond time.Duration's range
	if d.GetSeconds() > maxSeconds || d.GetSeconds() < -maxSeconds {
		return fmt.Sprintf("%ds", d.GetSeconds())
	}
	return d.AsDuration().String()
}

// Normalize returns a copy of s with defaults filled in; s is not modified.
// s must be valid (see Validate). Normalize is idempotent, and zero durations
// count as unset.
func Normalize(s *deployv1.ServiceSpec) *deployv1.ServiceSpec {
	if s == nil {
		return nil
	}
	n := proto.Clone(s).(*deployv1.ServiceSpec)
	if n.Resources == nil {
		n.Resources = &deployv1.Resources{}
	}
	if n.Resources.CpuMhz == 0 {
		n.Resources.CpuMhz = DefaultCPUMHz
	}
	if n.Resources.MemoryMb == 0 {
		n.Resources.MemoryMb = DefaultMemoryMB
	}
	if c := n.Check; c != nil {
		c.Interval = orDefault(c.Interval, DefaultCheckInterval)
		c.Timeout = orDefault(c.Timeout, DefaultCheckTimeout)
	}
	if n.Route == nil {
		n.Route = &deployv1.Route{}
	}
	if n.Route.Path == "" {
		n.Route.Path = DefaultRoutePath
	}
	n.KillTimeout = orDefault(n.KillTimeout, DefaultKillTimeout)
	normalizePorts(n)
	normalizeRestart(n)
	normalizeFiles(n)
	if n.Update == nil {
		n.Update = &deployv1.UpdateStrategy{}
	}
	u := n.Update
	if u.Strategy == deployv1.Strategy_STRATEGY_UNSPECIFIED {
		u.Strategy = deployv1.Strategy_STRATEGY_ROLLING
	}
	if u.MaxParallel == 0 && u.MaxSurge == "" && u.MaxUnavailable == "" {
		u.MaxParallel = DefaultMaxParallel
	}
	u.MinHealthyTime = orDefault(u.MinHealthyTime, DefaultMinHealthyTime)
	u.HealthyDeadline = orDefault(u.HealthyDeadline, DefaultHealthyDeadline)
	u.ProgressDeadline = orDefault(u.ProgressDeadline, DefaultProgressDeadline)
	u.ScaleDownDelay = orDefault(u.ScaleDownDelay, DefaultScaleDownDelay)
	switch u.Strategy {
	case deployv1.Strategy_STRATEGY_CANARY:
		if u.Canary == nil {
			u.Canary = &deployv1.CanaryStrategy{}
		}
		if len(u.Canary.Steps) == 0 {
			u.Canary.Steps = DefaultCanarySteps()
		}
		if st := u.Canary.Sticky; st != nil && st.Enabled && st.Cookie == "" {
			st.Cookie = StickyCookie(n.Name, st)
		}
		normalizeAnalysis(u.Canary.Analysis)
		for _, st := range u.Canary.Steps {
			normalizeAnalysis(st.Analysis)
		}
	case deployv1.Strategy_STRATEGY_BLUE_GREEN:
		if u.BlueGreen == nil {
			u.BlueGreen = &deployv1.BlueGreenStrategy{}
		}
		if u.BlueGreen.PreviewHeader == "" {
			u.BlueGreen.PreviewHeader = DefaultPreviewHeader
		}
		normalizeAnalysis(u.BlueGreen.Analysis)
	case deployv1.Strategy_STRATEGY_ROLLING:
		normalizeAnalysis(u.GetRolling().GetAnalysis())
	}
	return n
}
