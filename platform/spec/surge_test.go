package spec

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestValidateSurge(t *testing.T) {
	rolling := func(u *deployv1.UpdateStrategy) *deployv1.ServiceSpec {
		s := valid()
		if u.Strategy == 0 {
			u.Strategy = deployv1.Strategy_STRATEGY_ROLLING
		}
		s.Update = u
		return s
	}
	tests := []struct {
		name string
		u    *deployv1.UpdateStrategy
		want []rpc.FieldViolation
	}{
		{name: "surge only", u: &deployv1.UpdateStrategy{MaxSurge: "2"}},
		{name: "unavailable only, percent", u: &deployv1.UpdateStrategy{MaxUnavailable: "25%"}},
		{name: "both, stagger", u: &deployv1.UpdateStrategy{MaxSurge: "100%", MaxUnavailable: "0", Stagger: dur(10 * time.Second)}},
		{name: "stagger with max_parallel", u: &deployv1.UpdateStrategy{MaxParallel: 2, Stagger: dur(time.Minute)}},
		{name: "both zero", u: &deployv1.UpdateStrategy{MaxSurge: "0", MaxUnavailable: "0%"}, want: []rpc.FieldViolation{
			{Field: "spec.update.max_unavailable", Description: "max_surge and max_unavailable must not both be 0 (the update could never replace an instance)"},
		}},
		{name: "surge zero alone", u: &deployv1.UpdateStrategy{MaxSurge: "0"}, want: []rpc.FieldViolation{
			{Field: "spec.update.max_unavailable", Description: "max_surge and max_unavailable must not both be 0 (the update could never replace an instance)"},
		}},
		{name: "garbage and out of range", u: &deployv1.UpdateStrategy{MaxSurge: "two", MaxUnavailable: "120%"}, want: []rpc.FieldViolation{
			{Field: "spec.update.max_surge", Description: `"two" is neither a number of instances ("2") nor a percentage of count ("25%")`},
			{Field: "spec.update.max_unavailable", Description: `"120%" must be a percentage between 0% and 100%`},
		}},
		{name: "negative, too many", u: &deployv1.UpdateStrategy{MaxSurge: "-1", MaxUnavailable: "1001"}, want: []rpc.FieldViolation{
			{Field: "spec.update.max_surge", Description: `"-1" must be between 0 and 1000 instances`},
			{Field: "spec.update.max_unavailable", Description: `"1001" must be between 0 and 1000 instances`},
		}},
		{name: "with max_parallel", u: &deployv1.UpdateStrategy{MaxParallel: 2, MaxSurge: "1"}, want: []rpc.FieldViolation{
			{Field: "spec.update.max_parallel", Description: "must be unset with max_surge or max_unavailable (max_parallel 2 is max_surge 2 with max_unavailable 0)"},
		}},
		{name: "canary", u: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, MaxUnavailable: "1", Stagger: dur(time.Second)}, want: []rpc.FieldViolation{
			{Field: "spec.update.stagger", Description: "applies to rolling updates only (strategy is canary)"},
			{Field: "spec.update.max_unavailable", Description: "applies to rolling updates only (strategy is canary)"},
		}},
		{name: "stagger too long, negative", u: &deployv1.UpdateStrategy{Stagger: dur(2 * time.Hour)}, want: []rpc.FieldViolation{
			{Field: "spec.update.stagger", Description: "must be at most 1h, got 2h0m0s"},
		}},
		{name: "stagger negative", u: &deployv1.UpdateStrategy{Stagger: dur(-time.Second)}, want: []rpc.FieldViolation{
			{Field: "spec.update.stagger", Description: "must not be negative, got -1s"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Validate(rolling(tt.u))); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSurgeBounds(t *testing.T) {
	tests := []struct {
		surge, unavail string
		count          int
		s, u           int
		ok             bool
	}{
		{"", "", 4, 0, 0, false},
		{"2", "", 4, 2, 0, true},
		{"25%", "25%", 10, 3, 2, true}, // surge rounds up, unavailable down
		{"", "10%", 3, 0, 1, true},     // both 0 for a small count: unavailable 1
		{"100%", "0", 3, 3, 0, true},
		{"0", "100%", 4, 0, 4, true},
	}
	for _, tt := range tests {
		s, u, ok := SurgeBounds(tt.surge, tt.unavail, tt.count)
		if s != tt.s || u != tt.u || ok != tt.ok {
			t.Errorf("SurgeBounds(%q, %q, %d) = %d, %d, %v; want %d, %d, %v", tt.surge, tt.unavail, tt.count, s, u, ok, tt.s, tt.u, tt.ok)
		}
	}
}

func TestNormalizeLeavesMaxParallelUnsetWithSurge(t *testing.T) {
	n := Normalize(&deployv1.ServiceSpec{Name: "web", Image: "demo:v1", Count: 1, Port: 80, Update: &deployv1.UpdateStrategy{MaxSurge: "1"}})
	if got := n.GetUpdate().GetMaxParallel(); got != 0 {
		t.Fatalf("max_parallel = %d, want 0 (unset) beside max_surge", got)
	}
	if errs := Validate(n); len(errs) != 0 {
		t.Fatalf("normalized spec invalid: %v", errs)
	}
}
