package state_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"slipway.dev/coordinator/state"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// A request_id reused for a different request is refused, naming the key
// and the release it created, and changes nothing; the same request under
// it is still a replay.
func TestRequestIDReusedForADifferentRequest(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "req-1", false)))
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "req-2", true)))

	env := spec("web", "slipway/demo:v1")
	env.Env["A"] = "changed"
	other := spec("api", "slipway/demo:v1")
	for _, tc := range []struct {
		name string
		err  error
		want []string // in the message
	}{
		{"deploy with another image", applyErr(f, l.add(deploy(spec("web", "slipway/demo:v9"), "req-1", false))),
			[]string{`"req-1"`, "release 1", `"web"`, "different spec"}},
		{"deploy with another env value", applyErr(f, l.add(deploy(env, "req-1", true))),
			[]string{`"req-1"`, "release 1", "different spec"}},
		{"deploy of another service", applyErr(f, l.add(deploy(other, "req-1", false))),
			[]string{`"req-1"`, "release 1", `"web"`}},
		{"rollback under a deploy's key", applyErr(f, l.add(rollback("web", 1, "req-2", true))),
			[]string{`"req-2"`, "release 2", "not this rollback"}},
	} {
		if !errors.Is(tc.err, state.ErrRequestReused) {
			t.Errorf("%s: err = %v, want ErrRequestReused", tc.name, tc.err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(tc.err.Error(), w) {
				t.Errorf("%s: error %q does not say %s", tc.name, tc.err, w)
			}
		}
	}
	before, _ := f.MarshalSnapshot()
	_ = applyErr(f, l.add(deploy(spec("web", "slipway/demo:v9"), "req-1", false)))
	after, _ := f.MarshalSnapshot()
	if len(before) != len(after) || bytes.Count(after, []byte("slipway/demo:v9")) != 0 {
		t.Error("a refused reuse changed the state")
	}
	if svc, _ := f.Service("web"); svc.GetLatestRelease() != 2 {
		t.Errorf("latest release = %d, want 2 (nothing created)", svc.GetLatestRelease())
	}

	// A rollback's key: the same target (or none named) replays, another
	// target or service is refused.
	rb := apply(t, f, l.add(rollback("web", 1, "req-3", true))).(state.DeployResult)
	for _, again := range []uint64{1, 0} {
		res, ok := f.Apply(l.add(rollback("web", again, "req-3", true))).(state.DeployResult)
		if !ok || !res.Replayed || res.Release.GetNumber() != rb.Release.GetNumber() {
			t.Errorf("rollback retry to %d = %+v, want a replay of release %d", again, res, rb.Release.GetNumber())
		}
	}
	if err := applyErr(f, l.add(rollback("web", 2, "req-3", true))); !errors.Is(err, state.ErrRequestReused) ||
		!strings.Contains(err.Error(), "rollback to release 1, not 2") {
		t.Errorf("rollback to another target under the same key: err = %v, want ErrRequestReused naming both targets", err)
	}
	if err := applyErr(f, l.add(deploy(spec("web", "slipway/demo:v1"), "req-3", true))); !errors.Is(err, state.ErrRequestReused) {
		t.Errorf("deploy under a rollback's key: err = %v, want ErrRequestReused", err)
	}
}

// An operator command retried with its request_id (after an unknown
// outcome) is recorded once, also when the rollout finished meanwhile; the
// same id with another command is refused and changes nothing.
func TestOperatorCommandRequestID(t *testing.T) {
	l := &log{tb: t}
	f := state.New()
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v1"), "a", false)))
	cmd := func(kind deployv1.CommandKind, full bool, rid string) *statev1.Command {
		c := operator("web-1", kind)
		c.GetOperator().Full, c.GetOperator().RequestId = full, rid
		return c
	}
	first := apply(t, f, l.add(cmd(deployv1.CommandKind_COMMAND_KIND_PAUSE, false, "op-1"))).(state.RolloutResult)
	if first.Replayed || first.Rollout.GetCommands()[0].GetRequestId() != "op-1" {
		t.Fatalf("first pause: replayed=%v commands=%v", first.Replayed, first.Rollout.GetCommands())
	}
	again := apply(t, f, l.add(cmd(deployv1.CommandKind_COMMAND_KIND_PAUSE, false, "op-1"))).(state.RolloutResult)
	if !again.Replayed || len(again.Rollout.GetCommands()) != 1 {
		t.Errorf("retried pause: replayed=%v, %d commands, want a replay and 1 command", again.Replayed, len(again.Rollout.GetCommands()))
	}
	err := applyErr(f, l.add(cmd(deployv1.CommandKind_COMMAND_KIND_ABORT, false, "op-1")))
	if !errors.Is(err, state.ErrRequestReused) || !strings.Contains(err.Error(), `"op-1"`) || !strings.Contains(err.Error(), "pause") {
		t.Errorf("abort under a pause's id: err = %v, want ErrRequestReused naming the id and the pause", err)
	}
	apply(t, f, l.add(cmd(deployv1.CommandKind_COMMAND_KIND_PROMOTE, true, "op-2")))
	if err := applyErr(f, l.add(cmd(deployv1.CommandKind_COMMAND_KIND_PROMOTE, false, "op-2"))); !errors.Is(err, state.ErrRequestReused) {
		t.Errorf("promote under a full promote's id: err = %v, want ErrRequestReused", err)
	}
	// Finished meanwhile (superseded): the retry still finds its command.
	apply(t, f, l.add(deploy(spec("web", "slipway/demo:v2"), "b", true)))
	if res := apply(t, f, l.add(cmd(deployv1.CommandKind_COMMAND_KIND_PROMOTE, true, "op-2"))).(state.RolloutResult); !res.Replayed {
		t.Error("retry of a promote on a rollout that finished since: not a replay")
	}
	r, _ := f.Rollout("web-1")
	if n := len(r.GetCommands()); n != 2 {
		t.Errorf("commands recorded = %d, want 2 (pause, promote)", n)
	}
}
