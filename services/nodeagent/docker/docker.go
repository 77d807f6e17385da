// Package docker runs allocations as containers on the Docker Engine.
package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/secretfs"
	"slipway.dev/platform/nodepolicy"
	"slipway.dev/platform/specrules"
)

// Labels the driver puts on every container it creates.
const (
	LabelAllocation  = "slipway.allocation"
	LabelService     = "slipway.service"
	LabelRelease     = "slipway.release"
	LabelNode        = "slipway.node"
	LabelTrack       = "slipway.track"
	LabelFingerprint = "slipway.fingerprint"
	// LabelPort is the routed container port: its host port is the
	// instance's (the one registered in Consul).
	LabelPort = "slipway.port"
)

// ErrImageMissing is returned when an image is neither present locally nor
// pullable.
var ErrImageMissing = errors.New("docker: image not available")

// DefaultPullTimeout bounds an image pull unless WithPullTimeout says
// otherwise, so an unreachable or stalled registry never hangs a start.
const DefaultPullTimeout = 2 * time.Minute

// DefaultPidsLimit is the most processes (threads included) a container
// may have unless WithPidsLimit says otherwise: enough for any sane server,
// few enough that a fork bomb cannot take the host.
const DefaultPidsLimit = 512

// ErrNotAllowed is returned by Start for a spec that asks for more than
// the driver's policy allows.
var ErrNotAllowed = errors.New("docker: not allowed on this node")

// Driver runs allocations as Docker containers labelled with the node id,
// hardened: see HostConfig.
type Driver struct {
	cli       *client.Client
	node      string
	address   string
	logger    *slog.Logger
	policy    nodepolicy.Policy
	pidsLimit int64
	// Pulls: timeout, credentials file (re-read at every pull), progress.
	pullTimeout time.Duration
	authFile    string
	progress    func(allocID, msg string)
	secrets     *secretfs.Dir // nil: no secrets
}

// Option configures a Driver.
type Option func(*Driver)

// WithPolicy sets what containers may ask for beyond the hardened default
// (default: nothing, any image).
func WithPolicy(p nodepolicy.Policy) Option { return func(d *Driver) { d.policy = p } }

// WithPidsLimit sets every container's pids limit (default
// DefaultPidsLimit); n must be positive.
func WithPidsLimit(n int64) Option { return func(d *Driver) { d.pidsLimit = n } }

// WithPullTimeout bounds each image pull (default DefaultPullTimeout); d
// must be positive.
func WithPullTimeout(d time.Duration) Option { return func(dr *Driver) { dr.pullTimeout = d } }

// WithRegistryAuthFile names a credentials file (see Credentials), read at
// every pull so that it can be replaced without a restart.
func WithRegistryAuthFile(path string) Option { return func(d *Driver) { d.authFile = path } }

// WithSecrets writes the secrets and configs allocations mount under dir
// (on tmpfs), one 0700 directory per allocation, and bind-mounts each file
// read-only at its target: nothing is written into the container's
// filesystem nor passed in its environment. Without it such allocations
// fail to start.
func WithSecrets(dir *secretfs.Dir) Option { return func(d *Driver) { d.secrets = dir } }

// Dial connects to the Engine (DOCKER_HOST or the default socket) and checks
// that it answers within timeout.
func Dial(ctx context.Context, timeout time.Duration) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker: client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker: engine does not answer: %w", err)
	}
	cli.NegotiateAPIVersion(ctx)
	return cli, nil
}

// New returns a driver for node that binds host ports on address.
func New(cli *client.Client, node, address string, logger *slog.Logger, opts ...Option) *Driver {
	if logger == nil {
		logger = slog.Default()
	}
	d := &Driver{cli: cli, node: node, address: address, logger: logger, pidsLimit: DefaultPidsLimit}
	for _, o := range opts {
		o(d)
	}
	if d.pidsLimit <= 0 {
		d.pidsLimit = DefaultPidsLimit
	}
	if d.pullTimeout <= 0 {
		d.pullTimeout = DefaultPullTimeout
	}
	return d
}

// natPort is a container port as Docker names it.
func natPort(p int) nat.Port { return nat.Port(strconv.Itoa(p) + "/tcp") }

