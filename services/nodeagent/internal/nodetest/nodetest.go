// Package nodetest holds what the node agent's integration tests share:
// demo images, unique node ids, and cleanup of what a test node left in
// Docker or as processes.
package nodetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"slipway.dev/nodeagent/docker"
	"slipway.dev/platform/testenv"
)

var imagesOnce sync.Once
var imagesErr error
var imagesOut []byte

// ImagesDir builds the demo images and process executables once per test
// binary (scripts/demo-images.sh, quick when up to date) and returns the
// directory of the executables.
func ImagesDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(testenv.BinDir(t), "images")
	imagesOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(testenv.RepoRoot(t), "scripts", "demo-images.sh"))
		cmd.Env = append(os.Environ(), "SLIPWAY_IMAGES_DIR="+dir)
		imagesOut, imagesErr = cmd.CombinedOutput()
	})
	if imagesErr != nil {
		t.Fatalf("scripts/demo-images.sh: %v\n%s", imagesErr, imagesOut)
	}
	return dir
}

// NodeID returns a unique node id for a test.
func NodeID(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// Docker connects to the Engine, failing the test when it does not answer.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := docker.Dial(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatalf("Docker Engine needed: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Containers lists the containers labelled with node (running or not).
func Containers(t testing.TB, cli *client.Client, node string) []container.Summary {
	t.Helper()
	cs, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelNode+"="+node))})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	return cs
}

// CleanupContainers removes every container labelled with node when the
// test ends, failed or not.
func CleanupContainers(t testing.TB, cli *client.Client, node string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, err := cli.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", docker.LabelNode+"="+node))})
		if err != nil {
			t.Logf("cleanup: list containers: %v", err)
			return
		}
		for _, c := range cs {
			if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
				t.Logf("cleanup: remove %s: %v", c.ID, err)
			}
		}
	})
}

// CleanupProcesses kills every process recorded in a process driver state
// directory when the test ends, failed or not.
func CleanupProcesses(t testing.TB, stateDir string) {
	t.Cleanup(func() {
		ents, _ := os.ReadDir(stateDir)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(stateDir, e.Name()))
			if err != nil {
				continue
			}
			var r struct {
				PID int `json:"pid"`
			}
			if json.Unmarshal(b, &r) == nil && r.PID > 1 {
				_ = syscall.Kill(-r.PID, syscall.SIGKILL)
			}
		}
	})
}

// Eventually is testenv.Eventually for a condition that is a bool.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, timeout, what, func() error {
		if !cond() {
			return errors.New("still false")
		}
		return nil
	})
}
