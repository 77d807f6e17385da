package spec

import (
	"fmt"

	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// RoutedPort is the port of s.ports the edges route to: the one route_port
// names, or the first when route_port is empty; nil when s has no named
// ports or route_port names none of them.
func RoutedPort(s *deployv1.ServiceSpec) *deployv1.Port {
	ps := s.GetPorts()
	if len(ps) == 0 {
		return nil
	}
	if s.GetRoutePort() == "" {
		return ps[0]
	}
	return PortNamed(s, s.GetRoutePort())
}

// PortNamed is the port of s.ports named name, or nil.
func PortNamed(s *deployv1.ServiceSpec, name string) *deployv1.Port {
	for _, p := range s.GetPorts() {
		if p.GetName() == name {
			return p
		}
	}
	return nil
}

// NamedPorts are s.ports as package specrules checks them.
func NamedPorts(s *deployv1.ServiceSpec) []specrules.NamedPort {
	out := make([]specrules.NamedPort, 0, len(s.GetPorts()))
	for _, p := range s.GetPorts() {
		out = append(out, specrules.NamedPort{Name: p.GetName(), Port: int64(p.GetPort()), HostPort: int64(p.GetHostPort()), Protocol: p.GetProtocol()})
	}
	return out
}

// validatePorts checks port, ports, route_port and check.port: without
// ports the single port is required and route_port and check.port are
// unset; with ports (specrules.Ports) route_port and check.port name one
// of them, port is 0 or the routed port's container port, and env sets
// no PORT_<NAME> of a named port (the agent does).
func validatePorts(v *violations, s *deployv1.ServiceSpec) {
	if len(s.GetPorts()) == 0 {
		v.check("spec.port", specrules.Port(int64(s.GetPort())))
		if s.GetRoutePort() != "" {
			v.add("spec.route_port", "%q names a port, and spec.ports is empty", s.GetRoutePort())
		}
		if s.GetCheck().GetPort() != "" {
			v.add("spec.check.port", "%q names a port, and spec.ports is empty", s.GetCheck().GetPort())
		}
		return
	}
	for _, pv := range specrules.Ports(NamedPorts(s), func(i int) string { return fmt.Sprintf("ports[%d]", i) }) {
		if pv.Index < 0 {
			v.add("spec.ports", "%s", pv.Description)
			continue
		}
		v.add(fmt.Sprintf("spec.ports[%d].%s", pv.Index, pv.Field), "%s", pv.Description)
	}
	if n := s.GetRoutePort(); n != "" && PortNamed(s, n) == nil {
		v.add("spec.route_port", "%q is not the name of a port in spec.ports", n)
	}
	if n := s.GetCheck().GetPort(); n != "" && PortNamed(s, n) == nil {
		v.add("spec.check.port", "%q is not the name of a port in spec.ports", n)
	}
	if r := RoutedPort(s); r != nil && s.GetPort() != 0 && s.GetPort() != r.GetPort() {
		v.add("spec.port", "%d conflicts with spec.ports: the routed port %q is container port %d (leave port unset with ports, or set it to %d)",
			s.GetPort(), r.GetName(), r.GetPort(), r.GetPort())
	}
	for _, p := range s.GetPorts() {
		if p.GetName() == "" {
			continue
		}
		if k := specrules.PortEnv(p.GetName()); hasKey(s.GetEnv(), k) {
			v.add(fmt.Sprintf("spec.env[%q]", k), "is set by the node agent: the container port of the port %q", p.GetName())
		}
	}
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// normalizePorts fills in route_port (the first port's name) and port (the
// routed port's container port) of a spec with named ports.
func normalizePorts(n *deployv1.ServiceSpec) {
	if len(n.Ports) == 0 {
		return
	}
	if n.RoutePort == "" {
		n.RoutePort = n.Ports[0].GetName()
	}
	if r := RoutedPort(n); r != nil && n.Port == 0 {
		n.Port = r.GetPort()
	}
}