// HostConfig is the hardened host configuration of a spec's container:
// no-new-privileges; every capability dropped but the spec's cap_add
// (nodepolicy.DefaultCaps is empty); the pids limit; the spec's memory as
// the limit of memory and swap together; the default bridge network, a
// private IPC namespace and the container's own PID namespace; not
// privileged unless the spec asks; no devices; no mounts but the spec's
// host mounts; every port of the spec (the routed one and the named
// others) published on bindIP, at its static host port or an ephemeral
// one. The caller checks the spec against the node's policy first.
func HostConfig(s allocation.Spec, pidsLimit int64, bindIP string) *container.HostConfig {
	bindings := nat.PortMap{}
	for _, p := range s.AllPorts() {
		hostPort := ""
		if p.HostPort > 0 {
			hostPort = strconv.Itoa(p.HostPort)
		}
		bindings[natPort(p.Port)] = []nat.PortBinding{{HostIP: bindIP, HostPort: hostPort}}
	}
	mem := int64(s.MemoryMB) << 20
	hc := &container.HostConfig{
		PortBindings:  bindings,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		NetworkMode:   network.NetworkBridge,
		IpcMode:       container.IPCModePrivate,
		SecurityOpt:   []string{"no-new-privileges:true"},
		CapDrop:       []string{"ALL"},
		Privileged:    s.Privileged,
		Resources: container.Resources{
			Memory:     mem,
			MemorySwap: mem,
			CPUShares:  int64(s.CPUMHz),
			PidsLimit:  &pidsLimit,
		},
	}
	caps := append([]string(nil), nodepolicy.DefaultCaps...)
	for _, c := range s.CapAdd {
		if cc, ok := nodepolicy.CanonicalCap(c); ok && !slices.Contains(caps, cc) {
			caps = append(caps, cc)
		}
	}
	if len(caps) > 0 {
		hc.CapAdd = caps
	}
	for _, m := range s.Mounts {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.HostPath, Target: m.ContainerPath, ReadOnly: m.ReadOnly,
			BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}})
	}
	for _, v := range s.Volumes {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: VolumeName(s.NodeID, s.Service, v.Name), Target: v.ContainerPath, ReadOnly: v.ReadOnly})
	}
	return hc
}

// ContainerConfig is the container configuration of a spec on node: the
// image, PORT and the spec's env, its entrypoint and args, its stop
// signal, its labels and the driver's own (which win). The env has PORT
// (the routed container port) and, for named ports, PORT_<NAME> of each.
func ContainerConfig(s allocation.Spec, node string) *container.Config {
	env := []string{"PORT=" + strconv.Itoa(s.Port)}
	exposed := nat.PortSet{}
	for _, p := range s.AllPorts() {
		exposed[natPort(p.Port)] = struct{}{}
		if p.Name != "" {
			env = append(env, specrules.PortEnv(p.Name)+"="+strconv.Itoa(p.Port))
		}
	}
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	for k, v := range map[string]string{
		LabelAllocation:  s.ID,
		LabelService:     s.Service,
		LabelRelease:     strconv.FormatUint(s.Release, 10),
		LabelNode:        node,
		LabelTrack:       s.Track,
		LabelFingerprint: s.Fingerprint(),
		LabelPort:        strconv.Itoa(s.Port),
	} {
		labels[k] = v
	}
	cfg := &container.Config{
		Image:        s.Image,
		Env:          env,
		Cmd:          s.Args,
		ExposedPorts: exposed,
		Labels:       labels,
		StopSignal:   s.StopSignal,
	}
	if len(s.Entrypoint) > 0 {
		cfg.Entrypoint = s.Entrypoint
	}
	if s.Check.StartPeriod > 0 {
		// The image's own HEALTHCHECK gets the same grace, so Docker does
		// not call it unhealthy while the spec's check may still fail;
		// Docker keeps the image's test, interval, timeout and retries.
		cfg.Healthcheck = &container.HealthConfig{StartPeriod: s.Check.StartPeriod}
	}
	return cfg
}

// Labels the driver puts on every volume it creates.
const (
	LabelVolume = "slipway.volume"
)

