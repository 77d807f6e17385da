package spec

import (
	"fmt"
	"slices"

	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// validateContainer checks entrypoint, labels and stop_signal: the same
// rules (package specrules) the node agent applies.
func validateContainer(v *violations, s *deployv1.ServiceSpec) {
	v.check("spec.entrypoint", specrules.ArgsTotal(s.GetEntrypoint()))
	for i, a := range s.GetEntrypoint() {
		v.check(fmt.Sprintf("spec.entrypoint[%d]", i), specrules.Arg(a))
	}
	if len(s.GetEntrypoint()) > 0 && s.GetEntrypoint()[0] == "" {
		v.add("spec.entrypoint[0]", "the program is empty")
	}
	if n := len(s.GetLabels()); n > specrules.MaxLabels {
		v.add("spec.labels", "%d labels, more than the %d allowed", n, specrules.MaxLabels)
	}
	keys := make([]string, 0, len(s.GetLabels()))
	for k := range s.GetLabels() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v.check(fmt.Sprintf("spec.labels[%q]", k), specrules.Label(k, s.GetLabels()[k]))
	}
	v.check("spec.stop_signal", specrules.StopSignal(s.GetStopSignal()))
}
