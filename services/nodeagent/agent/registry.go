package agent

import (
	"context"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/nodepolicy"
)

// Health is the status of a registered instance's check, as the registry
// reports it.
type Health string

// Check statuses.
const (
	HealthPassing  Health = "passing"
	HealthWarning  Health = "warning"
	HealthCritical Health = "critical"
)

// Self describes the agent itself, as it registers for the coordinator to
// find.
type Self struct {
	// ID is the node id.
	ID string
	// GRPCAddr is the host:port the coordinator dials.
	GRPCAddr string
	// Labels are the node's labels.
	Labels map[string]string
	// CPUMHz and MemoryMB are the node's capacity.
	CPUMHz, MemoryMB int
	// Driver is "docker" or "process".
	Driver string
	// Policy is what the agent allows beyond the hardened default.
	Policy nodepolicy.Policy
	// BootID is random per agent process (see catalog.MetaBoot).
	BootID string
}

// Registry is where the agent registers its instances and itself, and
// reads their checks and the edges' route barrier (the consul package
// implements it on Consul).
type Registry interface {
	// Register registers an instance at address, its check passing or not.
	Register(ctx context.Context, s allocation.Spec, inst allocation.Instance, address string, passing bool) error
	// Deregister removes an instance.
	Deregister(ctx context.Context, allocID string) error
	// Owned lists the instances registered by this agent, and whether the
	// agent itself is registered.
	Owned(ctx context.Context) (ids map[string]bool, self bool, err error)
	// Checks returns each instance's check status.
	Checks(ctx context.Context) (map[string]Health, error)
	// WaitRoutes waits until every live edge routes the service without
	// allocID, or timeout.
	WaitRoutes(ctx context.Context, service, allocID string, timeout, window time.Duration) error
	// RegisterAgent registers the agent itself.
	RegisterAgent(ctx context.Context, n Self) error
	// Heartbeat keeps the agent's own check passing for HeartbeatTTL.
	Heartbeat(ctx context.Context) error
	// HeartbeatTTL is how long the agent's own check stays passing after
	// a heartbeat; the agent beats four times within it.
	HeartbeatTTL() time.Duration
	// SetImageHealth records an instance's image HEALTHCHECK verdict.
	SetImageHealth(ctx context.Context, allocID, verdict string) error
	// ImageCheckTTL is how long an image health verdict stays; the agent
	// refreshes it six times within.
	ImageCheckTTL() time.Duration
}

// now is the agent's clock.
func (a *Agent) now() time.Time { return a.cfg.Now() }

// since is the time elapsed since t on the agent's clock.
func (a *Agent) since(t time.Time) time.Duration { return a.cfg.Now().Sub(t) }
