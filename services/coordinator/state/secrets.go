package state

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/acl"
	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

// secretsVersion is the first schema version with secret entries.
const secretsVersion = 5

// scopeVersion is the first schema version with secret scopes: a secret
// created by an older entry (or read from an older snapshot) may be mounted
// by every service ("*"), one created by a newer entry by the services its
// entry names (none when it names none). Deploys and rollbacks of newer
// entries are checked against the scope, and pin their unversioned mounts
// when they are applied.
const scopeVersion = 7

// pruneVersion is the first schema version whose secret entries prune old
// versions (see SecretVersionsKept); older entries keep every version, as
// they did when they were first applied.
const pruneVersion = 8

// SecretVersionsKept is how many of a secret's (or config's) newest
// versions are kept when a new version is stored. Older versions are kept
// only while a release of some service pins them (a rollback may go back
// to it); the others are deleted by the same entry, on every coordinator
// alike (it depends only on the state the entry applies to).
const SecretVersionsKept = 5

// SecretResult is the Apply response of a secret entry.
type SecretResult struct {
	// Secret describes the secret after the entry (as it was, for a
	// deletion).
	Secret *deployv1.Secret
}

// RekeyResult is the Apply response of a rekey entry.
type RekeyResult struct {
	// Rekeyed counts the versions whose ciphertext was replaced.
	Rekeyed int
}

// KindName is how secrets are named in messages and additional data:
// "secret" or "config".
func KindName(k deployv1.SecretKind) string {
	if k == deployv1.SecretKind_SECRET_KIND_CONFIG {
		return "config"
	}
	return "secret"
}

// NormalKind maps the unspecified kind to secret.
func NormalKind(k deployv1.SecretKind) deployv1.SecretKind {
	if k == deployv1.SecretKind_SECRET_KIND_CONFIG {
		return k
	}
	return deployv1.SecretKind_SECRET_KIND_SECRET
}

func secretKey(k deployv1.SecretKind, name string) string { return KindName(k) + "/" + name }

// SecretAAD is the additional data a version's ciphertext is sealed with,
// "<kind>/<name>/<version>", so that a ciphertext cannot be moved to
// another secret or version.
func SecretAAD(k deployv1.SecretKind, name string, version uint64) []byte {
	return fmt.Appendf(nil, "%s/%s/%d", KindName(k), name, version)
}

