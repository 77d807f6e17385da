package state

import (
	"errors"
	"fmt"
)

// Domain errors returned by FSM reads and carried in Apply responses. The gRPC
// adapter maps them to status codes in one place.
var (
	// ErrNotFound: the named service, release, rollout or node does not exist.
	ErrNotFound = errors.New("state: not found")
	// ErrActiveRollout: the service already has an active rollout and the
	// request did not ask to supersede it.
	ErrActiveRollout = errors.New("state: service has an active rollout")
	// ErrRequestReused: a request_id already used by a different request
	// (another spec, service or target) was sent again.
	ErrRequestReused = errors.New("state: request_id already used by a different request")
	// ErrRolloutFinal: the rollout has reached a final state and takes no
	// more commands.
	ErrRolloutFinal = errors.New("state: rollout is in a final state")
	// ErrNoEarlierRelease: a rollback without a target was asked of a
	// service that has a single release.
	ErrNoEarlierRelease = errors.New("state: no earlier release to roll back to")
	// ErrInvalid: the entry is malformed (a bug in the caller: the API
	// validates before proposing).
	ErrInvalid = errors.New("state: invalid entry")
	// ErrUnsupportedVersion: the entry or snapshot was written by a newer
	// coordinator than this one.
	ErrUnsupportedVersion = errors.New("state: unsupported schema version")
	// ErrACLBootstrapped: the ACL bootstrap was done already (it works once
	// per cluster).
	ErrACLBootstrapped = errors.New("state: ACL bootstrap already done")
)

// Secret errors.
var (
	// ErrSecretExists: a secret or config of that kind and name exists
	// already.
	ErrSecretExists = errors.New("state: secret exists already")
	// ErrSecretInUse: the latest release of a service mounts the secret.
	ErrSecretInUse = errors.New("state: secret in use")
	// ErrSecretScope: a spec mounts a secret or config whose scope does not
	// allow its service (the error is a *MountError naming the field).
	ErrSecretScope = errors.New("state: secret not allowed for the service")
	// ErrReleaseChanged: a deploy's expected_release is not the service's
	// latest release (the error is a *ReleaseChangedError).
	ErrReleaseChanged = errors.New("state: the service's latest release changed")
)

// MountError is a spec mount the state refuses, named as the API names
// field violations ("spec.secrets[0].name").
type MountError struct {
	// Field is the mount's field path.
	Field string
	// Description says what is wrong.
	Description string
	// Err is the sentinel (ErrSecretScope).
	Err error
}

func (e *MountError) Error() string { return e.Field + ": " + e.Description }
func (e *MountError) Unwrap() error { return e.Err }

// ReleaseChangedError is a deploy refused by its expected_release.
type ReleaseChangedError struct {
	// Service is the service.
	Service string
	// Expected is the release the deploy was based on, Current the
	// service's latest (0: none).
	Expected, Current uint64
}

func (e *ReleaseChangedError) Error() string {
	return fmt.Sprintf("service %q: the deploy expected release %d to be the latest, but the latest is %d (a deploy landed in between: read the service again and retry)",
		e.Service, e.Expected, e.Current)
}
func (e *ReleaseChangedError) Unwrap() error { return ErrReleaseChanged }
