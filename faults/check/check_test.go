package check

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func call(client int, k Kind, from, to int, mod func(*Call)) Call {
	c := Call{Client: client, Service: "web", Kind: k, Start: at(from), End: at(to), Outcome: OK, Coordinator: "c0"}
	if mod != nil {
		mod(&c)
	}
	return c
}

func TestLinearizableAcceptsAValidHistory(t *testing.T) {
	h := []Call{
		call(0, Deploy, 0, 10, func(c *Call) { c.RequestID, c.Release, c.Supersede = "a", 1, true }),
		// Concurrent deploys may be ordered either way.
		call(0, Deploy, 20, 40, func(c *Call) { c.RequestID, c.Release, c.Supersede = "b", 3, true }),
		call(1, Deploy, 25, 35, func(c *Call) { c.RequestID, c.Release, c.Supersede = "c", 2, true }),
		// A replay answers the first release.
		call(1, Deploy, 50, 60, func(c *Call) { c.RequestID, c.Release, c.Supersede = "a", 1, true }),
		call(0, GetService, 70, 80, func(c *Call) { c.Release = 3 }),
		call(0, Abort, 90, 100, func(c *Call) { c.Rollout = 3 }),
		// An unknown outcome that took effect later.
		call(1, Rollback, 110, 120, func(c *Call) { c.Outcome, c.Code, c.RequestID = Unknown, "Unavailable", "d" }),
		call(0, GetRollout, 130, 140, func(c *Call) { c.Rollout, c.Final, c.State = 3, true, "ROLLOUT_STATE_ABORTED" }),
		call(0, GetService, 150, 160, func(c *Call) { c.Release = 4 }),
		call(0, Promote, 170, 180, func(c *Call) { c.Outcome, c.Refusal, c.Rollout = Failed, RefusedFinal, 4 }),
	}
	if r := Linearizable("web", Start{}, h, 10*time.Second); r != "" {
		t.Fatal(r)
	}
}

func TestLinearizableFindsViolations(t *testing.T) {
	base := []Call{
		call(0, Deploy, 0, 10, func(c *Call) { c.RequestID, c.Release, c.Supersede = "a", 1, true }),
		call(0, Deploy, 20, 30, func(c *Call) { c.RequestID, c.Release, c.Supersede = "b", 2, true }),
	}
	cases := map[string]Call{
		"stale read":           call(1, GetService, 40, 50, func(c *Call) { c.Release = 1 }),
		"number reused":        call(1, Deploy, 40, 50, func(c *Call) { c.RequestID, c.Release, c.Supersede = "c", 2, true }),
		"replay with new":      call(1, Deploy, 40, 50, func(c *Call) { c.RequestID, c.Release, c.Supersede = "a", 3, true }),
		"command on old":       call(1, Abort, 40, 50, func(c *Call) { c.Rollout = 1 }),
		"non-final old read":   call(1, GetRollout, 40, 50, func(c *Call) { c.Rollout, c.State = 1, "ROLLOUT_STATE_RUNNING" }),
		"active after release": call(1, Deploy, 40, 50, func(c *Call) { c.Outcome, c.Refusal, c.RequestID = Failed, RefusedActive, "z" }),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			h := append(append([]Call(nil), base...), bad)
			if name == "active after release" {
				// Known final first: a read showed the rollout finished.
				h = append(append([]Call(nil), base...),
					call(1, GetRollout, 35, 38, func(c *Call) { c.Rollout, c.Final, c.State = 2, true, "ROLLOUT_STATE_SUCCEEDED" }), bad)
			}
			r := Linearizable("web", Start{}, h, 10*time.Second)
			if !strings.Contains(r, "not linearizable") {
				t.Fatalf("want a violation, got %q", r)
			}
		})
	}
}

func TestAckedPresent(t *testing.T) {
	calls := []Call{call(0, Deploy, 0, 10, func(c *Call) { c.RequestID, c.Release = "a", 1 }),
		call(0, Deploy, 20, 30, func(c *Call) { c.RequestID, c.Release = "b", 2 })}
	good := []Release{{"web", 1, "a"}, {"web", 2, "b"}}
	if v := AckedPresent(calls, map[string][]Release{"c0": good, "c1": good}); len(v) != 0 {
		t.Fatal(v)
	}
	v := AckedPresent(calls, map[string][]Release{"c0": good, "c1": {{"web", 1, "a"}, {"web", 1, "b"}}})
	if len(v) != 2 || !strings.Contains(v[0], "c1 holds release web/1 twice") || !strings.Contains(v[1], "c1 holds it as release 1") {
		t.Fatalf("violations = %q", v)
	}
	v = AckedPresent(calls, map[string][]Release{"c0": good, "c2": good[:1]})
	if len(v) != 1 || !strings.Contains(v[0], "missing on c2") {
		t.Fatalf("violations = %q", v)
	}
}