func (f *FSM) applyPutSecret(index, version uint64, at *timestamppb.Timestamp, op *statev1.PutSecretOp) any {
	kind := NormalKind(op.GetKind())
	name := op.GetName()
	v := op.GetVersion()
	scoped := version >= scopeVersion
	if d := specrules.Identifier(name); d != "" {
		return fmt.Errorf("put %s: name %q: %s: %w", KindName(kind), name, d, ErrInvalid)
	}
	if op.GetSetServices() {
		if !scoped {
			return fmt.Errorf("put %s %s: set_services needs schema version %d, the entry has %d: %w", KindName(kind), name, scopeVersion, version, ErrInvalid)
		}
		bad := acl.GlobErrors(op.GetServices())
		for i := range op.GetServices() {
			if d, ok := bad[i]; ok {
				return fmt.Errorf("put %s %s: services[%d]: %s: %w", KindName(kind), name, i, d, ErrInvalid)
			}
		}
	}
	key := secretKey(kind, name)
	rec := f.secrets[key]
	if v == nil && op.GetSetServices() {
		// A scope change only.
		if rec == nil {
			return fmt.Errorf("%s %q: %w", KindName(kind), name, ErrNotFound)
		}
		rec.Services = slices.Clone(op.GetServices())
		f.addAudit(index, at, "", op.GetBy(), KindName(kind)+" scope", "", fmt.Sprintf("%s %s may be mounted by %s", KindName(kind), name, ScopeText(rec.GetServices())))
		return SecretResult{Secret: f.describeSecretLocked(rec)}
	}
	if len(v.GetCiphertext()) == 0 || v.GetMeta().GetKeyId() == "" {
		return fmt.Errorf("put %s %s: no ciphertext or key id: %w", KindName(kind), name, ErrInvalid)
	}
	n := v.GetMeta().GetVersion()
	switch {
	case n == 1 && rec != nil:
		return fmt.Errorf("%s %q exists already (version %d); update it to store a new version: %w", KindName(kind), name, latestVersion(rec), ErrSecretExists)
	case n != 1 && rec == nil:
		return fmt.Errorf("%s %q: %w", KindName(kind), name, ErrNotFound)
	case n != 1 && n != latestVersion(rec)+1:
		return fmt.Errorf("%s %q: version %d is not the next after %d (a concurrent update?): %w", KindName(kind), name, n, latestVersion(rec), ErrInvalid)
	}
	v = proto.CloneOf(v)
	v.Meta.CreatedAt = at
	if rec == nil {
		rec = &statev1.SecretRecord{Kind: kind, Name: name}
		if !scoped {
			// Created before scopes existed: every service could mount it.
			rec.Services = []string{"*"}
		}
		f.secrets[key] = rec
	}
	if scoped && (n == 1 || op.GetSetServices()) {
		rec.Services = slices.Clone(op.GetServices())
	}
	rec.Versions = append(rec.Versions, v)
	var pruned []uint64
	if version >= pruneVersion {
		pruned = f.pruneVersionsLocked(rec)
	}
	action := KindName(kind) + " create"
	if n > 1 {
		action = KindName(kind) + " update"
	}
	detail := fmt.Sprintf("%s %s version %d (%s, %d bytes)", KindName(kind), name, n, v.GetMeta().GetDigest(), v.GetMeta().GetSize())
	if scoped && (n == 1 || op.GetSetServices()) {
		detail += ", may be mounted by " + ScopeText(rec.GetServices())
	}
	if len(pruned) > 0 {
		detail += fmt.Sprintf("; pruned version(s) %v (no release pins them, %d newer kept)", pruned, SecretVersionsKept)
	}
	f.addAudit(index, at, "", v.GetMeta().GetCreatedBy(), action, "", detail)
	return SecretResult{Secret: f.describeSecretLocked(rec)}
}

// ScopeText renders a secret's scope for messages (specrules.ScopeText).
func ScopeText(globs []string) string { return specrules.ScopeText(globs) }

// ScopeViolation describes why the secret or config name, scoped to
// globs, may not be mounted by service; "" when it may. slipctl plan
// applies the same rule (specrules.SecretScope).
func ScopeViolation(kind deployv1.SecretKind, name string, globs []string, service string) string {
	return specrules.SecretScope(KindName(kind), name, globs, service)
}

func (f *FSM) applyDeleteSecret(index uint64, at *timestamppb.Timestamp, op *statev1.DeleteSecretOp) any {
	kind := NormalKind(op.GetKind())
	key := secretKey(kind, op.GetName())
	rec := f.secrets[key]
	if rec == nil {
		return fmt.Errorf("%s %q: %w", KindName(kind), op.GetName(), ErrNotFound)
	}
	if users := f.usersLocked(kind, op.GetName()); len(users) > 0 {
		return fmt.Errorf("%s %q is mounted by the latest release of %s: deploy them without it first: %w", KindName(kind), op.GetName(), strings.Join(users, ", "), ErrSecretInUse)
	}
	desc := f.describeSecretLocked(rec)
	delete(f.secrets, key)
	f.addAudit(index, at, "", op.GetBy(), KindName(kind)+" delete", "", fmt.Sprintf("%s %s deleted with its %d versions", KindName(kind), op.GetName(), len(rec.GetVersions())))
	return SecretResult{Secret: desc}
}

