package e2e_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// TestRollingUpdateStaysWithinSurgeBounds runs a real coordinator, Consul
// and a node agent with Docker: 4 instances of v1 are replaced by v2 with
// max_surge 1 and max_unavailable 1, and the passing instances Consul
// holds (what the edges route to) are sampled all along. At no sample are
// more than count+max_surge (5) passing, nor fewer than
// count-max_unavailable (3).
func TestRollingUpdateStaysWithinSurgeBounds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, a coordinator and a node agent with Docker containers")
	}
	requireDocker(t)
	c := testenv.StartConsul(t, testenv.ConsulACL())
	startAgent(t, c.Addr())
	s := &scenario{t: t, deploy: startCoordinator(t, c.Addr()), consul: c.AdminClient(t), name: unique("surge")}

	v1 := s.deployCount("v1", 4, quick(&deployv1.UpdateStrategy{MaxParallel: 4}))
	s.waitState(v1, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 90*time.Second)
	testenv.Until(t, 30*time.Second, "4 passing v1 instances", func() string {
		if got := s.passing(); got[1] != 4 {
			return fmt.Sprintf("passing %v", got)
		}
		return ""
	})

	var (
		mu       sync.Mutex
		samples  int
		lo, hi   = 1 << 30, 0
		mixed    bool
		violated []string
	)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			got := s.instances(true)
			n := got[1] + got[2]
			mu.Lock()
			samples++
			lo, hi = min(lo, n), max(hi, n)
			if got[1] > 0 && got[2] > 0 {
				mixed = true
			}
			if n > 5 || n < 3 {
				violated = append(violated, fmt.Sprintf("%s: passing %v", time.Now().Format("15:04:05.000"), got))
			}
			mu.Unlock()
		}
	}()
	v2 := s.deployCount("v2", 4, quick(&deployv1.UpdateStrategy{MaxSurge: "1", MaxUnavailable: "25%"}))
	s.waitState(v2, deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, 120*time.Second)
	testenv.Until(t, 30*time.Second, "only v2 passing", func() string {
		if got := s.passing(); got[1] != 0 || got[2] != 4 {
			return fmt.Sprintf("passing %v", got)
		}
		return ""
	})
	close(done)
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d samples: passing instances between %d and %d", samples, lo, hi)
	if len(violated) > 0 {
		t.Errorf("passing instances outside [3, 5] (count 4, max_surge 1, max_unavailable 25%%): %v", violated)
	}
	if !mixed {
		t.Errorf("no sample saw v1 and v2 passing together: the update was not rolling")
	}
}