// VolumeName is the Docker volume of a service's named volume on a node.
func VolumeName(node, service, name string) string {
	return "slipway-" + node + "-" + service + "-" + name
}

// ensureVolumes creates the spec's named volumes that do not exist yet,
// labelled with the node, service and volume name. Volumes are never
// removed by the driver: they outlive instances and releases.
func (d *Driver) ensureVolumes(ctx context.Context, s allocation.Spec) error {
	for _, v := range s.Volumes {
		name := VolumeName(s.NodeID, s.Service, v.Name)
		if _, err := d.cli.VolumeInspect(ctx, name); err == nil {
			continue
		}
		if _, err := d.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local",
			Labels: map[string]string{LabelNode: d.node, LabelService: s.Service, LabelVolume: v.Name}}); err != nil {
			return fmt.Errorf("docker: create volume %s: %w", name, err)
		}
		d.logger.Info("volume created", "volume", name, "service", s.Service)
	}
	return nil
}

// check refuses a spec the hardened driver must not run: no memory limit,
// or more than the node's policy allows. Host paths are checked again with
// symbolic links resolved, so that a link under an allowed directory
// cannot reach outside it.
func (d *Driver) check(s allocation.Spec) error {
	if s.MemoryMB <= 0 {
		return fmt.Errorf("memory_mb: every container needs a memory limit: %w", ErrNotAllowed)
	}
	vs := d.policy.Check(s.Ask())
	for i, m := range s.Mounts {
		real, err := filepath.EvalSymlinks(m.HostPath)
		if err != nil {
			vs = append(vs, nodepolicy.Violation{Field: fmt.Sprintf("host_mounts[%d].host_path", i), Description: fmt.Sprintf("host path %s: %v", m.HostPath, err)})
		} else if real != m.HostPath && !d.policy.AllowsHostPath(real) {
			vs = append(vs, nodepolicy.Violation{Field: fmt.Sprintf("host_mounts[%d].host_path", i), Description: fmt.Sprintf("host path %s resolves to %s, which is not allowed on this node", m.HostPath, real)})
		}
	}
	if len(vs) == 0 {
		return nil
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Field + ": " + v.Description
	}
	return fmt.Errorf("%s: %w", strings.Join(parts, "; "), ErrNotAllowed)
}

// Name is "docker".
func (d *Driver) Name() string { return "docker" }

// ContainerName is the container name of an allocation on a node.
func ContainerName(node, allocID string) string { return "slipway-" + node + "-" + allocID }

// Start creates and starts the allocation's container. On error nothing is
// left behind.
func (d *Driver) Start(ctx context.Context, s allocation.Spec) (allocation.Instance, error) {
	if err := d.check(s); err != nil {
		return allocation.Instance{}, err
	}
	if err := d.ensureImage(ctx, s.ID, s.Image); err != nil {
		return allocation.Instance{}, err
	}
	if err := d.ensureVolumes(ctx, s); err != nil {
		return allocation.Instance{}, err
	}
	var static []string
	for _, p := range s.AllPorts() {
		if p.HostPort > 0 {
			static = append(static, d.address+":"+strconv.Itoa(p.HostPort))
		}
	}
	cfg := ContainerConfig(s, d.node)
	if s.KillTimeout > 0 {
		secs := int((s.KillTimeout + time.Second - 1) / time.Second)
		cfg.StopTimeout = &secs
	}
	hc := HostConfig(s, d.pidsLimit, d.address)
	if len(s.Files) > 0 {
		if d.secrets == nil {
			return allocation.Instance{}, fmt.Errorf("docker: the allocation mounts secrets or configs, and this agent has no -secrets-dir")
		}
		if err := d.secrets.Write(s.ID, s.Files, nil); err != nil {
			return allocation.Instance{}, fmt.Errorf("docker: %w", err)
		}
		for _, f := range s.Files {
			hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: d.secrets.Path(s.ID, f.Target), Target: f.Target, ReadOnly: true,
				BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate}})
		}
	}
	started := false
	defer func() {
		if !started && len(s.Files) > 0 {
			_ = d.secrets.Remove(s.ID)
		}
	}()
	name := ContainerName(d.node, s.ID)
	// A leftover of the same name (e.g. a crash between create and start)
	// is ours: remove it.
	_ = d.cli.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
	created, err := d.cli.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		return allocation.Instance{}, fmt.Errorf("docker: create %s: %w", name, err)
	}
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		d.remove(created.ID)
		if portInUse(err) {
			return allocation.Instance{}, fmt.Errorf("docker: start %s: host port %s already in use: %w", name, strings.Join(static, ", "), err)
		}
		return allocation.Instance{}, fmt.Errorf("docker: start %s: %w", name, err)
	}
	ins, err := d.cli.ContainerInspect(ctx, created.ID)
	if err != nil {
		d.remove(created.ID)
		return allocation.Instance{}, fmt.Errorf("docker: inspect %s: %w", name, err)
	}
	inst := fromInspect(ins)
	if !inst.Running {
		started = true
		return inst, nil // exited at once: the agent reports and restarts it
	}
	for _, p := range s.AllPorts() {
		if inst.HostPorts[p.Port] == 0 {
			d.remove(created.ID)
			return allocation.Instance{}, fmt.Errorf("docker: %s: no host port bound to %s", name, natPort(p.Port))
		}
	}
	started = true
	return inst, nil
}

