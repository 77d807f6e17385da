package state_test

import (
	"fmt"
	"testing"

	"slipway.dev/coordinator/state"
)

// BenchmarkApplyDeploys applies superseding Deploys to 32 services, as the
// coordinator benchmark does: the cost per entry must not grow with the
// history (retention trims per service, not by scanning everything).
func BenchmarkApplyDeploys(b *testing.B) {
	f := state.New()
	l := &log{tb: b}
	for i := 0; i < b.N; i++ {
		e := l.add(deploy(spec(fmt.Sprintf("bench-%d", i%32), "slipway/demo:v1"), fmt.Sprintf("r-%d", i), true))
		if err, ok := f.Apply(e).(error); ok {
			b.Fatal(err)
		}
	}
}