func TestStartedOnce(t *testing.T) {
	ok := []AgentEvent{
		{At: at(0), Node: "a", Alloc: "x", Msg: "instance started"},
		{At: at(5), Node: "a", Alloc: "x", Msg: "failed", State: "FAILED"},
		{At: at(10), Node: "a", Alloc: "x", Msg: "instance started"},
		{At: at(20), Node: "a", Alloc: "x", Msg: "adopted instance"},
	}
	if v := StartedOnce(ok); len(v) != 0 {
		t.Fatal(v)
	}
	twice := append(ok, AgentEvent{At: at(30), Node: "a", Alloc: "x", Msg: "instance started"})
	if v := StartedOnce(twice); len(v) != 1 || !strings.Contains(v[0], "still ran") {
		t.Fatalf("violations = %q", v)
	}
	elsewhere := append(ok, AgentEvent{At: at(30), Node: "b", Alloc: "x", Msg: "instance started"})
	if v := StartedOnce(elsewhere); len(v) != 1 || !strings.Contains(v[0], "before on a") {
		t.Fatalf("violations = %q", v)
	}
}

func TestEdgeFailuresAndWindows(t *testing.T) {
	w := []Window{{From: at(100), To: at(200), Fault: "agent-kill", Excuses: true}, {From: at(300), To: at(400), Fault: "leader-kill"}}
	fails := []EdgeRequest{{At: at(150), Edge: "e0", Service: "web", Err: "502"}, {At: at(350), Edge: "e0", Service: "web", Err: "502"},
		{At: at(500), Edge: "e1", Service: "web", Err: "EOF"}}
	v := EdgeFailures(fails, w)
	if len(v) != 2 || !strings.Contains(v[0], "leader-kill (not on the data plane)") || !strings.Contains(v[1], "fault active: none") {
		t.Fatalf("violations = %q", v)
	}
	// Sent just before the fault began and failed during it: excused.
	// Sent and failed before it: not.
	inFlight := []EdgeRequest{{At: at(90), Done: at(110), Edge: "e0", Service: "web", Err: "connection refused"},
		{At: at(80), Done: at(95), Edge: "e0", Service: "web", Err: "EOF"}}
	if v := EdgeFailures(inFlight, w); len(v) != 1 || !strings.Contains(v[0], "EOF") {
		t.Fatalf("in-flight violations = %q", v)
	}
}

func TestServingOrphansTokens(t *testing.T) {
	samples := []Serving{{At: at(0), Service: "web", Passing: 3, Bound: 3}, {At: at(1), Service: "web", Passing: 4, Bound: 3}}
	if v := ServingBound(samples, nil); len(v) != 1 {
		t.Fatalf("serving = %q", v)
	}
	if v := ServingBound(samples, []Window{{From: at(1), To: at(2), Excuses: true}}); len(v) != 0 {
		t.Fatalf("serving in an excused window = %q", v)
	}
	v := Orphans([]Registration{{"web", "x", "a"}, {"web", "y", "a"}}, map[string][]string{"a": {"x"}}, map[string][]string{"a": {"x", "z"}})
	if len(v) != 2 || !strings.Contains(v[0], "instance y") || !strings.Contains(v[1], "allocation z") {
		t.Fatalf("orphans = %q", v)
	}
	v = TokensMonotonic([]Token{{At: at(0), Node: "a", Term: 2, Index: 5}, {At: at(1), Node: "a", Term: 2, Index: 9}, {At: at(2), Node: "a", Term: 1, Index: 99}, {At: at(3), Node: "b", Term: 1, Index: 1}})
	if len(v) != 1 || !strings.Contains(v[0], "accepted fencing token 1/99 after 2/9") {
		t.Fatalf("tokens = %q", v)
	}
	tab := Table([]Row{{Scenario: "leader-kill", Runs: 2, Violations: map[string]int{"orphans": 1}, Requests: 10}})
	if !strings.Contains(tab, "leader-kill") || !strings.Contains(tab, "orphans") {
		t.Fatal(tab)
	}
}