func (d *Driver) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
		d.logger.Warn("remove container", "id", id, "err", err)
	}
}

// Stop sends SIGTERM, waits up to grace, kills, and removes the container.
func (d *Driver) Stop(ctx context.Context, inst allocation.Instance, grace time.Duration) error {
	secs := int((grace + time.Second - 1) / time.Second)
	if err := d.cli.ContainerStop(ctx, inst.ID, container.StopOptions{Timeout: &secs}); err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("docker: stop %s: %w", inst.ID, err)
	}
	if err := d.cli.ContainerRemove(ctx, inst.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("docker: remove %s: %w", inst.ID, err)
	}
	if d.secrets != nil && inst.AllocID != "" {
		if err := d.secrets.Remove(inst.AllocID); err != nil {
			return fmt.Errorf("docker: %w", err)
		}
	}
	return nil
}

// List returns every container labelled with this node, running or not.
func (d *Driver) List(ctx context.Context) ([]allocation.Instance, error) {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelNode+"="+d.node))})
	if err != nil {
		return nil, fmt.Errorf("docker: list containers: %w", err)
	}
	out := make([]allocation.Instance, 0, len(cs))
	for _, c := range cs {
		rel, _ := strconv.ParseUint(c.Labels[LabelRelease], 10, 64)
		inst := allocation.Instance{
			AllocID:     c.Labels[LabelAllocation],
			Service:     c.Labels[LabelService],
			Release:     rel,
			Track:       c.Labels[LabelTrack],
			ID:          c.ID,
			Fingerprint: c.Labels[LabelFingerprint],
			Running:     c.State == container.StateRunning,
			StartedAt:   time.Unix(c.Created, 0),
			ImageHealth: healthFromStatus(c.Status),
		}
		routed, _ := strconv.Atoi(c.Labels[LabelPort])
		for _, p := range c.Ports {
			if p.PublicPort == 0 || p.Type != "tcp" {
				continue
			}
			if inst.HostPorts == nil {
				inst.HostPorts = map[int]int{}
			}
			if _, ok := inst.HostPorts[int(p.PrivatePort)]; !ok {
				inst.HostPorts[int(p.PrivatePort)] = int(p.PublicPort)
			}
			// The routed port's (a container from before LabelPort
			// has one port only).
			if inst.HostPort == 0 && (routed == 0 || int(p.PrivatePort) == routed) {
				inst.HostPort = int(p.PublicPort)
			}
		}
		if inst.AllocID == "" {
			continue
		}
		out = append(out, inst)
	}
	return out, nil
}

