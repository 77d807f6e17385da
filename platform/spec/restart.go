package spec

import (
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// validateRestart checks spec.restart with the rules the node agent applies
// to the restart policy it receives (package specrules).
func validateRestart(v *violations, r *deployv1.RestartPolicy) {
	if r == nil {
		return
	}
	if r.Attempts != nil {
		v.check("spec.restart.attempts", specrules.RestartAttempts(int64(r.GetAttempts())))
	}
	okI := validDuration(v, "spec.restart.interval", r.GetInterval())
	okD := validDuration(v, "spec.restart.delay", r.GetDelay())
	if okI && okD {
		interval := orDefault(r.GetInterval(), specrules.DefaultRestartInterval).AsDuration()
		delay := r.GetDelay().AsDuration()
		if r.GetDelay() == nil {
			delay = specrules.DefaultRestartDelay
		}
		v.check("spec.restart.interval", specrules.RestartWindow(delay, interval))
	}
	if _, ok := deployv1.RestartMode_name[int32(r.GetMode())]; !ok {
		v.add("spec.restart.mode", "unknown mode %d (want fail or delay)", int32(r.GetMode()))
	}
}

// normalizeRestart fills in the restart policy's defaults. A delay of zero
// set explicitly stays zero (restart at once); an unset one is the default.
func normalizeRestart(n *deployv1.ServiceSpec) {
	if n.Restart == nil {
		n.Restart = &deployv1.RestartPolicy{}
	}
	r := n.Restart
	if r.Attempts == nil {
		a := int32(specrules.DefaultRestartAttempts)
		r.Attempts = &a
	}
	r.Interval = orDefault(r.Interval, specrules.DefaultRestartInterval)
	if r.Delay == nil {
		r.Delay = durationpb.New(specrules.DefaultRestartDelay)
	}
	if r.Mode == deployv1.RestartMode_RESTART_MODE_UNSPECIFIED {
		r.Mode = deployv1.RestartMode_RESTART_MODE_FAIL
	}
}
