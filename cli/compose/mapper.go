package compose

import (
	"fmt"
	"math"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/tree"
	ctypes "github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// MHzPerCPU converts Compose's cpus (a number of cores) to Slipway's
// cpu_mhz reservation.
const MHzPerCPU = 1000

// supported lists the Compose attributes the mapper reads. compose-go
// reports every other attribute of the file, which becomes a warning.
var supported = []string{
	"services.*.image",
	"services.*.command",
	"services.*.entrypoint",
	"services.*.environment.*",
	"services.*.env_file",
	"services.*.env_file.[].path",
	"services.*.env_file.[].required",
	"services.*.env_file.[].format",
	"services.*.ports.[].target",
	"services.*.ports.[].published",
	"services.*.ports.[].protocol",
	"services.*.ports.[].mode",
	"services.*.ports.[].host_ip",
	"services.*.ports.[].name",
	"services.*.ports.[].app_protocol",
	"services.*.expose",
	"services.*.healthcheck.test",
	"services.*.healthcheck.interval",
	"services.*.healthcheck.timeout",
	"services.*.healthcheck.start_period",
	"services.*.healthcheck.disable",
	"services.*.healthcheck.retries",
	"services.*.deploy.mode",
	"services.*.deploy.replicas",
	"services.*.deploy.labels.*",
	"services.*.deploy.update_config.parallelism",
	"services.*.deploy.update_config.delay",
	"services.*.deploy.update_config.failure_action",
	"services.*.deploy.update_config.monitor",
	"services.*.deploy.update_config.order",
	"services.*.deploy.restart_policy.condition",
	"services.*.deploy.restart_policy.delay",
	"services.*.deploy.restart_policy.max_attempts",
	"services.*.deploy.restart_policy.window",
	"services.*.deploy.resources.limits.cpus",
	"services.*.deploy.resources.limits.memory",
	"services.*.deploy.resources.reservations.cpus",
	"services.*.deploy.resources.reservations.memory",
	"services.*.restart",
	"services.*.scale",
	"services.*.labels.*",
	"services.*.stop_signal",
	"services.*.stop_grace_period",
	"services.*.networks.*",
	"services.*.volumes.[].type",
	"services.*.volumes.[].source",
	"services.*.volumes.[].target",
	"services.*.volumes.[].read_only",
	"services.*.volumes.[].bind.create_host_path",
	"services.*.volumes.[].volume",
	"services.*.secrets.[].source",
	"services.*.secrets.[].target",
	"services.*.secrets.[].uid",
	"services.*.secrets.[].gid",
	"services.*.secrets.[].mode",
	"services.*.configs.[].source",
	"services.*.configs.[].target",
	"services.*.configs.[].uid",
	"services.*.configs.[].gid",
	"services.*.configs.[].mode",
	"volumes.*.name",
	"volumes.*.driver",
	"volumes.*.external",
	"secrets.*.name",
	"secrets.*.file",
	"secrets.*.environment",
	"secrets.*.external",
	"configs.*.name",
	"configs.*.file",
	"configs.*.environment",
	"configs.*.content",
	"configs.*.external",
	"name",
	"version",
}

func supportedPaths() []tree.Path {
	out := make([]tree.Path, len(supported))
	for i, s := range supported {
		out[i] = tree.Path(s)
	}
	return out
}

// keyLines maps the dotted path of every mapping key of the YAML document
// ("services.web.deploy.replicas"; list items are not descended) to its
// line. A document that does not parse yields what parsed; compose-go
// reports the error.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return lines
	}
	var walk func(n *yaml.Node, at string)
	walk = func(n *yaml.Node, at string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := k.Value
			if at != "" {
				p = at + "." + k.Value
			}
			if _, dup := lines[p]; !dup {
				lines[p] = k.Line
			}
			walk(n.Content[i+1], p)
		}
	}
	walk(doc.Content[0], "")
	return lines
}

// lineKey joins path parts the way keyLines records them.
func lineKey(parts ...string) string { return strings.Join(parts, ".") }

// mapper maps one Compose service.
type mapper struct {
	project  *ctypes.Project
	svc      ctypes.ServiceConfig
	lines    map[string]int
	warnings []Warning
	commands []string
}

