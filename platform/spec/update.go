package spec

import (
	"fmt"
	"strings"
	"time"

	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// ValidateUpdate is the one validator of an update strategy (nil means all
// defaults), used by Validate (fields "spec.update.…") and by the rollout
// machine (fields "update.…"). Unset fields take their defaults
// (UpdateDefaults) before the cross-field rules are checked.
func ValidateUpdate(u *deployv1.UpdateStrategy) []rpc.FieldViolation {
	var v violations
	validateUpdate(&v, "update", u)
	return v
}

// UpdateDefault is one row of the update strategy's defaults.
type UpdateDefault struct {
	// Field is the field's path below the spec ("update.max_parallel").
	Field string
	// Value is the default, as written in a spec file.
	Value string
	// Meaning says what the field does.
	Meaning string
}

// UpdateDefaults is the one table of the update strategy's defaults: the
// values Normalize fills in (and the rollout machine applies to a Config),
// in the order the README lists them. A test checks that the README's
// table is this one.
func UpdateDefaults() []UpdateDefault {
	var steps []string
	for _, s := range DefaultCanarySteps() {
		st := fmt.Sprintf("%d%%", s.GetWeight())
		if p := s.GetPause().AsDuration(); p > 0 {
			st += " for " + showDuration(p)
		}
		steps = append(steps, st)
	}
	return []UpdateDefault{
		{"update.strategy", "rolling", "rolling, blue_green or canary"},
		{"update.max_parallel", fmt.Sprint(DefaultMaxParallel), "instances a rolling update replaces at once"},
		{"update.min_healthy_time", showDuration(DefaultMinHealthyTime), "how long an instance must pass its check to count as healthy"},
		{"update.healthy_deadline", showDuration(DefaultHealthyDeadline), "how long an instance has to become healthy"},
		{"update.progress_deadline", showDuration(DefaultProgressDeadline), "how long a rollout may go without progress"},
		{"update.scale_down_delay", showDuration(DefaultScaleDownDelay), "how long blue/green keeps the old colour warm after the switch"},
		{"update.blue_green.preview_header", DefaultPreviewHeader, "the header that routes a request to the blue/green preview"},
		{"update.canary.steps", strings.Join(steps, ", "), "canary traffic steps when a canary spec lists none"},
	}
}

// UpdateDefaultsTable renders UpdateDefaults as the README's Markdown table.
func UpdateDefaultsTable() string {
	var b strings.Builder
	b.WriteString("| field | default | meaning |\n| --- | --- | --- |\n")
	for _, d := range UpdateDefaults() {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", d.Field, d.Value, d.Meaning)
	}
	return b.String()
}

// showDuration writes a duration as a spec file would: 3s, 30s, 1m, 5m,
// 1m30s.
func showDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
