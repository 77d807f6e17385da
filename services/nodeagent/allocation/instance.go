package allocation

import (
	"errors"
	"strings"
	"time"
)

// ErrNotFound is returned by drivers for an instance that no longer exists.
var ErrNotFound = errors.New("allocation: instance not found")

// Instance is what a driver runs for an allocation: a container or a
// process.
type Instance struct {
	// AllocID is the allocation it runs.
	AllocID string
	// Service, Release and Track are copied from the spec (recovered from
	// labels after a restart).
	Service string
	Release uint64
	Track   string
	// ID is the container id or process id.
	ID string
	// Fingerprint is the spec fingerprint it was started from.
	Fingerprint string
	// HostPort is the host port bound to the instance's port.
	HostPort int
	// HostPorts maps each published container port (the routed one and
	// the spec's other named ports) to its host port.
	HostPorts map[int]int
	// Running is false once the instance exited.
	Running bool
	// ExitCode is set once it exited.
	ExitCode int
	// StartedAt is when it started.
	StartedAt time.Time
	// ImageHealth is the verdict of the image's own health check (Docker
	// HEALTHCHECK): "" when it has none, else ImageStarting, ImageHealthy
	// or ImageUnhealthy.
	ImageHealth string
}

// Image health check verdicts.
const (
	ImageStarting  = "starting"
	ImageHealthy   = "healthy"
	ImageUnhealthy = "unhealthy"
)

// Event is a driver's report about one instance.
type Event struct {
	AllocID    string
	InstanceID string
	// Exited is set when the instance exited.
	Exited bool
	// ExitCode is the exit status of an exited instance, -1 when the
	// driver does not know it.
	ExitCode int
	// Output is an exited instance's last lines of output (LastLines), ""
	// when the driver has none.
	Output string
	// ImageHealth is set when the image's health check verdict changed.
	ImageHealth string
}

// LastLines returns the last n non-empty lines of out, trimmed and joined
// with " | ", at most max bytes (the end kept): an exited instance's
// output on one status line.
func LastLines(out []byte, n, max int) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, " | ")
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return strings.ToValidUTF8(s, "")
}