func (f *FSM) applyRekeySecrets(op *statev1.RekeySecretsOp) any {
	// Check everything first: nothing is half applied.
	type change struct {
		v   *statev1.SecretVersionRecord
		new *statev1.SecretVersionRecord
	}
	var changes []change
	for _, r := range op.GetSecrets() {
		rec := f.secrets[secretKey(NormalKind(r.GetKind()), r.GetName())]
		if rec == nil {
			return fmt.Errorf("rekey %s %q: %w", KindName(r.GetKind()), r.GetName(), ErrNotFound)
		}
		for _, nv := range r.GetVersions() {
			i := slices.IndexFunc(rec.GetVersions(), func(v *statev1.SecretVersionRecord) bool {
				return v.GetMeta().GetVersion() == nv.GetMeta().GetVersion()
			})
			if i < 0 {
				return fmt.Errorf("rekey %s %q version %d: %w", KindName(r.GetKind()), r.GetName(), nv.GetMeta().GetVersion(), ErrNotFound)
			}
			if len(nv.GetCiphertext()) == 0 || nv.GetMeta().GetKeyId() == "" {
				return fmt.Errorf("rekey %s %q version %d: no ciphertext or key id: %w", KindName(r.GetKind()), r.GetName(), nv.GetMeta().GetVersion(), ErrInvalid)
			}
			changes = append(changes, change{rec.GetVersions()[i], nv})
		}
	}
	for _, c := range changes {
		c.v.Ciphertext = slices.Clone(c.new.GetCiphertext())
		c.v.Meta.KeyId = c.new.GetMeta().GetKeyId()
		// The digest is keyed with the primary key: the new one replaces it.
		if d := c.new.GetMeta().GetDigest(); d != "" {
			c.v.Meta.Digest = d
		}
	}
	return RekeyResult{Rekeyed: len(changes)}
}

// pruneVersionsLocked deletes rec's versions that are neither among its
// SecretVersionsKept newest nor pinned by a release of any service, and
// returns their numbers (ascending). Versions are stored in ascending
// order, so the result depends on the state only.
func (f *FSM) pruneVersionsLocked(rec *statev1.SecretRecord) []uint64 {
	vs := rec.GetVersions()
	if len(vs) <= SecretVersionsKept {
		return nil
	}
	pinned := map[uint64]bool{}
	for _, svc := range sortedKeys(f.services) {
		for _, rel := range f.services[svc].releases {
			for _, m := range mounts(rel.GetSpec(), rec.GetKind()) {
				if m.GetName() == rec.GetName() {
					pinned[m.GetVersion()] = true // 0 (unpinned, older entries): the latest, always kept
				}
			}
		}
	}
	var pruned []uint64
	kept := vs[:0:0]
	for i, v := range vs {
		n := v.GetMeta().GetVersion()
		if i < len(vs)-SecretVersionsKept && !pinned[n] {
			pruned = append(pruned, n)
			continue
		}
		kept = append(kept, v)
	}
	rec.Versions = kept
	return pruned
}

func latestVersion(rec *statev1.SecretRecord) uint64 {
	vs := rec.GetVersions()
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1].GetMeta().GetVersion()
}

// mounts returns the secrets or configs a spec mounts.
func mounts(spec *deployv1.ServiceSpec, kind deployv1.SecretKind) []*deployv1.FileMount {
	if kind == deployv1.SecretKind_SECRET_KIND_CONFIG {
		return spec.GetConfigs()
	}
	return spec.GetSecrets()
}

// usersLocked lists the services whose latest release mounts the secret.
func (f *FSM) usersLocked(kind deployv1.SecretKind, name string) []string {
	var users []string
	for _, svc := range sortedKeys(f.services) {
		rels := f.services[svc].releases
		if len(rels) == 0 {
			continue
		}
		if slices.ContainsFunc(mounts(rels[len(rels)-1].GetSpec(), kind), func(m *deployv1.FileMount) bool { return m.GetName() == name }) {
			users = append(users, svc)
		}
	}
	return users
}

// checkMountsLocked refuses a spec that mounts a secret or version the
// state does not hold. From schema version 7 on it also refuses a mount
// whose secret's scope does not allow the spec's service (a *MountError
// wrapping ErrSecretScope), and pins every unversioned mount to the
// secret's latest version, in place: spec must be the entry's own copy.
// It returns the indexes of the mounts it pinned.
func (f *FSM) checkMountsLocked(spec *deployv1.ServiceSpec, version uint64) (pinned [2][]uint32, err error) {
	scoped := version >= scopeVersion
	for k, kind := range []deployv1.SecretKind{deployv1.SecretKind_SECRET_KIND_SECRET, deployv1.SecretKind_SECRET_KIND_CONFIG} {
		for i, m := range mounts(spec, kind) {
			rec := f.secrets[secretKey(kind, m.GetName())]
			if rec == nil {
				return pinned, fmt.Errorf("%s %q does not exist: %w", KindName(kind), m.GetName(), ErrNotFound)
			}
			if scoped {
				if d := ScopeViolation(kind, m.GetName(), rec.GetServices(), spec.GetName()); d != "" {
					return pinned, &MountError{Field: fmt.Sprintf("spec.%ss[%d].name", KindName(kind), i), Description: d, Err: ErrSecretScope}
				}
				if m.GetVersion() == 0 {
					m.Version = latestVersion(rec)
					pinned[k] = append(pinned[k], uint32(i))
				}
			}
			if !slices.ContainsFunc(rec.GetVersions(), func(v *statev1.SecretVersionRecord) bool { return v.GetMeta().GetVersion() == m.GetVersion() }) {
				return pinned, fmt.Errorf("%s %q has no version %d (latest %d): %w", KindName(kind), m.GetName(), m.GetVersion(), latestVersion(rec), ErrNotFound)
			}
		}
	}
	return pinned, nil
}

