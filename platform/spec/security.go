package spec

import (
	"fmt"
	"sort"
	"strings"

	"slipway.dev/platform/nodepolicy"
	"slipway.dev/platform/rpc"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// validateSecurity checks the form of spec.security: known capability
// names, absolute clean mount paths, no container path twice.
func validateSecurity(v *violations, s *deployv1.Security) {
	for i, c := range s.GetCapAdd() {
		if _, ok := nodepolicy.CanonicalCap(c); !ok {
			v.add(fmt.Sprintf("spec.security.cap_add[%d]", i), "%q is not a Linux capability (e.g. NET_ADMIN)", c)
		}
	}
	seen := map[string]bool{}
	for i, m := range s.GetHostMounts() {
		path := fmt.Sprintf("spec.security.host_mounts[%d]", i)
		if why := nodepolicy.ValidHostPath(m.GetHostPath()); why != "" {
			v.add(path+".host_path", "%q %s", m.GetHostPath(), why)
		}
		if why := nodepolicy.ValidHostPath(m.GetContainerPath()); why != "" {
			v.add(path+".container_path", "%q %s", m.GetContainerPath(), why)
		} else if seen[m.GetContainerPath()] {
			v.add(path+".container_path", "%q is mounted more than once", m.GetContainerPath())
		}
		seen[m.GetContainerPath()] = true
	}
}

// Ask is what spec s asks of a node's policy.
func Ask(s *deployv1.ServiceSpec) nodepolicy.Ask {
	a := nodepolicy.Ask{Image: s.GetImage(), Privileged: s.GetSecurity().GetPrivileged(), Caps: s.GetSecurity().GetCapAdd()}
	for _, m := range s.GetSecurity().GetHostMounts() {
		a.Mounts = append(a.Mounts, nodepolicy.Mount{HostPath: m.GetHostPath(), ContainerPath: m.GetContainerPath(), ReadOnly: m.GetReadOnly()})
	}
	return a
}

// NodePolicy is the policy a node's agent reported.
func NodePolicy(n *clusterv1.Node) nodepolicy.Policy {
	s := n.GetSecurity()
	return nodepolicy.Policy{Privileged: s.GetPrivileged(), Caps: s.GetCaps(), HostPaths: s.GetHostPaths(), Images: s.GetImages()}
}

// CheckNodes refuses a spec that asks for more than any eligible node
// allows, so that an accepted release can run somewhere; nil means some
// node allows everything s asks. Eligible nodes are the ready ones that are
// not draining. It is pure: the nodes are the ones recorded in the state,
// each with the policy its agent reported (nodepolicy).
//
// A spec without asks beyond the hardened default is checked only for its
// image, and only when there is an eligible node: with none, placement
// waits for one. Each ask no eligible node allows gets a field violation
// naming the agent flag that would allow it; when every ask is allowed
// somewhere but no single node allows them all, spec.security says so.
func CheckNodes(s *deployv1.ServiceSpec, nodes []*clusterv1.Node) []rpc.FieldViolation {
	ask := Ask(s)
	var eligible []*clusterv1.Node
	for _, n := range nodes {
		if n.GetStatus() == clusterv1.NodeStatus_NODE_STATUS_READY && !n.GetDraining() {
			eligible = append(eligible, n)
		}
	}
	if !ask.Extra() && len(eligible) == 0 {
		return nil
	}
	// Which asks some node allows, by the field of nodepolicy.Check.
	refusedBy := map[string]int{}
	for _, n := range eligible {
		vs := NodePolicy(n).Check(ask)
		if len(vs) == 0 {
			return nil
		}
		for _, viol := range vs {
			refusedBy[viol.Field]++
		}
	}
	var v violations
	none := func(field string) bool { return refusedBy[field] == len(eligible) }
	if len(eligible) > 0 && none("image") {
		v.add("spec.image", "no node allows image %q (node agents restrict images with %s: %s)", ask.Image, nodepolicy.FlagImages, imagePatterns(eligible))
	}
	if ask.Privileged && none("privileged") {
		v.add("spec.security.privileged", "no node allows privileged containers (node agents need %s)", nodepolicy.FlagPrivileged)
	}
	for i, c := range ask.Caps {
		if none(fmt.Sprintf("cap_add[%d]", i)) {
			cc, _ := nodepolicy.CanonicalCap(c)
			v.add(fmt.Sprintf("spec.security.cap_add[%d]", i), "no node allows capability %s (node agents need %s %s)", cc, nodepolicy.FlagCaps, cc)
		}
	}
	for i, m := range ask.Mounts {
		if none(fmt.Sprintf("host_mounts[%d].host_path", i)) {
			v.add(fmt.Sprintf("spec.security.host_mounts[%d].host_path", i), "no node allows host path %s (node agents need %s %s or a parent directory)", m.HostPath, nodepolicy.FlagHostPaths, m.HostPath)
		}
	}
	if len(v) == 0 {
		// Each ask is allowed somewhere, but never all on one node.
		var lacks []string
		for _, n := range eligible {
			var fields []string
			for _, viol := range NodePolicy(n).Check(ask) {
				fields = append(fields, viol.Field)
			}
			lacks = append(lacks, n.GetId()+" refuses "+strings.Join(fields, ", "))
		}
		v.add("spec.security", "no single node allows everything the spec asks (%s)", strings.Join(lacks, "; "))
	}
	return v
}

func imagePatterns(nodes []*clusterv1.Node) string {
	set := map[string]bool{}
	for _, n := range nodes {
		for _, p := range n.GetSecurity().GetImages() {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
