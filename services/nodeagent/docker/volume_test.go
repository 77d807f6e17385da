package docker_test

import (
	"testing"

	"github.com/docker/docker/api/types/mount"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/docker"
)

// TestHostConfigMountsNamedVolumes: a spec's named volumes become Docker
// volume mounts of the node's and service's volume, read-only when asked,
// beside its host bind mounts.
func TestHostConfigMountsNamedVolumes(t *testing.T) {
	s := allocation.Spec{ID: "a1", NodeID: "n1", Service: "db", Port: 8080, MemoryMB: 64,
		Mounts:  []allocation.Mount{{HostPath: "/srv", ContainerPath: "/srv"}},
		Volumes: []allocation.Volume{{Name: "data", ContainerPath: "/data"}, {Name: "seed", ContainerPath: "/seed", ReadOnly: true}}}
	hc := docker.HostConfig(s, 10, "127.0.0.1")
	if len(hc.Mounts) != 3 {
		t.Fatalf("mounts %+v, want the bind mount and two volumes", hc.Mounts)
	}
	for i, want := range []mount.Mount{
		{Type: mount.TypeVolume, Source: "slipway-n1-db-data", Target: "/data"},
		{Type: mount.TypeVolume, Source: "slipway-n1-db-seed", Target: "/seed", ReadOnly: true},
	} {
		got := hc.Mounts[i+1]
		if got.Type != want.Type || got.Source != want.Source || got.Target != want.Target || got.ReadOnly != want.ReadOnly {
			t.Errorf("mount %d = %+v, want %+v", i+1, got, want)
		}
	}
	if docker.VolumeName("n1", "db", "data") != "slipway-n1-db-data" {
		t.Errorf("VolumeName = %q", docker.VolumeName("n1", "db", "data"))
	}
}

// TestContainerConfig: the spec's entrypoint, args, stop signal and labels
// are the container's; the driver's own labels win over the spec's.
func TestContainerConfig(t *testing.T) {
	s := allocation.Spec{ID: "a1", NodeID: "n1", Service: "db", Release: 2, Port: 8080, Image: "demo:v1",
		Entrypoint: []string{"/demo"}, Args: []string{"-x"}, StopSignal: "SIGINT",
		Labels: map[string]string{"team": "payments", docker.LabelService: "forged"}}
	c := docker.ContainerConfig(s, "n1")
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/demo" || len(c.Cmd) != 1 || c.StopSignal != "SIGINT" {
		t.Errorf("config %+v", c)
	}
	if c.Labels["team"] != "payments" || c.Labels[docker.LabelService] != "db" || c.Labels[docker.LabelNode] != "n1" {
		t.Errorf("labels %v", c.Labels)
	}
	if c := docker.ContainerConfig(allocation.Spec{Port: 1}, "n1"); c.Entrypoint != nil || c.StopSignal != "" {
		t.Errorf("defaults: entrypoint %v, stop signal %q, want the image's", c.Entrypoint, c.StopSignal)
	}
}
