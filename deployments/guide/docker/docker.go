// Package docker is the guide's thin adapter over the docker CLI: whether
// the Engine answers, whether an image exists, and removing every container
// carrying a label (what the node agent started for the demo).
package docker

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Available reports whether the docker CLI is installed and the Engine
// answers within a few seconds.
func Available(ctx context.Context) bool {
	if _, err := exec.LookPath("docker"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").Run() == nil
}

// ImageExists reports whether the local Engine has the image.
func ImageExists(ctx context.Context, image string) bool {
	return exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", image).Run() == nil
}

// RemoveLabelled force-removes every container (running or not) carrying
// label key=value and returns their ids.
func RemoveLabelled(ctx context.Context, key, value string) ([]string, error) {
	out, err := run(ctx, "ps", "-aq", "--filter", "label="+key+"="+value)
	if err != nil {
		return nil, fmt.Errorf("docker: list containers labelled %s=%s: %w", key, value, err)
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, nil
	}
	if _, err := run(ctx, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
		return ids, fmt.Errorf("docker: remove containers labelled %s=%s: %w", key, value, err)
	}
	return ids, nil
}

// CountLabelled returns how many containers carry label key=value.
func CountLabelled(ctx context.Context, key, value string) (int, error) {
	out, err := run(ctx, "ps", "-aq", "--filter", "label="+key+"="+value)
	if err != nil {
		return 0, fmt.Errorf("docker: list containers labelled %s=%s: %w", key, value, err)
	}
	return len(strings.Fields(out)), nil
}

func run(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %s: %w", args[0], strings.TrimSpace(stderr.String()), err)
	}
	return stdout.String(), nil
}
