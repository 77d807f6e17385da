// Package allocation defines the node agent's view of one allocation: its
// spec as the coordinator sent it, validation, and a stable fingerprint.
package allocation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"slipway.dev/platform/nodepolicy"
	"slipway.dev/platform/specrules"
)

// ErrInvalid marks a spec that fails validation.
var ErrInvalid = errors.New("allocation: invalid spec")

// Check is an allocation's health check.
type Check struct {
	// HTTP is a path probed with GET; 2xx passes.
	HTTP string `json:"http,omitempty"`
	// TCP makes the check a TCP connect.
	TCP bool `json:"tcp,omitempty"`
	// Interval between probes.
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout of one probe.
	Timeout time.Duration `json:"timeout,omitempty"`
	// StartPeriod is the grace after a start in which failing probes do
	// not count (Docker's HEALTHCHECK --start-period); a passing probe
	// ends it early.
	StartPeriod time.Duration `json:"start_period,omitempty"`
	// Port names the port probed: empty or Spec.PortName for the routed
	// one, else one of Spec.Ports.
	Port string `json:"port,omitempty"`
}

// Spec is one allocation as the coordinator wants it on this node.
type Spec struct {
	ID          string            `json:"id"`
	NodeID      string            `json:"node_id"`
	Service     string            `json:"service"`
	Release     uint64            `json:"release"`
	Track       string            `json:"track,omitempty"`
	Image       string            `json:"image"`
	Env         map[string]string `json:"env,omitempty"`
	Args        []string          `json:"args,omitempty"`
	Port        int               `json:"port"`
	HostPort    int               `json:"host_port,omitempty"`
	CPUMHz      int               `json:"cpu_mhz,omitempty"`
	MemoryMB    int               `json:"memory_mb,omitempty"`
	Check       Check             `json:"check"`
	KillTimeout time.Duration     `json:"kill_timeout,omitempty"`
	// PortName names the routed port (Port, HostPort) of a service with
	// named ports; empty for a single unnamed port.
	PortName string `json:"port_name,omitempty"`
	// Ports are the other named ports, each published on the host too.
	Ports []Port `json:"ports,omitempty"`
	// Stopped is true when the coordinator wants the allocation drained and
	// stopped while still naming it.
	Stopped bool `json:"stopped,omitempty"`
	// Privileged, CapAdd and Mounts ask for more than the hardened default;
	// the node's nodepolicy.Policy must allow each.
	Privileged bool     `json:"privileged,omitempty"`
	CapAdd     []string `json:"cap_add,omitempty"`
	Mounts     []Mount  `json:"mounts,omitempty"`
	// Restart bounds in-place restarts of a crashed instance; nil means
	// the defaults (see RestartPolicy).
	Restart *Restart `json:"restart,omitempty"`
	// StartDeadline is how long failed starts are retried, from the first
	// one; zero means specrules.DefaultStartDeadline.
	StartDeadline time.Duration `json:"start_deadline,omitempty"`
	// Volumes are the service's named volumes (docker driver), created
	// when missing and kept when the instance stops.
	Volumes []Volume `json:"volumes,omitempty"`
	// Entrypoint replaces the image's entrypoint (docker driver).
	Entrypoint []string `json:"entrypoint,omitempty"`
	// Labels are extra container labels (docker driver).
	Labels map[string]string `json:"labels,omitempty"`
	// StopSignal asks the instance to stop; empty: SIGTERM (docker
	// driver).
	StopSignal string `json:"stop_signal,omitempty"`
	// Files are the secrets and configs mounted into the instance. Their
	// values (File.Data) are in memory only: never in the state file, the
	// fingerprint or a label.
	Files []File `json:"files,omitempty"`
}

// Port is a named container port besides the routed one.
type Port struct {
	Name string `json:"name"`
	// Port is the container port (for the process driver, which has no
	// mapping, only a key: the process listens on the host port).
	Port int `json:"port"`
	// HostPort is the static host port; 0 means ephemeral.
	HostPort int `json:"host_port,omitempty"`
}

// Volume is a named volume of the service mounted into the instance.
type Volume struct {
	Name          string `json:"name"`
	ContainerPath string `json:"container_path"`
	ReadOnly      bool   `json:"read_only,omitempty"`
}

