package state

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// A request_id is an idempotency key, with the semantics of Stripe's
// Idempotency-Key: a retry of the same request returns the original answer
// (Replayed), and a different request under a key already used is refused
// with ErrRequestReused (AlreadyExists), never silently answered with the
// original. "The same request" is judged on what the request asks for, not
// on its metadata (created_by, reason, supersede): a deploy's normalized
// spec, a rollback's service and target release.
//
// A deploy's spec is compared as the request sent it: the versions the
// state pinned when it applied the original (the request's unversioned
// secret and config mounts, recorded in its RequestRecord) are left out,
// so a retry after a secret's update replays instead of being refused.
//
// Specs are compared with proto.Equal, the canonical semantic comparison
// (independent of field order, map order and encoding), rather than by
// marshalled bytes, whose stability protobuf does not promise across
// library versions: Apply must decide the same on every replica.

// replayDeploy answers a deploy whose request_id was seen before: the
// original result when the spec is the same, an ErrRequestReused error
// when it differs. ok is false for a request_id not seen.
func (f *FSM) replayDeploy(op *statev1.DeployOp) (any, bool) {
	res, ok := f.replay(op.GetRequestId())
	if !ok {
		return nil, false
	}
	rel := res.Release
	switch {
	case rel == nil:
		return fmt.Errorf("request_id %q was used before for a release that no longer exists; use a new request_id: %w", op.GetRequestId(), ErrRequestReused), true
	case rel.GetRollbackOf() != 0:
		return fmt.Errorf("request_id %q was used for a rollback (release %d of service %q), not this deploy; use a new request_id: %w",
			op.GetRequestId(), rel.GetNumber(), rel.GetService(), ErrRequestReused), true
	case !proto.Equal(f.requestedSpec(op.GetRequestId(), rel.GetSpec()), op.GetSpec()):
		return fmt.Errorf("request_id %q was used for release %d of service %q with a different spec; use a new request_id for a new deploy: %w",
			op.GetRequestId(), rel.GetNumber(), rel.GetService(), ErrRequestReused), true
	}
	return res, true
}

// replayRollback is replayDeploy for a rollback: the same service and, when
// the request names one, the same target release.
func (f *FSM) replayRollback(op *statev1.RollbackOp) (any, bool) {
	res, ok := f.replay(op.GetRequestId())
	if !ok {
		return nil, false
	}
	rel := res.Release
	switch {
	case rel == nil:
		return fmt.Errorf("request_id %q was used before for a release that no longer exists; use a new request_id: %w", op.GetRequestId(), ErrRequestReused), true
	case rel.GetService() != op.GetService() || rel.GetRollbackOf() == 0:
		return fmt.Errorf("request_id %q was used for release %d of service %q, not this rollback of %q; use a new request_id: %w",
			op.GetRequestId(), rel.GetNumber(), rel.GetService(), op.GetService(), ErrRequestReused), true
	case op.GetToRelease() != 0 && op.GetToRelease() != rel.GetRollbackOf():
		return fmt.Errorf("request_id %q was used for release %d of service %q, a rollback to release %d, not %d; use a new request_id: %w",
			op.GetRequestId(), rel.GetNumber(), rel.GetService(), rel.GetRollbackOf(), op.GetToRelease(), ErrRequestReused), true
	}
	return res, true
}

// requestedSpec is the spec the deploy with request id rid sent, given the
// spec of the release it made: its pinned mounts unpinned again.
func (f *FSM) requestedSpec(rid string, released *deployv1.ServiceSpec) *deployv1.ServiceSpec {
	rec := f.requests[rid]
	return unpinned(released, rec.GetUnpinnedSecrets(), rec.GetUnpinnedConfigs())
}

// KnownRequest reports whether request id rid was recorded by a deploy or
// rollback (a write with it is then answered by a replay or refused).
func (f *FSM) KnownRequest(rid string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.requests[rid]
	return ok
}
