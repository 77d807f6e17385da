package engine_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// What the leader wrote to Consul is re-asserted from raft state, never
// trusted to still be there: an intent key lost (a Consul agent restarted
// without its data) or changed behind the leader's back is rewritten on
// the next pass, though its generation did not move; an intact one is not
// rewritten.
func TestIntentReassertedWhenLostOrChanged(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	want := h.fsm.Intent("web")
	if want == nil || !proto.Equal(h.routes.last("web"), want) {
		t.Fatalf("intent written %v, committed %v", h.routes.last("web"), want)
	}
	n := h.routes.writes("web")
	h.pass()
	h.pass()
	if got := h.routes.writes("web"); got != n {
		t.Errorf("an intact intent was rewritten: %d writes, want %d", got, n)
	}

	// Consul loses the key: the next pass writes it again, same generation.
	h.routes.lose("web", nil)
	h.pass()
	if held, _ := h.routes.Intents(t.Context()); !proto.Equal(held["web"], want) {
		t.Fatalf("after the key was lost, Consul holds %v, want %v", held["web"], want)
	}

	// Changed behind the leader's back (an older generation, other weights).
	stale := proto.CloneOf(want)
	stale.Generation--
	stale.Weights = map[string]int32{"9": 100}
	h.routes.lose("web", stale)
	h.pass()
	if held, _ := h.routes.Intents(t.Context()); !proto.Equal(held["web"], want) {
		t.Fatalf("after the key was changed, Consul holds %v, want %v", held["web"], want)
	}

	// While the read-back fails, nothing is rewritten blindly, and the pass
	// says why; once it answers again, the loss is repaired.
	h.routes.lose("web", nil)
	h.routes.readErr = errors.New("consul down")
	n = h.routes.writes("web")
	if _, err := h.eng.Pass(t.Context()); err == nil {
		t.Error("pass with a failing read-back reported no error")
	}
	if got := h.routes.writes("web"); got != n {
		t.Errorf("intent written %d times while the read-back failed, want %d", got-n, 0)
	}
	h.routes.readErr = nil
	h.pass()
	if held, _ := h.routes.Intents(t.Context()); !proto.Equal(held["web"], want) {
		t.Fatalf("after Consul answered again, it holds %v, want %v", held["web"], want)
	}
}

// A leader never puts a newer leader's routes back: an intent of a higher
// generation than the committed one (written by the leader that replaced
// this one, which still runs a last pass) is left as it is, without an
// error (the store refuses such a write too: see the consul adapter's
// TestWriteIntentRefusesLowerGeneration).
func TestIntentOfHigherGenerationNotOverwritten(t *testing.T) {
	h := newHarness(t, "n1", "n2")
	v1 := h.deploy(webSpec("slipway/demo:v1", 2, fast(&deployv1.UpdateStrategy{})))
	h.run(500*time.Millisecond, "v1 succeeded", h.phase(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED))
	want := h.fsm.Intent("web")
	newer := proto.CloneOf(want)
	newer.Generation++
	newer.Weights = map[string]int32{"7": 100}
	h.routes.lose("web", newer)
	n := h.routes.writes("web")
	if _, err := h.eng.Pass(t.Context()); err != nil {
		t.Fatalf("pass: %v", err)
	}
	h.pass()
	if held, _ := h.routes.Intents(t.Context()); !proto.Equal(held["web"], newer) {
		t.Fatalf("Consul holds %v, want the newer leader's %v", held["web"], newer)
	}
	if got := h.routes.writes("web"); got != n {
		t.Errorf("%d writes over a higher generation, want 0", got-n)
	}
}