func fromInspect(c container.InspectResponse) allocation.Instance {
	inst := allocation.Instance{ID: c.ID}
	if c.Config != nil {
		l := c.Config.Labels
		rel, _ := strconv.ParseUint(l[LabelRelease], 10, 64)
		inst.AllocID, inst.Service, inst.Release, inst.Track, inst.Fingerprint = l[LabelAllocation], l[LabelService], rel, l[LabelTrack], l[LabelFingerprint]
	}
	if c.State != nil {
		if c.State.Health != nil && c.State.Health.Status != container.NoHealthcheck {
			inst.ImageHealth = c.State.Health.Status
		}
		inst.Running = c.State.Running
		inst.ExitCode = c.State.ExitCode
		inst.StartedAt, _ = time.Parse(time.RFC3339Nano, c.State.StartedAt)
	}
	routed := 0
	if c.Config != nil {
		routed, _ = strconv.Atoi(c.Config.Labels[LabelPort])
	}
	if c.NetworkSettings != nil {
		for cp, bs := range c.NetworkSettings.Ports {
			for _, b := range bs {
				if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 {
					if a, err := netip.ParseAddr(b.HostIP); err == nil && a.Is6() {
						continue // prefer the IPv4 binding; same port anyway
					}
					if inst.HostPorts == nil {
						inst.HostPorts = map[int]int{}
					}
					inst.HostPorts[cp.Int()] = p
					if routed == 0 || cp.Int() == routed {
						inst.HostPort = p
					}
				}
			}
		}
	}
	return inst
}

// Watch reports every container of this node that dies and every change of
// an image HEALTHCHECK verdict, until ctx ends. It reconnects when the event
// stream breaks (the agent's periodic List catches what was missed).
func (d *Driver) Watch(ctx context.Context, report func(allocation.Event)) {
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionHealthStatus)),
		filters.Arg("label", LabelNode+"="+d.node),
	)
	for ctx.Err() == nil {
		msgs, errs := d.cli.Events(ctx, events.ListOptions{Filters: f})
	recv:
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				id := m.Actor.Attributes[LabelAllocation]
				if id == "" {
					continue
				}
				switch {
				case m.Action == events.ActionDie:
					report(allocation.Event{AllocID: id, InstanceID: m.Actor.ID, Exited: true, ExitCode: dieExitCode(m.Actor.Attributes),
						Output: d.lastOutput(ctx, m.Actor.ID)})
				case m.Action == events.ActionHealthStatusHealthy:
					report(allocation.Event{AllocID: id, InstanceID: m.Actor.ID, ImageHealth: allocation.ImageHealthy})
				case m.Action == events.ActionHealthStatusUnhealthy:
					report(allocation.Event{AllocID: id, InstanceID: m.Actor.ID, ImageHealth: allocation.ImageUnhealthy})
				}
			case err := <-errs:
				if ctx.Err() == nil {
					d.logger.Warn("docker event stream broke; reconnecting", "err", err)
				}
				break recv
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// lastOutput returns the last lines a container wrote (stdout and stderr),
// "" when Docker cannot say within a second.
func (d *Driver) lastOutput(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	rc, err := d.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var out bytes.Buffer
	lim := &limitedWriter{w: &out, n: 8 << 10}
	if _, err := stdcopy.StdCopy(lim, lim, io.LimitReader(rc, 64<<10)); err != nil && out.Len() == 0 {
		return ""
	}
	return allocation.LastLines(out.Bytes(), 5, 400)
}

// limitedWriter keeps the first n bytes written to it and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	k := min(len(p), l.n)
	if k > 0 {
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}

// dieExitCode reads the exit status from a die event's attributes; -1
// when it has none.
func dieExitCode(attrs map[string]string) int {
	code, err := strconv.Atoi(attrs["exitCode"])
	if err != nil {
		return -1
	}
	return code
}

// healthFromStatus reads the HEALTHCHECK verdict from a container list
// status such as "Up 3 seconds (health: starting)".
func healthFromStatus(s string) string {
	switch {
	case strings.HasSuffix(s, "(healthy)"):
		return allocation.ImageHealthy
	case strings.HasSuffix(s, "(unhealthy)"):
		return allocation.ImageUnhealthy
	case strings.HasSuffix(s, "(health: starting)"):
		return allocation.ImageStarting
	}
	return ""
}

// portInUse reports whether err is the Engine's complaint about a host port
// already in use.
func portInUse(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "port is already allocated") || strings.Contains(err.Error(), "address already in use"))
}
