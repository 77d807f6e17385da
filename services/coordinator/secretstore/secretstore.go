// Package secretstore seals and opens the values of secrets and configs:
// the leader seals a value with its keyring's primary key before it
// proposes the raft entry, and opens the stored ciphertext for the node
// agents that run the allocations mounting it.
package secretstore

import (
	"errors"
	"fmt"

	"slipway.dev/coordinator/keyring"
	"slipway.dev/coordinator/state"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// ErrNoKeyring: this coordinator runs without -keyring-file.
var ErrNoKeyring = errors.New("secretstore: this coordinator has no keyring (start it with -keyring-file; create one with 'slipway-coordinator keyring init'): secrets and configs are refused")

// MaxValueBytes bounds one value (Swarm's limit is 500 KiB; a value is
// replicated in every raft entry and snapshot, and sent in every sync of
// the nodes that mount it).
const MaxValueBytes = 64 << 10

// Store seals and opens values with a keyring file, over the replicated
// state's ciphertexts.
type Store struct {
	fsm  *state.FSM
	file *keyring.File // nil: no keyring
}

// New returns a store; file may be nil (every operation then fails with
// ErrNoKeyring).
func New(fsm *state.FSM, file *keyring.File) *Store { return &Store{fsm: fsm, file: file} }

// Enabled reports whether a keyring is configured.
func (s *Store) Enabled() bool { return s != nil && s.file != nil }

func (s *Store) keyring() (*keyring.Keyring, error) {
	if !s.Enabled() {
		return nil, ErrNoKeyring
	}
	return s.file.Current()
}

// Seal encrypts value as version of a secret, with its digest and size.
func (s *Store) Seal(kind deployv1.SecretKind, name string, version uint64, value []byte, by string) (*statev1.SecretVersionRecord, error) {
	kr, err := s.keyring()
	if err != nil {
		return nil, err
	}
	id, ct, err := kr.Seal(state.SecretAAD(kind, name, version), value)
	if err != nil {
		return nil, err
	}
	return &statev1.SecretVersionRecord{
		Meta:       &deployv1.SecretVersion{Version: version, Digest: kr.Digest(value), Size: uint32(len(value)), KeyId: id, CreatedBy: by},
		Ciphertext: ct,
	}, nil
}

// OpenRecord decrypts a stored version.
func (s *Store) OpenRecord(kind deployv1.SecretKind, name string, v *statev1.SecretVersionRecord) ([]byte, error) {
	kr, err := s.keyring()
	if err != nil {
		return nil, err
	}
	out, err := kr.Open(v.GetMeta().GetKeyId(), state.SecretAAD(kind, name, v.GetMeta().GetVersion()), v.GetCiphertext())
	if err != nil {
		return nil, fmt.Errorf("secretstore: open %s %s version %d: %w", state.KindName(kind), name, v.GetMeta().GetVersion(), err)
	}
	return out, nil
}

// Open decrypts the stored version of a secret.
func (s *Store) Open(kind deployv1.SecretKind, name string, version uint64) ([]byte, error) {
	if !s.Enabled() {
		return nil, ErrNoKeyring
	}
	v, err := s.fsm.SecretVersion(kind, name, version)
	if err != nil {
		return nil, err
	}
	return s.OpenRecord(kind, name, v)
}

// Rekey re-encrypts every stored version not sealed with the primary key
// and returns them (for a RekeySecretsOp) with the primary key's id.
func (s *Store) Rekey() ([]*statev1.SecretRecord, string, int, error) {
	kr, err := s.keyring()
	if err != nil {
		return nil, "", 0, err
	}
	primary := kr.Primary().ID
	var out []*statev1.SecretRecord
	n := 0
	for _, rec := range s.fsm.SecretRecords() {
		var changed []*statev1.SecretVersionRecord
		for _, v := range rec.GetVersions() {
			if v.GetMeta().GetKeyId() == primary {
				continue
			}
			value, err := s.OpenRecord(rec.GetKind(), rec.GetName(), v)
			if err != nil {
				return nil, "", 0, err
			}
			nv, err := s.Seal(rec.GetKind(), rec.GetName(), v.GetMeta().GetVersion(), value, v.GetMeta().GetCreatedBy())
			if err != nil {
				return nil, "", 0, err
			}
			changed = append(changed, nv)
			n++
		}
		if len(changed) > 0 {
			out = append(out, &statev1.SecretRecord{Kind: rec.GetKind(), Name: rec.GetName(), Versions: changed})
		}
	}
	return out, primary, n, nil
}