// File is a secret or config mounted as a file.
type File struct {
	// Kind is "secret" or "config".
	Kind string `json:"kind"`
	// Name and Version identify the value (a new version is a new spec).
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	// Target is the absolute path in the container.
	Target string `json:"target"`
	// Mode is the file's permission bits.
	Mode uint32 `json:"mode"`
	// UID and GID own the file.
	UID uint32 `json:"uid,omitempty"`
	GID uint32 `json:"gid,omitempty"`
	// Data is the value, as the leader sent it; never serialized.
	Data []byte `json:"-"`
}

// Restart modes, as in Nomad's restart block.
const (
	// RestartFail stops restarting once the attempts of an interval are
	// used: the allocation is failed.
	RestartFail = "fail"
	// RestartDelay waits for the interval to end, then restarts with a
	// fresh count.
	RestartDelay = "delay"
)

// Restart is an allocation's restart policy.
type Restart struct {
	// Attempts is how many restarts an interval allows.
	Attempts int `json:"attempts"`
	// Interval is the window attempts are counted in, from its first
	// failure.
	Interval time.Duration `json:"interval"`
	// Delay is the wait before the first restart in an interval; it
	// doubles with each next one (specrules.RestartBackoff).
	Delay time.Duration `json:"delay"`
	// Mode is RestartFail or RestartDelay.
	Mode string `json:"mode"`
}

// DefaultRestart is the policy of a spec that names none.
func DefaultRestart() Restart {
	return Restart{Attempts: specrules.DefaultRestartAttempts, Interval: specrules.DefaultRestartInterval,
		Delay: specrules.DefaultRestartDelay, Mode: RestartFail}
}

// RestartPolicy returns the spec's restart policy, defaulted.
func (s Spec) RestartPolicy() Restart {
	if s.Restart == nil {
		return DefaultRestart()
	}
	return *s.Restart
}

// StartRetryDeadline returns how long failed starts are retried, defaulted.
func (s Spec) StartRetryDeadline() time.Duration {
	if s.StartDeadline > 0 {
		return s.StartDeadline
	}
	return specrules.DefaultStartDeadline
}

// Mount is a host path bind-mounted into the instance.
type Mount struct {
	HostPath      string `json:"host_path"`
	ContainerPath string `json:"container_path"`
	ReadOnly      bool   `json:"read_only,omitempty"`
}

