package spec

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// FuzzValidate feeds Validate and Normalize with specs unmarshalled from
// arbitrary bytes and checks that Validate never panics, that a spec Validate
// accepts is still accepted after Normalize, and that Normalize is
// idempotent and does not modify its input.
func FuzzValidate(f *testing.F) {
	seeds := []*deployv1.ServiceSpec{
		valid(),
		{},
		{Name: "a", Image: "nginx", Port: 1},
		{Name: "web", Image: "slipway/demo:v2", Port: 8080, Check: &deployv1.HealthCheck{Tcp: true, Timeout: dur(2 * time.Second)}},
		{Name: "web", Image: "slipway/demo:v2", Port: 8080, Update: &deployv1.UpdateStrategy{
			Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN, AutoPromote: true, ScaleDownDelay: dur(time.Minute),
		}},
		{Name: "web", Image: "slipway/demo:v2", Port: 8080, Update: &deployv1.UpdateStrategy{
			Strategy: deployv1.Strategy_STRATEGY_CANARY, HealthyDeadline: dur(4 * time.Second),
		}},
		{Name: "Web", Image: "UPPER", Port: 70000, Count: -3, Update: &deployv1.UpdateStrategy{
			Strategy: 7, MinHealthyTime: dur(-time.Second),
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50}, {Weight: 10}}},
		}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &deployv1.ServiceSpec{}
		if err := proto.Unmarshal(data, s); err != nil {
			return
		}
		checkProperties(t, s)
		// Random bytes rarely make a valid name, image and port; fix those
		// so the rest of the spec (check, route, update, ...) reaches the
		// valid-stays-valid property far more often.
		fixed := proto.Clone(s).(*deployv1.ServiceSpec)
		fixed.Name, fixed.Image, fixed.Port = "web", "slipway/demo:v2", 8080
		checkProperties(t, fixed)
	})
}

// checkProperties asserts FuzzValidate's properties for one spec.
func checkProperties(t *testing.T, s *deployv1.ServiceSpec) {
	t.Helper()
	before := proto.Clone(s)
	vs := Validate(s)
	if !proto.Equal(before, s) {
		t.Fatalf("Validate modified its input")
	}
	for _, v := range vs {
		if v.Field == "" || v.Description == "" {
			t.Fatalf("violation without field or description: %+v", v)
		}
	}
	if len(vs) > 0 {
		return
	}
	n := Normalize(s)
	if !proto.Equal(before, s) {
		t.Fatalf("Normalize modified its input")
	}
	if vs := Validate(n); vs != nil {
		t.Fatalf("valid spec fails after Normalize: %v\nspec: %v\nnormalized: %v", vs, s, n)
	}
	if nn := Normalize(n); !proto.Equal(n, nn) {
		t.Fatalf("Normalize is not idempotent:\nonce:  %v\ntwice: %v", n, nn)
	}
}