// line is the line of key (a path under the service such as
// "deploy.update_config.order" or "ports[1]"), or of its nearest parent
// the file gives.
func (m *mapper) line(key string) int {
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i]
	}
	for k := key; k != ""; {
		if l, ok := m.lines[lineKey("services", m.svc.Name, k)]; ok {
			return l
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return m.lines[lineKey("services", m.svc.Name)]
}

func (m *mapper) warn(kind Kind, key, format string, args ...any) {
	m.warnings = append(m.warnings, Warning{Service: m.svc.Name, Key: key, Line: m.line(key), Kind: kind, Message: fmt.Sprintf(format, args...)})
}

var notLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// serviceName makes a DNS label of a Compose service name.
func serviceName(n string) string {
	s := notLabel.ReplaceAllString(strings.ToLower(n), "-")
	s = strings.Trim(s, "-")
	if s != "" && (s[0] < 'a' || s[0] > 'z') {
		s = "s-" + s
	}
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

func (m *mapper) spec() *deployv1.ServiceSpec {
	s := m.svc
	spec := &deployv1.ServiceSpec{Name: serviceName(s.Name), Image: s.Image, Count: 1}
	if spec.Name != s.Name {
		m.warn(Caution, "", "renamed to %q: a Slipway service name is a DNS label (lower-case letters, digits and '-')", spec.Name)
	}
	if s.Image == "" {
		m.warn(Unsupported, "image", "is missing: Slipway runs an image (build and push one and set image)")
	}
	m.count(spec)
	m.command(spec)
	m.env(spec)
	m.port(spec)
	m.check(spec)
	m.update(spec)
	m.restart(spec)
	m.resources(spec)
	m.labels(spec)
	if s.StopSignal != "" {
		spec.StopSignal = s.StopSignal
	}
	if s.StopGracePeriod != nil {
		spec.KillTimeout = durationpb.New(time.Duration(*s.StopGracePeriod))
	}
	m.networks()
	m.volumes(spec)
	m.files(spec)
	return spec
}

func (m *mapper) count(spec *deployv1.ServiceSpec) {
	s := m.svc
	if d := s.Deploy; d != nil {
		if d.Mode != "" && d.Mode != "replicated" {
			m.warn(Unsupported, "deploy.mode", "%q is not supported: Slipway runs replicated services (deploy.replicas instances placed by the scheduler); imported as %d instance(s)", d.Mode, spec.Count)
		}
		if d.Replicas != nil {
			spec.Count = int32(min(*d.Replicas, math.MaxInt32))
			if s.Scale != nil && *s.Scale != *d.Replicas {
				m.warn(Unsupported, "scale", "%d differs from deploy.replicas %d; deploy.replicas is used", *s.Scale, *d.Replicas)
			}
			return
		}
	}
	if s.Scale != nil {
		spec.Count = int32(min(*s.Scale, math.MaxInt32))
	}
}

func (m *mapper) command(spec *deployv1.ServiceSpec) {
	if len(m.svc.Entrypoint) > 0 {
		spec.Entrypoint = append([]string(nil), m.svc.Entrypoint...)
	}
	if len(m.svc.Command) > 0 {
		spec.Args = append([]string(nil), m.svc.Command...)
	}
}

func (m *mapper) env(spec *deployv1.ServiceSpec) {
	s := m.svc
	if len(s.EnvFiles) > 0 {
		resolved, err := m.project.WithServicesEnvironmentResolved(false)
		if err != nil {
			m.warn(Unsupported, "env_file", "cannot be read: %v", err)
		} else {
			s.Environment = resolved.Services[s.Name].Environment
		}
	}
	env := map[string]string{}
	var unset []string
	for k, v := range s.Environment {
		if v == nil {
			// KEY without a value takes the caller's environment.
			if val, ok := m.project.Environment[k]; ok {
				env[k] = val
				continue
			}
			unset = append(unset, k)
			continue
		}
		env[k] = *v
	}
	sort.Strings(unset)
	for _, k := range unset {
		m.warn(Unsupported, "environment."+k, "has no value and is not set in the environment; left out (as Compose does)")
	}
	if len(env) > 0 {
		spec.Env = env
	}
}

// port maps ports (or expose): a single port is the service port as
// before; several, or one with a fixed host port in host mode, become
// named ports (spec.ports) with the first routed. A port's name is its
// Compose name when that is a valid port name, else port-<target>.
func (m *mapper) port(spec *deployv1.ServiceSpec) {
	s := m.svc
	var named []*deployv1.Port
	seen := map[uint32]int{}
	static := false
	for i, p := range s.Ports {
		key := fmt.Sprintf("ports[%d]", i)
		if p.Protocol != "" && p.Protocol != "tcp" {
			m.warn(Unsupported, key+".protocol", "%q not supported: Slipway publishes TCP ports only; container port %d not imported", p.Protocol, p.Target)
			continue
		}
		if j, ok := seen[p.Target]; ok {
			m.warn(Unsupported, key, "container port %d is published by ports[%d] too; imported once", p.Target, j)
			continue
		}
		if len(named) == specrules.MaxPorts {
			m.warn(Unsupported, key, "container port %d not imported: at most %d ports", p.Target, specrules.MaxPorts)
			continue
		}
		seen[p.Target] = i
		np := &deployv1.Port{Name: portName(p.Name, p.Target), Port: int32(p.Target)}
		if p.Name != "" && np.Name != p.Name {
			m.warn(Unsupported, key+".name", "%q is not a port name (lower-case letters, digits and '-', at most %d): imported as %s", p.Name, specrules.MaxPortNameBytes, np.Name)
		}
		if p.Published != "" {
			hp, err := strconv.Atoi(p.Published)
			switch {
			case p.Mode == "host" && err == nil && hp > 0 && hp <= 65535:
				np.HostPort, static = int32(hp), true
				m.warn(Unsupported, key+".published", "host mode port %d imported as a static host_port: every node binds it, so at most one instance runs per node", hp)
			case p.Mode == "host":
				m.warn(Unsupported, key+".published", "host port %s not imported: only a single fixed port can be a static host_port; the node agent picks one", p.Published)
			default:
				m.warn(Unsupported, key+".published", "host port %s not imported: the node agent picks the host port and the edges route to it (add route: to publish the service)", p.Published)
			}
		} else if p.Mode == "host" {
			m.warn(Unsupported, key+".mode", "host mode without a published port: the node agent picks the host port")
		}
		if p.HostIP != "" {
			m.warn(Unsupported, key+".host_ip", "%q not imported: the agent binds the host port", p.HostIP)
		}
		named = append(named, np)
	}
	switch {
	case len(named) == 1 && !static:
		spec.Port = named[0].GetPort()
	case len(named) > 0:
		spec.Ports = named
		m.warn(Unsupported, "ports", "imported as %d named ports, the first (%s, %d) routed by the edges (route_port); the others are published on each instance's host and registered in Consul as port_<name>",
			len(named), named[0].GetName(), named[0].GetPort())
	}
	if len(s.Ports) == 0 {
		for i, e := range s.Expose {
			n, err := strconv.Atoi(strings.Split(strings.Split(e, "/")[0], "-")[0])
			if i == 0 && err == nil {
				spec.Port = int32(n)
				continue
			}
			m.warn(Unsupported, fmt.Sprintf("expose[%d]", i), "%q not imported: only ports carries several ports over", e)
		}
	} else if len(s.Expose) > 0 {
		m.warn(Unsupported, "expose", "not imported: the service's ports are those of ports")
	}
	if spec.Port == 0 && len(spec.Ports) == 0 {
		m.warn(Unsupported, "ports", "the service has no ports or expose: a Slipway service needs the container port it listens on")
	}
}

// portName is a Compose port's name when it is a valid port name, else
// port-<target>.
func portName(name string, target uint32) string {
	if name != "" && specrules.PortName(name) == "" {
		return name
	}
	return fmt.Sprintf("port-%d", target)
}

// routedPort is the container port the edges route to.
func routedPort(spec *deployv1.ServiceSpec) int32 {
	if len(spec.GetPorts()) > 0 {
		return spec.GetPorts()[0].GetPort()
	}
	return spec.GetPort()
}

// probeURL finds an HTTP URL to this container in a healthcheck command
// (curl, wget and similar probes).
var probeURL = regexp.MustCompile(`https?://(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:[0-9]+)?(/[^\s"'|;&]*)?`)

// portOf is the named port whose container port is port, or nil.
func portOf(spec *deployv1.ServiceSpec, port string) *deployv1.Port {
	for _, p := range spec.GetPorts() {
		if strconv.Itoa(int(p.GetPort())) == port {
			return p
		}
	}
	return nil
}

// tcpProbe matches a port probe such as "nc -z localhost 8080".
var tcpProbe = regexp.MustCompile(`\bnc\b.*-z.*\b(localhost|127\.0\.0\.1)\s+([0-9]+)`)

func (m *mapper) check(spec *deployv1.ServiceSpec) {
	h := m.svc.HealthCheck
	if h == nil || h.Disable || len(h.Test) == 0 || h.Test[0] == "NONE" {
		return
	}
	cmd := strings.Join(h.Test[1:], " ")
	c := &deployv1.HealthCheck{}
	if u := probeURL.FindStringSubmatch(cmd); u != nil {
		pth := u[3]
		if pth == "" {
			pth = "/"
		}
		if parsed, err := url.Parse(pth); err == nil {
			pth = parsed.EscapedPath()
			if parsed.RawQuery != "" {
				pth += "?" + parsed.RawQuery
			}
		}
		c.Http = pth
		if probed := strings.TrimPrefix(u[2], ":"); probed != "" && probed != strconv.Itoa(int(routedPort(spec))) {
			if p := portOf(spec, probed); p != nil {
				c.Port = p.GetName() // a named port other than the routed one
			} else {
				m.warn(Unsupported, "healthcheck.test", "probes port %s, but Slipway probes one of the service's ports: imported as GET %s on port %d", probed, pth, routedPort(spec))
			}
		}
		if strings.HasPrefix(u[0], "https") {
			m.warn(Unsupported, "healthcheck.test", "probes HTTPS; Slipway's check is plain HTTP against the instance: imported as GET %s", pth)
		}
	} else if t := tcpProbe.FindStringSubmatch(cmd); t != nil {
		c.Tcp = true
		if p := portOf(spec, t[2]); p != nil && p.GetPort() != routedPort(spec) {
			c.Port = p.GetName()
		}
	} else {
		m.warn(Unsupported, "healthcheck.test", "%q is not an HTTP or TCP probe: Slipway probes instances from the agent (check.http or check.tcp), not by running a command in the container; imported without a check", cmd)
		return
	}
	if h.Interval != nil {
		c.Interval = durationpb.New(time.Duration(*h.Interval))
	}
	if h.Timeout != nil {
		c.Timeout = durationpb.New(time.Duration(*h.Timeout))
	}
	if h.StartPeriod != nil && *h.StartPeriod > 0 {
		c.StartPeriod = durationpb.New(time.Duration(*h.StartPeriod))
	}
	if h.Retries != nil {
		m.warn(Unsupported, "healthcheck.retries", "not imported: Slipway counts a check as failing after its own hysteresis")
	}
	spec.Check = c
}

func (m *mapper) update(spec *deployv1.ServiceSpec) {
	d := m.svc.Deploy
	if d == nil || d.UpdateConfig == nil {
		return
	}
	uc := d.UpdateConfig
	u := &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING}
	par := int32(1)
	if uc.Parallelism != nil {
		par = int32(min(*uc.Parallelism, math.MaxInt32))
		if par == 0 { // Compose: all at once
			par = max(spec.Count, 1)
		}
	}
	switch uc.Order {
	case "start-first":
		u.MaxSurge, u.MaxUnavailable = strconv.Itoa(int(par)), "0"
	case "stop-first":
		u.MaxSurge, u.MaxUnavailable = "0", strconv.Itoa(int(par))
	default:
		// Unset: Slipway's own order, new instances before old ones stop.
		if uc.Parallelism != nil {
			u.MaxParallel = par
		}
	}
	if uc.Delay != 0 {
		u.Stagger = durationpb.New(time.Duration(uc.Delay))
	}
	if uc.Monitor != 0 {
		u.MinHealthyTime = durationpb.New(time.Duration(uc.Monitor))
	}
	switch uc.FailureAction {
	case "", "pause":
		// Slipway's default: a failed rollout stops where it is.
	case "rollback":
		u.AutoRevert = true
	default:
		m.warn(Unsupported, "deploy.update_config.failure_action", "%q not supported: a failed rollout stops (pause) or reverts (rollback)", uc.FailureAction)
	}
	spec.Update = u
}

func (m *mapper) restart(spec *deployv1.ServiceSpec) {
	s := m.svc
	if d := s.Deploy; d != nil && d.RestartPolicy != nil {
		rp := d.RestartPolicy
		if s.Restart != "" {
			m.warn(Unsupported, "restart", "%q not imported: deploy.restart_policy is used", s.Restart)
		}
		r := &deployv1.RestartPolicy{}
		switch rp.Condition {
		case "none":
			r.Attempts = ptr(int32(0))
			spec.Restart = r
			return
		case "", "any", "on-failure":
		default:
			m.warn(Unsupported, "deploy.restart_policy.condition", "%q not supported", rp.Condition)
		}
		if rp.MaxAttempts != nil && *rp.MaxAttempts > 0 {
			r.Attempts = ptr(int32(min(*rp.MaxAttempts, math.MaxInt32)))
			r.Mode = deployv1.RestartMode_RESTART_MODE_FAIL
		} else {
			// Compose restarts without end: Slipway's delay mode.
			r.Mode = deployv1.RestartMode_RESTART_MODE_DELAY
		}
		if rp.Delay != nil {
			r.Delay = durationpb.New(time.Duration(*rp.Delay))
		}
		if rp.Window != nil {
			r.Interval = durationpb.New(time.Duration(*rp.Window))
		}
		spec.Restart = r
		return
	}
	switch policy, n, _ := strings.Cut(s.Restart, ":"); policy {
	case "":
	case "no":
		spec.Restart = &deployv1.RestartPolicy{Attempts: ptr(int32(0))}
	case "always", "unless-stopped":
		spec.Restart = &deployv1.RestartPolicy{Mode: deployv1.RestartMode_RESTART_MODE_DELAY}
	case "on-failure":
		r := &deployv1.RestartPolicy{Mode: deployv1.RestartMode_RESTART_MODE_DELAY}
		if k, err := strconv.Atoi(n); err == nil && k > 0 {
			r.Attempts, r.Mode = ptr(int32(k)), deployv1.RestartMode_RESTART_MODE_FAIL
		}
		spec.Restart = r
	default:
		m.warn(Unsupported, "restart", "%q not supported (no, always, unless-stopped, on-failure[:N])", s.Restart)
	}
}

func ptr[T any](v T) *T { return &v }

func (m *mapper) resources(spec *deployv1.ServiceSpec) {
	d := m.svc.Deploy
	if d == nil {
		return
	}
	r := &deployv1.Resources{}
	lim, res := d.Resources.Limits, d.Resources.Reservations
	if res != nil && res.NanoCPUs != 0 {
		r.CpuMhz = int32(math.Ceil(float64(res.NanoCPUs) * MHzPerCPU))
	} else if lim != nil && lim.NanoCPUs != 0 {
		r.CpuMhz = int32(math.Ceil(float64(lim.NanoCPUs) * MHzPerCPU))
	}
	if lim != nil && lim.MemoryBytes != 0 {
		r.MemoryMb = int32(math.Ceil(float64(lim.MemoryBytes) / (1 << 20)))
		if res != nil && res.MemoryBytes != 0 {
			m.warn(Unsupported, "deploy.resources.reservations.memory", "not imported: Slipway's memory_mb is one figure, the limit (deploy.resources.limits.memory)")
		}
	} else if res != nil && res.MemoryBytes != 0 {
		r.MemoryMb = int32(math.Ceil(float64(res.MemoryBytes) / (1 << 20)))
	}
	if lim != nil && lim.NanoCPUs != 0 && res != nil && res.NanoCPUs != 0 {
		m.warn(Unsupported, "deploy.resources.limits.cpus", "not imported: Slipway reserves CPU (deploy.resources.reservations.cpus) and does not cap it")
	}
	if r.CpuMhz != 0 || r.MemoryMb != 0 {
		spec.Resources = r
	}
}

func (m *mapper) labels(spec *deployv1.ServiceSpec) {
	labels := map[string]string{}
	if d := m.svc.Deploy; d != nil {
		for k, v := range d.Labels {
			labels[k] = v
		}
		if len(d.Labels) > 0 {
			m.warn(Caution, "deploy.labels", "imported as container labels (Slipway has no separate service labels)")
		}
	}
	for k, v := range m.svc.Labels {
		labels[k] = v
	}
	if len(labels) > 0 {
		spec.Labels = labels
	}
}

func (m *mapper) networks() {
	var names []string
	for n := range m.svc.Networks {
		if n != "default" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		m.warn(Unsupported, "networks."+n, "not imported: instances reach each other through Consul and the edges, not Compose networks")
	}
}

func (m *mapper) volumes(spec *deployv1.ServiceSpec) {
	for i, v := range m.svc.Volumes {
		key := fmt.Sprintf("volumes[%d]", i)
		switch v.Type {
		case ctypes.VolumeTypeVolume:
			if v.Source == "" {
				m.warn(Unsupported, key, "anonymous volume at %s not imported: give it a name", v.Target)
				continue
			}
			name := v.Source
			if tv, ok := m.project.Volumes[v.Source]; ok {
				if tv.External {
					m.warn(Caution, key, "volume %q is external in Compose; Slipway creates it on the node the instance runs on", v.Source)
				}
				if tv.Driver != "" && tv.Driver != "local" {
					m.warn(Unsupported, key, "volume %q uses driver %q; Slipway volumes are local Docker volumes", v.Source, tv.Driver)
				}
			}
			if v.Volume != nil && (v.Volume.NoCopy || v.Volume.Subpath != "") {
				m.warn(Unsupported, key+".volume", "nocopy and subpath are not supported")
			}
			spec.Volumes = append(spec.Volumes, &deployv1.VolumeMount{Name: name, Target: v.Target, ReadOnly: v.ReadOnly})
		case ctypes.VolumeTypeBind:
			if !path.IsAbs(v.Source) {
				m.warn(Unsupported, key, "bind mount of %q not imported: a host mount needs an absolute host path (and the node agent's -allow-host-paths)", v.Source)
				continue
			}
			if spec.Security == nil {
				spec.Security = &deployv1.Security{}
			}
			spec.Security.HostMounts = append(spec.Security.HostMounts, &deployv1.HostMount{HostPath: path.Clean(v.Source), ContainerPath: v.Target, ReadOnly: v.ReadOnly})
			m.warn(Caution, key, "bind mount of %s imported as security.host_mounts: only nodes whose agent allows it (-allow-host-paths) run the service", v.Source)
		default:
			m.warn(Unsupported, key, "%s mount at %s not supported: Slipway mounts named volumes and host paths", v.Type, v.Target)
		}
	}
}

// files maps the secrets and configs the service references, and the
// commands that create them in Slipway (values are never imported).
func (m *mapper) files(spec *deployv1.ServiceSpec) {
	for i, ref := range m.svc.Secrets {
		fm := m.fileMount(fmt.Sprintf("secrets[%d]", i), ctypes.FileReferenceConfig(ref), "/run/secrets/"+ref.Source)
		spec.Secrets = append(spec.Secrets, fm)
		m.commands = append(m.commands, createCommand("secret", fm.Name, ctypes.FileObjectConfig(m.project.Secrets[ref.Source])))
	}
	for i, ref := range m.svc.Configs {
		fm := m.fileMount(fmt.Sprintf("configs[%d]", i), ctypes.FileReferenceConfig(ref), "/"+ref.Source)
		spec.Configs = append(spec.Configs, fm)
		m.commands = append(m.commands, createCommand("config", fm.Name, ctypes.FileObjectConfig(m.project.Configs[ref.Source])))
	}
}

func (m *mapper) fileMount(key string, ref ctypes.FileReferenceConfig, defaultTarget string) *deployv1.FileMount {
	fm := &deployv1.FileMount{Name: ref.Source}
	if ref.Target != "" && ref.Target != defaultTarget {
		t := ref.Target
		if !path.IsAbs(t) && strings.HasPrefix(key, "secrets") {
			t = "/run/secrets/" + t // Compose: a relative secret target is under /run/secrets
		}
		fm.Target = t
	}
	if ref.Mode != nil {
		fm.Mode = uint32(*ref.Mode)
	}
	for _, id := range []struct {
		v   string
		dst *uint32
		key string
	}{{ref.UID, &fm.Uid, "uid"}, {ref.GID, &fm.Gid, "gid"}} {
		if id.v == "" {
			continue
		}
		n, err := strconv.ParseUint(id.v, 10, 32)
		if err != nil {
			m.warn(Unsupported, key+"."+id.key, "%q is not a numeric id; not imported", id.v)
			continue
		}
		*id.dst = uint32(n)
	}
	return fm
}

// createCommand is the slipctl command that creates what a Compose secret
// or config definition names.
func createCommand(kind, name string, def ctypes.FileObjectConfig) string {
	switch {
	case def.File != "":
		return fmt.Sprintf("slipctl %s create %s --from-file %s", kind, name, shellQuote(def.File))
	case def.Environment != "":
		return fmt.Sprintf("printf %%s \"$%s\" | slipctl %s create %s --from-file -", def.Environment, kind, name)
	case def.Content != "":
		return fmt.Sprintf("slipctl %s create %s --from-file FILE   # the content given inline in the Compose file", kind, name)
	default:
		return fmt.Sprintf("slipctl %s create %s --from-file FILE", kind, name)
	}
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:@%+=,-]+$`)

func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
