package reconcile

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/nodeagent/allocation"
)

func spec(id, image string) allocation.Spec {
	return allocation.Spec{ID: id, NodeID: "n1", Service: "web", Release: 1, Image: image, Port: 8080}
}

func TestReconcile(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := spec("a", "img:v1"), spec("b", "img:v1")
	stopped := spec("c", "img:v1")
	stopped.Stopped = true
	fa := a.Fingerprint()
	tests := []struct {
		name    string
		desired []allocation.Spec
		obs     Observed
		want    Plan
	}{
		{
			name:    "empty host starts everything",
			desired: []allocation.Spec{b, a},
			want: Plan{Actions: []Action{
				{Kind: Start, AllocID: "a", Reason: "desired and not running"},
				{Kind: Start, AllocID: "b", Reason: "desired and not running"},
			}},
		},
		{
			name:    "converged is a no-op",
			desired: []allocation.Spec{a},
			obs: Observed{
				Instances:  map[string]Instance{"a": {Fingerprint: fa, Running: true}},
				Registered: map[string]bool{"a": true},
			},
		},
		{
			name: "unwanted registered instance is drained",
			obs: Observed{
				Instances:  map[string]Instance{"a": {Fingerprint: fa, Running: true}},
				Registered: map[string]bool{"a": true},
			},
			want: Plan{Actions: []Action{{Kind: Stop, AllocID: "a", Drain: true, Reason: "not in the desired set"}}},
		},
		{
			name: "unwanted exited instance is removed without drain",
			obs:  Observed{Instances: map[string]Instance{"a": {Fingerprint: fa}}},
			want: Plan{Actions: []Action{{Kind: Stop, AllocID: "a", Reason: "not in the desired set"}}},
		},
		{
			name:    "desired stopped drains",
			desired: []allocation.Spec{stopped},
			obs: Observed{
				Instances:  map[string]Instance{"c": {Fingerprint: stopped.Fingerprint(), Running: true}},
				Registered: map[string]bool{"c": true},
			},
			want: Plan{Actions: []Action{{Kind: Stop, AllocID: "c", Drain: true, Reason: "desired state stopped"}}},
		},
		{
			name: "orphan registration is removed",
			obs:  Observed{Registered: map[string]bool{"x": true}},
			want: Plan{Actions: []Action{{Kind: Deregister, AllocID: "x", Reason: "registered without an instance"}}},
		},
		{
			name:    "running but unregistered (Consul restarted) is registered",
			desired: []allocation.Spec{a},
			obs:     Observed{Instances: map[string]Instance{"a": {Fingerprint: fa, Running: true}}},
			want:    Plan{Actions: []Action{{Kind: Register, AllocID: "a", Reason: "running but not registered"}}},
		},
		{
			name:    "changed spec replaces the instance",
			desired: []allocation.Spec{spec("a", "img:v2")},
			obs: Observed{
				Instances:  map[string]Instance{"a": {Fingerprint: fa, Running: true}},
				Registered: map[string]bool{"a": true},
			},
			want: Plan{Actions: []Action{{Kind: Stop, AllocID: "a", Drain: true, Reason: "spec changed"}}},
		},
		{
			name:    "busy allocations are left alone",
			desired: []allocation.Spec{a},
			obs:     Observed{Busy: map[string]bool{"a": true}},
		},
		{
			name:    "crash noticed without a recorded failure restarts after the delay",
			desired: []allocation.Spec{a},
			obs: Observed{
				Instances:  map[string]Instance{"a": {Fingerprint: fa}},
				Registered: map[string]bool{"a": true},
				Now:        now,
			},
			want: Plan{RetryAt: now.Add(time.Second)},
		},
		{
			name:    "first crash restarts after the default delay",
			desired: []allocation.Spec{a},
			obs: Observed{
				Instances: map[string]Instance{"a": {Fingerprint: fa}},
				Failures:  map[string]Failure{"a": {Fingerprint: fa, Count: 1, WindowStart: now, At: now}},
				Now:       now.Add(time.Second),
			},
			want: Plan{Actions: []Action{{Kind: Restart, AllocID: "a", Reason: "instance exited; restart 1 of 3"}}},
		},
		{
			name:    "second crash waits for the doubled backoff",
			desired: []allocation.Spec{a},
			obs: Observed{
				Instances: map[string]Instance{"a": {Fingerprint: fa}},
				Failures:  map[string]Failure{"a": {Fingerprint: fa, Count: 2, WindowStart: now.Add(-time.Minute), At: now}},
				Now:       now.Add(1500 * time.Millisecond),
			},
			want: Plan{RetryAt: now.Add(2 * time.Second)},
		},
		{
			name:    "too many crashes in the interval gives up (mode fail)",
			desired: []allocation.Spec{a},
			obs: Observed{
				Instances: map[string]Instance{"a": {Fingerprint: fa}},
				Failures:  map[string]Failure{"a": {Fingerprint: fa, Count: 4, WindowStart: now.Add(-time.Minute), At: now}},
				Now:       now.Add(time.Hour),
			},
			want: Plan{Actions: []Action{{Kind: GiveUp, AllocID: "a",
				Reason: "exited 4 times within 5m0s, more than the restart policy's 3 attempts (mode fail)"}}},
		},
		{
			name:    "a failed start is retried after the backoff",
			desired: []allocation.Spec{a},
			obs: Observed{
				Failures: map[string]Failure{"a": {Fingerprint: fa, StartFailures: 2, FirstStartFailure: now.Add(-time.Second), At: now}},
				Now:      now.Add(2 * time.Second),
			},
			want: Plan{Actions: []Action{{Kind: Start, AllocID: "a", Reason: "desired and not running"}}},
		},
		{
			name:    "a failed start waits for its backoff",
			desired: []allocation.Spec{a},
			obs: Observed{
				Failures: map[string]Failure{"a": {Fingerprint: fa, StartFailures: 1, FirstStartFailure: now, At: now}},
				Now:      now,
			},
			want: Plan{RetryAt: now.Add(time.Second)},
		},
		{
			name:    "permanent failure is not retried, stale registration removed",
			desired: []allocation.Spec{a},
			obs: Observed{
				Registered: map[string]bool{"a": true},
				Failures:   map[string]Failure{"a": {Fingerprint: fa, Count: 1, Permanent: true, At: now}},
				Now:        now.Add(time.Hour),
			},
			want: Plan{Actions: []Action{{Kind: Deregister, AllocID: "a", Reason: "allocation failed"}}},
		},
		{
			name:    "a failure of an older spec does not block the new one",
			desired: []allocation.Spec{spec("a", "img:v2")},
			obs: Observed{
				Failures: map[string]Failure{"a": {Fingerprint: fa, Count: 1, Permanent: true, At: now}},
				Now:      now,
			},
			want: Plan{Actions: []Action{{Kind: Start, AllocID: "a", Reason: "desired and not running"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desired := map[string]allocation.Spec{}
			for _, s := range tt.desired {
				desired[s.ID] = s
			}
			got := Reconcile(desired, tt.obs)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Reconcile() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// An agent that was seen dead keeps its instances out of traffic until a
// leader confirms its desired set: registered ones are deregistered (not
// stopped), nothing is started, restarted or registered, and instances
// outside the set are still stopped.
func TestReconcileUnconfirmed(t *testing.T) {
	a, b, c := spec("a", "img:v1"), spec("b", "img:v1"), spec("c", "img:v1")
	desired := map[string]allocation.Spec{"a": a, "b": b, "c": c}
	obs := Observed{
		Instances: map[string]Instance{
			"a": {Fingerprint: a.Fingerprint(), Running: true}, // registered: withheld
			"b": {Fingerprint: b.Fingerprint(), Running: true}, // not registered: left alone
			"x": {Fingerprint: "old", Running: true},           // not desired: stopped
		},
		Registered:  map[string]bool{"a": true, "x": true},
		Unconfirmed: true,
	}
	want := Plan{Actions: []Action{
		{Kind: Deregister, AllocID: "a", Reason: "held out of traffic until a leader confirms the desired set"},
		{Kind: Stop, AllocID: "x", Drain: true, Reason: "not in the desired set"},
	}}
	if diff := cmp.Diff(want, Reconcile(desired, obs)); diff != "" {
		t.Errorf("unconfirmed plan (-want +got):\n%s", diff)
	}
	obs.Unconfirmed = false
	got := Reconcile(desired, obs)
	kinds := map[string]Kind{}
	for _, act := range got.Actions {
		kinds[act.AllocID] = act.Kind
	}
	if kinds["b"] != Register || kinds["c"] != Start {
		t.Errorf("confirmed plan = %v, want b registered and c started", got.Actions)
	}
}
