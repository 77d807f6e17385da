package agent

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/platform/nodepolicy"
)

// An allocation asking for more than the node's policy allows is refused
// with the violations naming the agent flags, and never started.
func TestSyncRefusesBeyondPolicy(t *testing.T) {
	rec := &recorder{}
	drv := &fakeDriver{rec: rec, inst: map[string]allocation.Instance{}}
	reg := &fakeRegistry{rec: rec, reg: map[string]bool{}}
	a, err := New(Config{NodeID: "n1", Address: "127.0.0.1", DataDir: t.TempDir(), ReadyWithin: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Policy: nodepolicy.Policy{Caps: []string{"NET_ADMIN"}, Images: []string{"slipway/*"}}}, drv, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	priv := spec("priv", "slipway/demo:v1")
	priv.Privileged = true
	capOK := spec("cap", "slipway/demo:v1")
	capOK.CapAdd = []string{"NET_ADMIN"}
	capBad := spec("capbad", "slipway/demo:v1")
	capBad.CapAdd = []string{"SYS_ADMIN"}
	mount := spec("mount", "slipway/demo:v1")
	mount.Mounts = []allocation.Mount{{HostPath: "/etc", ContainerPath: "/x"}}
	noMem := spec("nomem", "slipway/demo:v1")
	noMem.MemoryMB = 0
	res, err := a.Sync(ctx, "n1", Token{Term: 1, Index: 1}, []allocation.Spec{priv, capOK, capBad, mount, noMem, spec("img", "busybox")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"priv":   "privileged: privileged containers are not allowed on this node (the agent needs -allow-privileged)",
		"capbad": "cap_add[0]: capability SYS_ADMIN is not allowed on this node (the agent needs -allow-caps SYS_ADMIN)",
		"mount":  "host_mounts[0].host_path: host path /etc is not allowed on this node (the agent needs -allow-host-paths /etc",
		"nomem":  "memory_mb: a memory limit is required",
		"img":    `image: image "busybox" is not allowed on this node (-allow-images slipway/*)`,
	}
	for _, st := range res.Allocations {
		w, refused := want[st.AllocID]
		switch {
		case refused && (st.State != Failed || !strings.Contains(st.Error, w)):
			t.Errorf("%s: %v %q, want failed with %q", st.AllocID, st.State, st.Error, w)
		case !refused && st.State != Running:
			t.Errorf("%s: %v %q, want running", st.AllocID, st.State, st.Error)
		}
	}
	for _, c := range rec.take() {
		if strings.HasPrefix(c, "start ") && c != "start cap" {
			t.Errorf("refused allocation started: %s", c)
		}
	}
}
