package spec

import (
	"fmt"
	"regexp"

	"slipway.dev/platform/nodepolicy"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// MaxVolumes bounds spec.volumes.
const MaxVolumes = 16

// volumeName is a Docker volume name's shape, kept to 63 characters.
var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// validateVolumes checks spec.volumes: valid unique names, absolute clean
// targets mounted once (host mounts included).
func validateVolumes(v *violations, s *deployv1.ServiceSpec) {
	vols := s.GetVolumes()
	if len(vols) > MaxVolumes {
		v.add("spec.volumes", "%d volumes, more than the %d allowed", len(vols), MaxVolumes)
	}
	targets := map[string]bool{}
	for _, m := range s.GetSecurity().GetHostMounts() {
		targets[m.GetContainerPath()] = true
	}
	names := map[string]bool{}
	for i, vol := range vols {
		path := fmt.Sprintf("spec.volumes[%d]", i)
		switch n := vol.GetName(); {
		case n == "":
			v.add(path+".name", "is required")
		case !volumeName.MatchString(n):
			v.add(path+".name", "%q is not a volume name (letters, digits, '_', '.' and '-', starting with a letter or digit, at most 63)", n)
		case names[n]:
			v.add(path+".name", "%q is listed twice", n)
		}
		names[vol.GetName()] = true
		switch t := vol.GetTarget(); {
		case nodepolicy.ValidHostPath(t) != "":
			v.add(path+".target", "%q %s", t, nodepolicy.ValidHostPath(t))
		case targets[t]:
			v.add(path+".target", "%q is mounted more than once", t)
		}
		targets[vol.GetTarget()] = true
	}
}
