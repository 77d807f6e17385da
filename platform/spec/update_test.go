package spec_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/spec"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestREADMEUpdateDefaultsTable: the README's table of the update
// strategy's defaults is spec.UpdateDefaults, so the docs cannot drift
// from the code that applies them.
func TestREADMEUpdateDefaultsTable(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- update-defaults: generated from spec.UpdateDefaults; a test checks it -->\n", "<!-- /update-defaults -->"
	s := string(raw)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README has no update defaults table between %q and %q", strings.TrimSpace(begin), end)
	}
	if got, want := s[i+len(begin):j], spec.UpdateDefaultsTable(); got != want {
		t.Errorf("README's update defaults table differs from spec.UpdateDefaults; want:\n%s\ngot:\n%s", want, got)
	}
}

// TestUpdateDefaultsAreWhatNormalizeFillsIn: every row of the table is the
// value Normalize writes into an empty update strategy, and every default
// Normalize writes has a row.
func TestUpdateDefaultsAreWhatNormalizeFillsIn(t *testing.T) {
	normalized := func(s deployv1.Strategy) *deployv1.UpdateStrategy {
		return spec.Normalize(&deployv1.ServiceSpec{Name: "web", Image: "demo:v1", Count: 1,
			Update: &deployv1.UpdateStrategy{Strategy: s}}).GetUpdate()
	}
	u := spec.Normalize(&deployv1.ServiceSpec{Name: "web", Image: "demo:v1", Count: 1}).GetUpdate()
	var steps []string
	for _, s := range normalized(deployv1.Strategy_STRATEGY_CANARY).GetCanary().GetSteps() {
		st := fmt.Sprintf("%d%%", s.GetWeight())
		if p := s.GetPause().AsDuration(); p > 0 {
			st += " for " + p.String()
		}
		steps = append(steps, st)
	}
	d := func(p *durationpb.Duration) string { return p.AsDuration().String() }
	filled := map[string]string{
		"update.strategy":                  strings.ToLower(strings.TrimPrefix(u.GetStrategy().String(), "STRATEGY_")),
		"update.max_parallel":              fmt.Sprint(u.GetMaxParallel()),
		"update.min_healthy_time":          d(u.GetMinHealthyTime()),
		"update.healthy_deadline":          d(u.GetHealthyDeadline()),
		"update.progress_deadline":         d(u.GetProgressDeadline()),
		"update.scale_down_delay":          d(u.GetScaleDownDelay()),
		"update.blue_green.preview_header": normalized(deployv1.Strategy_STRATEGY_BLUE_GREEN).GetBlueGreen().GetPreviewHeader(),
		"update.canary.steps":              strings.Join(steps, ", "),
	}
	// The table writes durations as a spec file would (1m); Go writes 1m0s.
	canonical := func(v string) string {
		parts := strings.Split(v, " ")
		for i, p := range parts {
			if dur, err := time.ParseDuration(strings.TrimSuffix(p, ",")); err == nil {
				parts[i] = dur.String() + p[len(strings.TrimSuffix(p, ",")):]
			}
		}
		return strings.Join(parts, " ")
	}
	for _, row := range spec.UpdateDefaults() {
		if got, want := filled[row.Field], canonical(row.Value); got != want {
			t.Errorf("%s: the table says %q, Normalize fills in %q", row.Field, want, got)
		}
		delete(filled, row.Field)
	}
	if len(filled) != 0 {
		t.Errorf("defaults Normalize fills in that the table lacks: %v", filled)
	}
}

// TestValidateUpdateIsTheSpecValidator: Validate reports exactly what
// ValidateUpdate does for the update strategy, below spec.
func TestValidateUpdateIsTheSpecValidator(t *testing.T) {
	u := &deployv1.UpdateStrategy{MaxParallel: -1, MinHealthyTime: durationpb.New(2 * time.Minute),
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50}, {Weight: 10}}}}
	own := spec.ValidateUpdate(u)
	if len(own) != 3 {
		t.Fatalf("ValidateUpdate: %v, want max_parallel, min_healthy_time and a step weight", own)
	}
	all := map[string]string{}
	for _, fv := range spec.Validate(&deployv1.ServiceSpec{Name: "web", Image: "demo:v1", Count: 1, Port: 8080, Update: u}) {
		all[fv.Field] = fv.Description
	}
	for _, fv := range own {
		if d, ok := all["spec."+fv.Field]; !strings.HasPrefix(fv.Field, "update.") || !ok || d != fv.Description {
			t.Errorf("violation %s: %s not reported by Validate as spec.%s (%v)", fv.Field, fv.Description, fv.Field, all)
		}
	}
	if vs := spec.ValidateUpdate(nil); len(vs) != 0 {
		t.Errorf("the defaults are invalid: %v", vs)
	}
}
