package rollout

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestRandomScripts runs random sequences of deploys, health reports, ticks,
// acknowledgements, lost and unowned instances and operator commands
// through the script runner, whose
// contract checks (determinism, JSON round trip, fixed point, weights, route
// barrier before stops, nothing stopped twice, Wake) run after every Step.
// Each run then lets the world cooperate (everything passing, edges
// acknowledging, an operator promoting) and requires the rollout to finish.
func TestRandomScripts(t *testing.T) {
	runs := 100
	if testing.Short() {
		runs = 20
	}
	if n, err := strconv.Atoi(os.Getenv("ROLLOUT_RANDOM_RUNS")); err == nil {
		runs = n // deeper runs by hand: ROLLOUT_RANDOM_RUNS=5000
	}
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 99))
		w := newWorld(t)
		w.t = quietTB{t} // keep the log readable: only failures print
		var trace []string
		do := func(f ...string) {
			trace = append(trace, strings.Join(f, " "))
			if err := w.exec(f); err != nil {
				t.Fatalf("seed %d: %v\nscript:\n%s", seed, err, strings.Join(trace, "\n"))
			}
		}
		do("stable", "v1", fmt.Sprintf("x%d", 1+rng.IntN(4)))
		next := uint64(2)
		deploy := func() {
			strategies := []string{"rolling", "blue_green", "canary"}
			f := []string{"deploy", strategies[rng.IntN(3)], fmt.Sprintf("v%d", next),
				fmt.Sprintf("count=%d", rng.IntN(5)+1), fmt.Sprintf("max_parallel=%d", rng.IntN(3)+1),
				"healthy_deadline=40s", "flap=5s", "scale_down_delay=20s", "supersede"}
			next++
			if f[1] == "rolling" && rng.IntN(2) == 0 {
				// max_surge and max_unavailable instead of max_parallel
				// (the runner checks their bounds after every Step).
				amounts := []string{"0", "1", "2", "25%", "50%", "100%"}
				su, un := amounts[rng.IntN(len(amounts))], amounts[rng.IntN(len(amounts))]
				if su == "0" && un == "0" {
					un = "1"
				}
				f[4] = "max_surge=" + su
				f = append(f, "max_unavailable="+un)
			}
			if f[1] == "rolling" && rng.IntN(3) == 0 {
				f = append(f, fmt.Sprintf("stagger=%ds", rng.IntN(20)))
			}
			if rng.IntN(2) == 0 {
				f = append(f, "auto_revert")
			}
			if rng.IntN(3) == 0 {
				f = append(f, "auto_promote")
			}
			var steps []string
			for wgt := rng.IntN(30) + 1; wgt <= 100; wgt += rng.IntN(50) + 1 {
				switch rng.IntN(3) {
				case 0:
					steps = append(steps, fmt.Sprintf("%d:manual", wgt))
				case 1:
					steps = append(steps, fmt.Sprintf("%d:%ds", wgt, rng.IntN(30)))
				default:
					steps = append(steps, fmt.Sprint(wgt))
				}
			}
			f = append(f, "steps="+strings.Join(steps, ","))
			do(f...)
		}
		deploy()
		for range 60 {
			ids := slices.Sorted(maps.Keys(w.instances))
			switch k := rng.IntN(20); {
			case k < 7 && len(ids) > 0:
				h := []string{"passing", "passing", "passing", "critical", "dead", "starting"}[rng.IntN(6)]
				do("report", ids[rng.IntN(len(ids))], h)
			case k < 11:
				do("tick", fmt.Sprintf("%ds", rng.IntN(20)+1))
			case k < 14:
				do("ack")
			case k < 15:
				do("pause")
			case k < 16:
				do("resume")
			case k < 17:
				if rng.IntN(2) == 0 {
					do("promote", "full")
				} else {
					do("promote")
				}
			case k < 18 && rng.IntN(3) == 0:
				do("abort")
			case k < 18 && len(ids) > 0 && rng.IntN(2) == 0:
				do("lose", ids[rng.IntN(len(ids))]) // its node went away
			case k < 18:
				// An allocation leaves the state while its agent still
				// runs it: unowned, passing or not, until it is gone.
				if un := slices.Sorted(maps.Keys(w.unowned)); len(un) > 0 && (len(ids) == 0 || rng.IntN(2) == 0) {
					do("unowned", un[rng.IntN(len(un))], []string{"passing", "critical", "gone"}[rng.IntN(3)])
				} else if len(ids) > 0 {
					do("disown", ids[rng.IntN(len(ids))])
				}
			case k < 19:
				deploy()
			}
		}
		// The world cooperates: the rollout must finish.
		for range 40 {
			if Done(w.current()) {
				break
			}
			for _, id := range slices.Sorted(maps.Keys(w.unowned)) {
				do("unowned", id, "gone") // stopped by their agents
			}
			for _, id := range slices.Sorted(maps.Keys(w.instances)) {
				do("report", id, "passing")
			}
			do("ack")
			do("resume")
			do("promote")
			do("tick", "10s")
		}
		if s := w.current(); !Done(s) {
			t.Fatalf("seed %d: rollout not done: %s %s stage %s step %d\nscript:\n%s", seed, phaseName(s.Phase), s.Message, s.Stage, s.Step, strings.Join(trace, "\n"))
		}
	}
}

// quietTB drops the runner's per-event log lines.
type quietTB struct{ testing.TB }

func (quietTB) Logf(string, ...any) {}
