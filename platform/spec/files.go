package spec

import (
	"fmt"

	"slipway.dev/platform/nodepolicy"
	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// MaxFileMounts bounds spec.secrets and spec.configs together.
const MaxFileMounts = 64

// Default targets and modes of mounted secrets and configs (as Swarm's).
const (
	// DefaultSecretDir is where a secret is mounted without a target:
	// DefaultSecretDir/<name>.
	DefaultSecretDir = "/run/secrets"
	// DefaultSecretMode is a secret's mode without one.
	DefaultSecretMode = 0o400
	// DefaultConfigMode is a config's mode without one (a config without a
	// target is mounted at /<name>).
	DefaultConfigMode = 0o444
)

// FileTarget is where a mount puts its file, defaulted.
func FileTarget(m *deployv1.FileMount, config bool) string {
	if m.GetTarget() != "" {
		return m.GetTarget()
	}
	if config {
		return "/" + m.GetName()
	}
	return DefaultSecretDir + "/" + m.GetName()
}

// validateFiles checks spec.secrets and spec.configs: DNS-label names, each
// at most once per kind, absolute clean targets, no target twice (nor a
// host mount's container path), permission bits only.
func validateFiles(v *violations, s *deployv1.ServiceSpec) {
	if n := len(s.GetSecrets()) + len(s.GetConfigs()); n > MaxFileMounts {
		v.add("spec.secrets", "%d secrets and configs, more than the %d allowed", n, MaxFileMounts)
	}
	targets := map[string]string{}
	for _, m := range s.GetSecurity().GetHostMounts() {
		targets[m.GetContainerPath()] = "a host mount"
	}
	for _, kind := range []struct {
		field  string
		config bool
		list   []*deployv1.FileMount
	}{{"spec.secrets", false, s.GetSecrets()}, {"spec.configs", true, s.GetConfigs()}} {
		names := map[string]bool{}
		for i, m := range kind.list {
			path := fmt.Sprintf("%s[%d]", kind.field, i)
			if d := specrules.Identifier(m.GetName()); d != "" {
				v.add(path+".name", "%q %s", m.GetName(), d)
			} else if names[m.GetName()] {
				v.add(path+".name", "%q is mounted more than once (mount it once; a second target needs a second %s)", m.GetName(), kind.field[5:len(kind.field)-1])
			}
			names[m.GetName()] = true
			t := FileTarget(m, kind.config)
			if why := nodepolicy.ValidHostPath(t); why != "" {
				v.add(path+".target", "%q %s", t, why)
			} else if other, ok := targets[t]; ok {
				v.add(path+".target", "%q is also the target of %s", t, other)
			}
			targets[t] = path
			if m.GetMode() > 0o777 {
				v.add(path+".mode", "%#o has bits beyond the permission bits 0777", m.GetMode())
			}
		}
	}
}

// normalizeFiles fills in the default target and mode of every mount.
func normalizeFiles(n *deployv1.ServiceSpec) {
	for _, m := range n.GetSecrets() {
		m.Target = FileTarget(m, false)
		if m.Mode == 0 {
			m.Mode = DefaultSecretMode
		}
	}
	for _, m := range n.GetConfigs() {
		m.Target = FileTarget(m, true)
		if m.Mode == 0 {
			m.Mode = DefaultConfigMode
		}
	}
}
