package specrules

import (
	"fmt"
	"strings"
)

// MaxPorts bounds the named ports of a spec.
const MaxPorts = 16

// MaxPortNameBytes bounds a port name (a Kubernetes port name's limit).
const MaxPortNameBytes = 15

// PortEnvPrefix prefixes the env variable naming a named port to the
// instance: PORT_<NAME> (see PortEnv).
const PortEnvPrefix = "PORT_"

// NamedPort is a named port as the rules see it: in a spec's ports, or an
// allocation's routed port followed by its other ports.
type NamedPort struct {
	Name     string
	Port     int64
	HostPort int64
	Protocol string
}

// PortViolation is one invalid field of a port list: Index is the port's
// position and Field one of "name", "port", "host_port", "protocol".
type PortViolation struct {
	Index       int
	Field       string
	Description string
}

// PortName checks a port name: 1-MaxPortNameBytes lower-case letters,
// digits and '-', starting with a letter and not ending with '-'.
func PortName(n string) string {
	switch {
	case n == "":
		return "is required"
	case len(n) > MaxPortNameBytes:
		return fmt.Sprintf("%q is longer than %d characters", n, MaxPortNameBytes)
	case !(n[0] >= 'a' && n[0] <= 'z') || !label(n):
		return fmt.Sprintf("%q is not a port name (lower-case letters, digits and '-', starting with a letter and not ending with '-')", n)
	}
	return ""
}

// PortEnv is the env variable naming port name to the instance:
// PORT_<NAME>, the name upper-cased with '-' as '_' (a port name has no
// '_', so two names never share one).
func PortEnv(name string) string {
	return PortEnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Ports checks a list of named ports: at most MaxPorts; valid names,
// container ports and host ports (0: ephemeral); names, container ports
// and static host ports each unique; protocol empty or "tcp". name(i)
// names port i in the descriptions of clashes (e.g. "ports[0]").
func Ports(ps []NamedPort, name func(i int) string) []PortViolation {
	var vs []PortViolation
	add := func(i int, f, d string) { vs = append(vs, PortViolation{i, f, d}) }
	if len(ps) > MaxPorts {
		add(-1, "", fmt.Sprintf("%d ports, more than the %d allowed", len(ps), MaxPorts))
	}
	names := map[string]int{}
	ports := map[int64]int{}
	hosts := map[int64]int{}
	for i, p := range ps {
		if d := PortName(p.Name); d != "" {
			add(i, "name", d)
		} else if j, ok := names[p.Name]; ok {
			add(i, "name", fmt.Sprintf("%q is the name of %s too", p.Name, name(j)))
		} else {
			names[p.Name] = i
		}
		if d := Port(p.Port); d != "" {
			add(i, "port", d)
		} else if j, ok := ports[p.Port]; ok {
			add(i, "port", fmt.Sprintf("%d is the container port of %s too", p.Port, name(j)))
		} else {
			ports[p.Port] = i
		}
		switch {
		case p.HostPort == 0:
		case p.HostPort < 0 || p.HostPort > 65535:
			add(i, "host_port", fmt.Sprintf("must be 0 (ephemeral) or between 1 and 65535, got %d", p.HostPort))
		default:
			if j, ok := hosts[p.HostPort]; ok {
				add(i, "host_port", fmt.Sprintf("%d is the host port of %s too", p.HostPort, name(j)))
			} else {
				hosts[p.HostPort] = i
			}
		}
		if p.Protocol != "" && p.Protocol != "tcp" {
			add(i, "protocol", fmt.Sprintf("%q is not supported (only tcp)", p.Protocol))
		}
	}
	return vs
}
