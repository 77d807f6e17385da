package placement

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"slipway.dev/platform/nodepolicy"
)

func TestPlaceHonoursNodePolicy(t *testing.T) {
	plain := mkNode("plain", 1000, 1000)
	priv := mkNode("priv", 1000, 1000)
	priv.Policy = nodepolicy.Policy{Privileged: true, Caps: []string{"NET_ADMIN"}}
	only := mkNode("only", 1000, 1000)
	only.Policy = nodepolicy.Policy{Images: []string{"slipway/*"}}
	asks := []Ask{
		{Service: "sys", Release: 1, IDs: []string{"sys-1", "sys-2"}, CPU: 10, MemoryMB: 10,
			Security: nodepolicy.Ask{Image: "slipway/agent:v1", Privileged: true, Caps: []string{"NET_ADMIN"}}},
		{Service: "web", Release: 1, IDs: []string{"web-1", "web-2"}, CPU: 10, MemoryMB: 10, Security: nodepolicy.Ask{Image: "nginx"}},
		{Service: "mnt", Release: 1, IDs: []string{"mnt-1"}, CPU: 10, MemoryMB: 10,
			Security: nodepolicy.Ask{Image: "slipway/demo:v1", Mounts: []nodepolicy.Mount{{HostPath: "/data", ContainerPath: "/d"}}}},
	}
	plan, err := Place(Snapshot{NodeList: []Node{plain, priv, only}}, asks, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Privileged only where allowed; nginx never on the node that runs
	// slipway/* only; no node allows the host mount.
	if diff := cmp.Diff(map[string]string{"sys-1": "priv", "sys-2": "priv", "web-1": "plain", "web-2": "priv"}, where(plan),
		cmpopts.EquateEmpty(), cmpopts.IgnoreMapEntries(func(k, v string) bool { return k == "web-1" || k == "web-2" })); diff != "" {
		t.Errorf("placements (-want +got):\n%s", diff)
	}
	for _, id := range []string{"web-1", "web-2"} {
		if n := where(plan)[id]; n == "only" || n == "" {
			t.Errorf("%s placed on %q, want plain or priv", id, n)
		}
	}
	want := map[string]string{"mnt-1": "no node can run mnt v1 (10 MHz, 10 MiB): of 3 nodes, 3 not allowing the image or security asks (node agent -allow-* flags)"}
	if diff := cmp.Diff(want, failed(plan)); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
}
