package engine_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/internal/coordtest"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// searchableDir is a temporary directory that the process driver's
// children (user nobody, when the agent runs as root) can reach, unlike
// t.TempDir, whose parent is private.
func searchableDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "slipway-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestEngineReassertsIntentAfterConsulLosesIt restarts the Consul dev agent,
// which keeps no data: the agents register their instances again, and the
// leader writes the traffic intent again although its generation did not
// move (before, it cached the generation it had written and never did, so
// edges had no route for the service until the next deploy).
func TestEngineReassertsIntentAfterConsulLosesIt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a node agent and demo processes")
	}
	c := testenv.StartConsul(t)
	imgDir := searchableDir(t)
	buildDemo(t, imgDir, "v1")
	startAgent(t, c.Addr(), imgDir)
	co := coordtest.Start(t, c.Addr(), nil)
	e := newE2E(t, co, c.Addr())
	v1 := e.doDeploy("slipway/demo:v1", nil, quick(&deployv1.UpdateStrategy{}))
	e.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 60*time.Second)
	// The intent is written by the act stage of the pass that committed
	// the verdict, so it may land just after SUCCEEDED is seen.
	var want *edgev1.TrafficIntent
	testenv.Until(t, 10*time.Second, "an intent after the first deploy", func() string {
		if want = e.intent(); want == nil {
			return "no intent"
		}
		return ""
	})

	c.Stop()
	c.Start() // a dev agent: every key and registration is gone
	t0 := time.Now()
	testenv.Until(t, 30*time.Second, "intent written again with the same generation", func() string {
		if got := e.intent(); !proto.Equal(got, want) {
			return fmt.Sprintf("intent %v, want %v", got, want)
		}
		return ""
	})
	t.Logf("intent back %s after the Consul restart", time.Since(t0).Round(100*time.Millisecond))
	testenv.Until(t, 30*time.Second, "instances registered again", func() string {
		if got := e.passingOn(); len(got) == 0 {
			return "no passing instance"
		}
		return ""
	})
}
