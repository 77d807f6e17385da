package rollout_test

import (
	"fmt"
	"time"

	"slipway.dev/coordinator/rollout"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Example drives a canary from v1 to v2 the way the leader engine does:
// step, (commit), act, observe again.
func Example() {
	cfg, err := rollout.ConfigFromSpec(&deployv1.UpdateStrategy{
		Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary:   &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 50}, {Weight: 100}}},
	})
	if err != nil {
		panic(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st, err := rollout.New(rollout.Spec{Service: "web", From: 1, FromCount: 2, To: 2, Count: 2,
		Config: cfg, Generation: 7, Weights: map[uint64]int{1: 100}})
	if err != nil {
		panic(err)
	}
	obs := rollout.Observation{Now: t0, AckedGeneration: 7, Instances: []rollout.Instance{
		{ID: "web-1-a", Release: 1, Health: rollout.HealthPassing, Since: t0.Add(-time.Hour)},
		{ID: "web-1-b", Release: 1, Health: rollout.HealthPassing, Since: t0.Add(-time.Hour)},
	}}
	n := 0
	for i := 0; i < 20 && !rollout.Done(st); i++ {
		var plan rollout.Plan
		st, plan = rollout.Step(st, obs) // the leader commits st and plan here
		for _, p := range plan.Place {   // ...then acts: agents start instances
			for range p.Count {
				n++
				obs.Instances = append(obs.Instances, rollout.Instance{ID: fmt.Sprintf("web-2-%d", n), Release: 2,
					Health: rollout.HealthPassing, Since: obs.Now, CreatedAt: obs.Now})
			}
		}
		if plan.Traffic != nil { // edges apply the intent and acknowledge it
			fmt.Printf("generation %d weights %v drain %v\n", plan.Traffic.Generation, plan.Traffic.Weights, plan.Traffic.Drain)
			obs.AckedGeneration = plan.Traffic.Generation
		}
		if len(plan.Stop) > 0 {
			fmt.Println("stop", plan.Stop)
		}
		if wake, ok := rollout.Wake(st, obs); ok {
			obs.Now = wake
		}
	}
	fmt.Println(st.Phase, st.Message)
	// Output:
	// generation 8 weights map[1:50 2:50] drain []
	// generation 9 weights map[2:100] drain [web-1-a web-1-b]
	// stop [web-1-a web-1-b]
	// ROLLOUT_STATE_SUCCEEDED #2 at 100% with 2 healthy instances
}
