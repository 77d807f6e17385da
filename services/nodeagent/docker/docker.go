// Package docker runs allocations as containers on the Docker Engine.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"slipway.dev/nodeagent/allocation"
)

// Labels the driver puts on every container it creates.
const (
	LabelAllocation  = "slipway.allocation"
	LabelService     = "slipway.service"
	LabelRelease     = "slipway.release"
	LabelNode        = "slipway.node"
	LabelTrack       = "slipway.track"
	LabelFingerprint = "slipway.fingerprint"
)

// ErrImageMissing is returned when an image is neither present locally nor
// pullable.
var ErrImageMissing = errors.New("docker: image not available")

// PullTimeout bounds an image pull, so a missing registry never hangs a
// start.
var PullTimeout = 5 * time.Second

// Driver runs allocations as Docker containers labelled with the node id.
type Driver struct {
	cli     *client.Client
	node    string
	address string
	logger  *slog.Logger
}

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
func New(cli *client.Client, node, address string, logger *slog.Logger) *Driver {
	if logger == nil {
		logger = slog.Default()
	}
	return &Driver{cli: cli, node: node, address: address, logger: logger}
}

// Name is "docker".
func (d *Driver) Name() string { return "docker" }

// ContainerName is the container name of an allocation on a node.
func ContainerName(node, allocID string) string { return "slipway-" + node + "-" + allocID }

// Start creates and starts the allocation's container. On error nothing is
// left behind.
func (d *Driver) Start(ctx context.Context, s allocation.Spec) (allocation.Instance, error) {
	if err := d.ensureImage(ctx, s.Image); err != nil {
		return allocation.Instance{}, err
	}
	port := nat.Port(strconv.Itoa(s.Port) + "/tcp")
	hostPort := ""
	if s.HostPort > 0 {
		hostPort = strconv.Itoa(s.HostPort)
	}
	env := []string{"PORT=" + strconv.Itoa(s.Port)}
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	cfg := &container.Config{
		Image:        s.Image,
		Env:          env,
		Cmd:          s.Args,
		ExposedPorts: nat.PortSet{port: struct{}{}},
		Labels: map[string]string{
			LabelAllocation:  s.ID,
			LabelService:     s.Service,
			LabelRelease:     strconv.FormatUint(s.Release, 10),
			LabelNode:        d.node,
			LabelTrack:       s.Track,
			LabelFingerprint: s.Fingerprint(),
		},
	}
	if s.KillTimeout > 0 {
		secs := int((s.KillTimeout + time.Second - 1) / time.Second)
		cfg.StopTimeout = &secs
	}
	hc := &container.HostConfig{
		PortBindings:  nat.PortMap{port: []nat.PortBinding{{HostIP: d.address, HostPort: hostPort}}},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Resources: container.Resources{
			Memory:    int64(s.MemoryMB) << 20,
			CPUShares: int64(s.CPUMHz),
		},
	}
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
			return allocation.Instance{}, fmt.Errorf("docker: start %s: host port %s:%s already in use: %w", name, d.address, hostPort, err)
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
		return inst, nil // exited at once: the agent reports and restarts it
	}
	if inst.HostPort == 0 {
		d.remove(created.ID)
		return allocation.Instance{}, fmt.Errorf("docker: %s: no host port bound to %s", name, port)
	}
	return inst, nil
}

func (d *Driver) ensureImage(ctx context.Context, ref string) error {
	if _, err := d.cli.ImageInspect(ctx, ref); err == nil {
		return nil
	} else if !client.IsErrNotFound(err) {
		return fmt.Errorf("docker: inspect image %q: %w", ref, err)
	}
	pctx, cancel := context.WithTimeout(ctx, PullTimeout)
	defer cancel()
	rc, err := d.cli.ImagePull(pctx, ref, image.PullOptions{})
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
	}
	if err == nil {
		if _, ierr := d.cli.ImageInspect(ctx, ref); ierr == nil {
			return nil
		}
		err = errors.New("pull finished without the image")
	}
	return fmt.Errorf("image %q is not present locally and could not be pulled (%v): %w", ref, err, ErrImageMissing)
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
		for _, p := range c.Ports {
			if p.PublicPort != 0 && p.Type == "tcp" {
				inst.HostPort = int(p.PublicPort)
				break
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
	if c.NetworkSettings != nil {
		for _, bs := range c.NetworkSettings.Ports {
			for _, b := range bs {
				if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 {
					if a, err := netip.ParseAddr(b.HostIP); err == nil && a.Is6() {
						continue // prefer the IPv4 binding; same port anyway
					}
					inst.HostPort = p
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
					report(allocation.Event{AllocID: id, InstanceID: m.Actor.ID, Exited: true})
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
