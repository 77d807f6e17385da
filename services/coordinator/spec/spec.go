// Package spec validates service specs and fills in their defaults. It is
// pure: no I/O.
package spec

import (
	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Validate returns every violation in s, each naming its field path (e.g.
// "spec.update.canary.steps[1].weight"); nil means s is valid.
func Validate(s *deployv1.ServiceSpec) []rpc.FieldViolation {
	if s == nil {
		return []rpc.FieldViolation{{Field: "spec", Description: "is required"}}
	}
	return nil
}

// Normalize returns a copy of s with defaults filled in. s must be valid.
func Normalize(s *deployv1.ServiceSpec) *deployv1.ServiceSpec {
	return s
}