// unpinned returns a copy of spec with the versions of the mounts at the
// given indexes (secrets, configs) cleared: the spec as a request sent it.
func unpinned(spec *deployv1.ServiceSpec, secrets, configs []uint32) *deployv1.ServiceSpec {
	if len(secrets)+len(configs) == 0 {
		return spec
	}
	out := proto.CloneOf(spec)
	for _, i := range secrets {
		if int(i) < len(out.GetSecrets()) {
			out.Secrets[i].Version = 0
		}
	}
	for _, i := range configs {
		if int(i) < len(out.GetConfigs()) {
			out.Configs[i].Version = 0
		}
	}
	return out
}

func (f *FSM) describeSecretLocked(rec *statev1.SecretRecord) *deployv1.Secret {
	s := &deployv1.Secret{Kind: rec.GetKind(), Name: rec.GetName(), Version: latestVersion(rec), UsedBy: f.usersLocked(rec.GetKind(), rec.GetName()),
		Services: slices.Clone(rec.GetServices())}
	for _, v := range rec.GetVersions() {
		s.Versions = append(s.Versions, proto.CloneOf(v.GetMeta()))
	}
	return s
}

// Secret describes one secret or config (never its value).
func (f *FSM) Secret(kind deployv1.SecretKind, name string) (*deployv1.Secret, error) {
	kind = NormalKind(kind)
	f.mu.RLock()
	defer f.mu.RUnlock()
	rec := f.secrets[secretKey(kind, name)]
	if rec == nil {
		return nil, fmt.Errorf("%s %q: %w", KindName(kind), name, ErrNotFound)
	}
	return f.describeSecretLocked(rec), nil
}

// Secrets describes every secret or config of a kind, sorted by name.
func (f *FSM) Secrets(kind deployv1.SecretKind) []*deployv1.Secret {
	kind = NormalKind(kind)
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*deployv1.Secret
	for _, key := range sortedKeys(f.secrets) {
		if rec := f.secrets[key]; rec.GetKind() == kind {
			out = append(out, f.describeSecretLocked(rec))
		}
	}
	return out
}

// SecretRecords returns a copy of every stored secret with its
// ciphertexts, sorted by kind then name, for the leader to open or rekey.
func (f *FSM) SecretRecords() []*statev1.SecretRecord {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*statev1.SecretRecord, 0, len(f.secrets))
	for _, key := range sortedKeys(f.secrets) {
		out = append(out, proto.CloneOf(f.secrets[key]))
	}
	return out
}

// SecretVersion returns the stored version of a secret (with its
// ciphertext), for the leader to open.
func (f *FSM) SecretVersion(kind deployv1.SecretKind, name string, version uint64) (*statev1.SecretVersionRecord, error) {
	kind = NormalKind(kind)
	f.mu.RLock()
	defer f.mu.RUnlock()
	rec := f.secrets[secretKey(kind, name)]
	if rec == nil {
		return nil, fmt.Errorf("%s %q: %w", KindName(kind), name, ErrNotFound)
	}
	for _, v := range rec.GetVersions() {
		if v.GetMeta().GetVersion() == version {
			return proto.CloneOf(v), nil
		}
	}
	return nil, fmt.Errorf("%s %q version %d: %w", KindName(kind), name, version, ErrNotFound)
}
