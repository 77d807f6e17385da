package docker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/docker"
	"slipway.dev/nodeagent/internal/nodetest"
	"slipway.dev/platform/nodepolicy"
)

func hardenedSpec(node, id string) allocation.Spec {
	return allocation.Spec{ID: node + "-" + id, NodeID: node, Service: "hard-" + node, Release: 1, Track: "stable",
		Image: "slipway/demo:v1", Port: 8080, MemoryMB: 64, CPUMHz: 100, KillTimeout: time.Second}
}

// procStatus returns the fields of /proc/<pid>/status of a container's
// init process.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("read status of container process %d: %v", pid, err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func TestHardenedByDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real Docker; skipped by -short")
	}
	nodetest.ImagesDir(t)
	cli := nodetest.Docker(t)
	node := nodetest.NodeID(t)
	nodetest.CleanupContainers(t, cli, node)
	d := docker.New(cli, node, "127.0.0.1", nil)
	ctx := context.Background()
	inst, err := d.Start(ctx, hardenedSpec(node, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if !inst.Running {
		t.Fatalf("container exited at once: %+v", inst)
	}
	c, err := cli.ContainerInspect(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HostConfig
	if !slices.Contains(hc.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("SecurityOpt = %v, want no-new-privileges:true", hc.SecurityOpt)
	}
	if !slices.Equal(hc.CapDrop, []string{"ALL"}) || len(hc.CapAdd) != 0 {
		t.Errorf("CapDrop = %v, CapAdd = %v; want [ALL] and none", hc.CapDrop, hc.CapAdd)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != docker.DefaultPidsLimit {
		t.Errorf("PidsLimit = %v, want %d", hc.PidsLimit, docker.DefaultPidsLimit)
	}
	if hc.Memory != 64<<20 || hc.MemorySwap != 64<<20 {
		t.Errorf("Memory = %d, MemorySwap = %d; want %d both", hc.Memory, hc.MemorySwap, 64<<20)
	}
	if hc.Privileged || len(hc.Devices) != 0 || len(hc.Binds) != 0 || len(hc.Mounts) != 0 || len(c.Mounts) != 0 {
		t.Errorf("privileged %v, devices %v, binds %v, mounts %v/%v; want none", hc.Privileged, hc.Devices, hc.Binds, hc.Mounts, c.Mounts)
	}
	if hc.NetworkMode.IsHost() || hc.PidMode.IsHost() || hc.IpcMode.IsHost() || hc.UTSMode.IsHost() {
		t.Errorf("host namespaces: network %q, pid %q, ipc %q, uts %q", hc.NetworkMode, hc.PidMode, hc.IpcMode, hc.UTSMode)
	}
	// What the kernel enforces on the container's process.
	st := procStatus(t, c.State.Pid)
	if st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", st["NoNewPrivs"])
	}
	for _, f := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if st[f] != "0000000000000000" {
			t.Errorf("%s = %s, want no capabilities", f, st[f])
		}
	}
	if err := d.Stop(ctx, inst, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesBeyondPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real Docker; skipped by -short")
	}
	cli := nodetest.Docker(t)
	node := nodetest.NodeID(t)
	nodetest.CleanupContainers(t, cli, node)
	allowed := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(allowed, "escape")); err != nil {
		t.Fatal(err)
	}
	d := docker.New(cli, node, "127.0.0.1", nil, docker.WithPolicy(nodepolicy.Policy{
		Caps: []string{"NET_ADMIN"}, HostPaths: []string{allowed}, Images: []string{"slipway/*"}}))
	for name, tc := range map[string]struct {
		mod   func(*allocation.Spec)
		field string
	}{
		"memory 0":         {func(s *allocation.Spec) { s.MemoryMB = 0 }, "memory_mb"},
		"privileged":       {func(s *allocation.Spec) { s.Privileged = true }, "privileged: privileged containers are not allowed on this node (the agent needs -allow-privileged)"},
		"extra capability": {func(s *allocation.Spec) { s.CapAdd = []string{"NET_ADMIN", "SYS_ADMIN"} }, "cap_add[1]: capability SYS_ADMIN"},
		"host path":        {func(s *allocation.Spec) { s.Mounts = []allocation.Mount{{HostPath: outside, ContainerPath: "/x"}} }, "host_mounts[0].host_path"},
		"symlink escape": {func(s *allocation.Spec) {
			s.Mounts = []allocation.Mount{{HostPath: filepath.Join(allowed, "escape"), ContainerPath: "/x"}}
		}, "resolves to " + outside},
		"image": {func(s *allocation.Spec) { s.Image = "busybox:latest" }, `image: image "busybox:latest" is not allowed`},
	} {
		s := hardenedSpec(node, strings.ReplaceAll(name, " ", "-"))
		tc.mod(&s)
		_, err := d.Start(context.Background(), s)
		if !errors.Is(err, docker.ErrNotAllowed) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Start = %v, want ErrNotAllowed naming %q", name, err, tc.field)
		}
	}
	if cs := nodetest.Containers(t, cli, node); len(cs) != 0 {
		t.Errorf("refused starts left %d containers", len(cs))
	}
}

func TestAllowedExtras(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real Docker; skipped by -short")
	}
	nodetest.ImagesDir(t)
	cli := nodetest.Docker(t)
	node := nodetest.NodeID(t)
	nodetest.CleanupContainers(t, cli, node)
	dir := t.TempDir()
	d := docker.New(cli, node, "127.0.0.1", nil, docker.WithPidsLimit(64), docker.WithPolicy(nodepolicy.Policy{
		Caps: []string{"NET_ADMIN"}, HostPaths: []string{filepath.Dir(dir)}}))
	s := hardenedSpec(node, "extras")
	s.CapAdd = []string{"cap_net_admin"}
	s.Mounts = []allocation.Mount{{HostPath: dir, ContainerPath: "/data", ReadOnly: true}}
	ctx := context.Background()
	inst, err := d.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cli.ContainerInspect(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if caps := c.HostConfig.CapAdd; len(caps) != 1 || strings.TrimPrefix(caps[0], "CAP_") != "NET_ADMIN" || *c.HostConfig.PidsLimit != 64 {
		t.Errorf("CapAdd = %v, PidsLimit = %d; want [NET_ADMIN], 64", c.HostConfig.CapAdd, *c.HostConfig.PidsLimit)
	}
	if len(c.Mounts) != 1 || c.Mounts[0].Source != dir || c.Mounts[0].Destination != "/data" || c.Mounts[0].RW {
		t.Errorf("mounts = %+v, want %s on /data read-only", c.Mounts, dir)
	}
	if st := procStatus(t, c.State.Pid); st["CapEff"] != "0000000000001000" { // bit 12: CAP_NET_ADMIN
		t.Errorf("CapEff = %s, want only NET_ADMIN (0000000000001000)", st["CapEff"])
	}
	_ = d.Stop(ctx, inst, time.Second)
}