// Ask returns what the spec asks that a node's policy governs.
func (s Spec) Ask() nodepolicy.Ask {
	a := nodepolicy.Ask{Image: s.Image, Privileged: s.Privileged, Caps: s.CapAdd}
	for _, m := range s.Mounts {
		a.Mounts = append(a.Mounts, nodepolicy.Mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	return a
}

// DefaultKillTimeout is the grace between SIGTERM and SIGKILL when the spec
// names none.
const DefaultKillTimeout = 5 * time.Second

// Grace returns the kill timeout, defaulted.
func (s Spec) Grace() time.Duration {
	if s.KillTimeout > 0 {
		return s.KillTimeout
	}
	return DefaultKillTimeout
}

// CheckInterval returns the check interval, defaulted to 1s.
func (s Spec) CheckInterval() time.Duration {
	if s.Check.Interval > 0 {
		return s.Check.Interval
	}
	return time.Second
}

// CheckTimeout returns the check timeout, defaulted to 1s.
func (s Spec) CheckTimeout() time.Duration {
	if s.Check.Timeout > 0 {
		return s.Check.Timeout
	}
	return time.Second
}

// ProbeWithin is how long the agent probes a fresh instance itself before
// registering it: readyWithin, or the check's start period when that is
// longer (failing probes in it do not count, so the instance is
// registered only once one passes or the grace is over).
func (s Spec) ProbeWithin(readyWithin time.Duration) time.Duration {
	return max(readyWithin, s.Check.StartPeriod)
}

// InStartPeriod reports whether an instance of s started at started is
// still in its check's start period at now.
func (s Spec) InStartPeriod(started, now time.Time) bool {
	return s.Check.StartPeriod > 0 && !started.IsZero() && now.Sub(started) < s.Check.StartPeriod
}

// AllPorts are the spec's ports, the routed one first (named PortName,
// empty for a single unnamed port), then Ports.
func (s Spec) AllPorts() []Port {
	return append([]Port{{Name: s.PortName, Port: s.Port, HostPort: s.HostPort}}, s.Ports...)
}

// HostPortOf is the host port inst binds for the spec's port named name
// ("" or PortName: the routed one); 0 when it has none.
func (s Spec) HostPortOf(inst Instance, name string) int {
	if name == "" || name == s.PortName {
		return inst.HostPort
	}
	for _, p := range s.Ports {
		if p.Name == name {
			return inst.HostPorts[p.Port]
		}
	}
	return 0
}

// CheckHostPort is the host port the health check probes on inst.
func (s Spec) CheckHostPort(inst Instance) int { return s.HostPortOf(inst, s.Check.Port) }

// Fingerprint is a stable hash of everything that shapes the running
// instance; two specs with the same fingerprint need no restart between them.
// Stopped is not part of it.
func (s Spec) Fingerprint() string {
	c := s
	c.Stopped = false
	b, err := json.Marshal(c) // map keys are sorted by encoding/json
	if err != nil {
		panic(fmt.Sprintf("allocation: marshal spec: %v", err)) // unreachable: plain types
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Violation is one invalid field of a spec.
type Violation struct {
	Field       string
	Description string
}

// Validate checks a spec for this node and returns every violation, with
// field names as in the API (e.g. "env[FOO=BAR]"). The rules a spec shares
// with the coordinator's Deploy validation (names, sizes, NUL bytes, paths,
// durations) are package specrules', so what the coordinator accepts the
// agent runs.
func (s Spec) Validate(nodeID string) []Violation {
	var vs []Violation
	add := func(f, d string) { vs = append(vs, Violation{f, d}) }
	check := func(f, d string) {
		if d != "" {
			add(f, d)
		}
	}
	check("id", specrules.Identifier(s.ID))
	if s.NodeID != nodeID {
		add("node_id", fmt.Sprintf("allocation is for node %q, this is node %q", s.NodeID, nodeID))
	}
	check("service", specrules.Identifier(s.Service))
	if s.Image == "" {
		add("image", "must not be empty")
	}
	if s.PortName == "" && len(s.Ports) == 0 {
		check("port", specrules.Port(int64(s.Port)))
		if s.HostPort < 0 || s.HostPort > 65535 {
			add("host_port", fmt.Sprintf("%d is not 0 (ephemeral) or a port number", s.HostPort))
		}
		if s.Check.Port != "" {
			add("check.port", fmt.Sprintf("%q names a port, and the allocation has no named ports", s.Check.Port))
		}
	} else {
		// The routed port and the others, by the rule Deploy applies to
		// spec.ports.
		var ps []specrules.NamedPort
		for _, p := range s.AllPorts() {
			ps = append(ps, specrules.NamedPort{Name: p.Name, Port: int64(p.Port), HostPort: int64(p.HostPort)})
		}
		other := func(i int) string {
			if i == 0 {
				return "the routed port"
			}
			return fmt.Sprintf("ports[%d]", i-1)
		}
		for _, pv := range specrules.Ports(ps, other) {
			switch {
			case pv.Index < 0:
				add("ports", pv.Description)
			case pv.Index == 0 && pv.Field == "name":
				add("port_name", pv.Description)
			case pv.Index == 0:
				add(pv.Field, pv.Description)
			default:
				add(fmt.Sprintf("ports[%d].%s", pv.Index-1, pv.Field), pv.Description)
			}
		}
		if n := s.Check.Port; n != "" && n != s.PortName && !slices.ContainsFunc(s.Ports, func(p Port) bool { return p.Name == n }) {
			add("check.port", fmt.Sprintf("%q is not the name of a port of the allocation", n))
		}
		seen := map[string]bool{}
		for _, p := range s.AllPorts() {
			if _, ok := s.Env[specrules.PortEnv(p.Name)]; ok && p.Name != "" && !seen[p.Name] {
				add("env["+specrules.PortEnv(p.Name)+"]", "is set by the node agent for the port "+p.Name)
			}
			seen[p.Name] = true
		}
	}
	check("cpu_mhz", specrules.CPUMHz(int64(s.CPUMHz)))
	if s.MemoryMB == 0 {
		add("memory_mb", "a memory limit is required (every instance runs with one)")
	} else {
		check("memory_mb", specrules.MemoryMB(int64(s.MemoryMB)))
	}
	check("env", specrules.EnvTotal(s.Env))
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if d := specrules.EnvName(k); d != "" {
			add("env["+k+"]", d)
		} else {
			check("env["+k+"]", specrules.EnvValue(s.Env[k]))
		}
	}
	check("args", specrules.ArgsTotal(s.Args))
	for i, a := range s.Args {
		check(fmt.Sprintf("args[%d]", i), specrules.Arg(a))
	}
	if s.Check.HTTP != "" {
		check("check.http", specrules.CheckPath(s.Check.HTTP))
	}
	if s.Check.HTTP != "" && s.Check.TCP {
		add("check", "http and tcp are exclusive")
	}
	check("check.interval", specrules.Duration(s.Check.Interval))
	check("check.timeout", specrules.Duration(s.Check.Timeout))
	check("check.start_period", specrules.StartPeriod(s.Check.StartPeriod))
	check("kill_timeout", specrules.Duration(s.KillTimeout))
	if r := s.Restart; r != nil {
		check("restart.attempts", specrules.RestartAttempts(int64(r.Attempts)))
		dI, dD := specrules.Duration(r.Interval), specrules.Duration(r.Delay)
		check("restart.interval", dI)
		check("restart.delay", dD)
		if dI == "" && dD == "" {
			check("restart.interval", specrules.RestartWindow(r.Delay, r.Interval))
		}
		if r.Mode != RestartFail && r.Mode != RestartDelay {
			add("restart.mode", fmt.Sprintf("%q is not %q or %q", r.Mode, RestartFail, RestartDelay))
		}
	}
	check("start_deadline", specrules.Duration(s.StartDeadline))
	for i, c := range s.CapAdd {
		if _, ok := nodepolicy.CanonicalCap(c); !ok {
			add(fmt.Sprintf("cap_add[%d]", i), fmt.Sprintf("%q is not a Linux capability", c))
		}
	}
	for i, a := range s.Entrypoint {
		check(fmt.Sprintf("entrypoint[%d]", i), specrules.Arg(a))
	}
	for k, v := range s.Labels {
		check(fmt.Sprintf("labels[%q]", k), specrules.Label(k, v))
	}
	check("stop_signal", specrules.StopSignal(s.StopSignal))
	for i, v := range s.Volumes {
		if v.Name == "" || strings.ContainsAny(v.Name, "/\\ \x00") || len(v.Name) > 63 {
			add(fmt.Sprintf("volumes[%d].name", i), fmt.Sprintf("%q is not a volume name", v.Name))
		}
		if why := nodepolicy.ValidHostPath(v.ContainerPath); why != "" {
			add(fmt.Sprintf("volumes[%d].container_path", i), why)
		}
	}
	targets := map[string]bool{}
	for i, f := range s.Files {
		p := fmt.Sprintf("files[%d]", i)
		if f.Kind != "secret" && f.Kind != "config" {
			add(p+".kind", fmt.Sprintf("%q is not secret or config", f.Kind))
		}
		check(p+".name", specrules.Identifier(f.Name))
		if why := nodepolicy.ValidHostPath(f.Target); why != "" {
			add(p+".target", why)
		} else if targets[f.Target] {
			add(p+".target", "is the target of another file")
		}
		targets[f.Target] = true
		if f.Mode > 0o777 {
			add(p+".mode", fmt.Sprintf("%#o has bits beyond 0777", f.Mode))
		}
	}
	for i, m := range s.Mounts {
		if why := nodepolicy.ValidHostPath(m.HostPath); why != "" {
			add(fmt.Sprintf("mounts[%d].host_path", i), why)
		}
		if why := nodepolicy.ValidHostPath(m.ContainerPath); why != "" {
			add(fmt.Sprintf("mounts[%d].container_path", i), why)
		}
	}
	return vs
}

// Error turns violations into one error wrapping ErrInvalid, or nil.
func Error(vs []Violation) error {
	if len(vs) == 0 {
		return nil
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Field + ": " + v.Description
	}
	return fmt.Errorf("%s: %w", strings.Join(parts, "; "), ErrInvalid)
}
