package engine

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/coordinator/state"
	"slipway.dev/platform/spec"
	"slipway.dev/platform/specrules"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func stored(id, node, service string, at time.Time, envBytes int) state.StoredAllocation {
	a := &agentv1.Allocation{Id: id, NodeId: node, Service: service, Image: "slipway/demo:v1", Port: 8080}
	if envBytes > 0 {
		a.Env = map[string]string{"BLOB": strings.Repeat("x", envBytes)}
	}
	return state.StoredAllocation{Allocation: a, CreatedAt: timestamppb.New(at)}
}

func ids(as []*agentv1.Allocation) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.GetId())
	}
	return out
}

// TestDesiredSetsHoldBackTheNewest: a node whose set outgrows the budget
// gets its oldest allocations (in their usual order) and the newest are
// held back, named by service; other nodes are untouched.
func TestDesiredSetsHoldBackTheNewest(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	all := []state.StoredAllocation{
		stored("api-1", "n1", "api", t0, 100),
		stored("big-1", "n1", "big", t0.Add(2*time.Minute), 3000),
		stored("big-2", "n1", "big", t0.Add(2*time.Minute), 3000),
		stored("web-1", "n1", "web", t0.Add(time.Minute), 100),
		stored("big-3", "n2", "big", t0.Add(2*time.Minute), 3000),
	}
	desired, held := desiredSets(all, 4000)
	want := map[string][]string{"n1": {"api-1", "big-1", "web-1"}, "n2": {"big-3"}}
	got := map[string][]string{}
	for n, as := range desired {
		got[n] = ids(as)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("desired sets (-want +got):\n%s", d)
	}
	if len(held) != 1 || held[0].Node != "n1" || held[0].Services["big"] != 1 || len(held[0].Services) != 1 {
		t.Fatalf("held = %v, want one allocation of big on n1", held)
	}
	var hb *HeldBackError
	if err := error(held[0]); !errors.As(err, &hb) || !strings.Contains(err.Error(), "node n1") || !strings.Contains(err.Error(), "big (1 allocations)") {
		t.Errorf("error = %q, want it to name the node and the service", err)
	}

	// Within budget nothing is held and the order is the stored one.
	desired, held = desiredSets(all, specrules.SyncBudgetBytes)
	if len(held) != 0 || !cmp.Equal(ids(desired["n1"]), []string{"api-1", "big-1", "big-2", "web-1"}) {
		t.Errorf("within budget: desired %v, held %v", ids(desired["n1"]), held)
	}
}

// TestLargestReleaseFitsOneMessage checks the arithmetic desiredSets relies
// on with real messages: the largest release Deploy accepts, placed twice
// on one node (a rollout's two releases), fits one SyncAllocations request
// under the gRPC message limit, with the longest ids.
func TestLargestReleaseFitsOneMessage(t *testing.T) {
	big := &deployv1.ServiceSpec{Name: strings.Repeat("s", 63), Image: "slipway/demo:v1", Port: 8080,
		Env: map[string]string{}, Check: &deployv1.HealthCheck{Http: "/" + strings.Repeat("h", specrules.MaxPathBytes-1)}}
	// As much env and args as Deploy accepts: what an allocation copies.
	for i := 0; ; i++ {
		k := strings.Repeat("K", 100) + strings.Repeat("_", i%20) + strings.Repeat("A", i/20)
		big.Env[k] = strings.Repeat("v", 150)
		if specrules.EnvTotal(big.Env) != "" || len(big.Env) > specrules.MaxEnvEntries {
			delete(big.Env, k)
			break
		}
	}
	for specrules.ArgsTotal(append(big.Args, strings.Repeat("a", specrules.MaxArgBytes))) == "" {
		big.Args = append(big.Args, strings.Repeat("a", specrules.MaxArgBytes))
	}
	big.Count = 100 // a placeholder of the same wire size as the count below
	size := proto.Size(big)
	count := int64(specrules.MaxReleaseBytes / (size + specrules.AllocationOverheadBytes))
	big.Count = int32(count)
	if vs := spec.Validate(big); vs != nil {
		t.Fatalf("the test's largest release (count %d, %d bytes) is refused: %v", count, size, vs)
	}
	node := strings.Repeat("n", specrules.MaxIdentifierBytes)
	req := &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 1 << 62, Index: 1 << 62}}
	for r := uint64(1); r <= 2; r++ {
		tmpl := Template(big, r<<40, "canary")
		for i := range count {
			a := proto.CloneOf(tmpl)
			a.Id, a.NodeId, a.HostPort = strings.Repeat("i", specrules.MaxIdentifierBytes-10)+string(rune('a'+i%26)), node, 65535
			if got := proto.Size(a); got > size+specrules.AllocationOverheadBytes {
				t.Fatalf("allocation is %d bytes, more than spec %d + overhead %d", got, size, specrules.AllocationOverheadBytes)
			}
			req.Allocations = append(req.Allocations, a)
		}
	}
	if got := proto.Size(req); got > specrules.AssumedMaxMsgBytes {
		t.Fatalf("request of %d allocations is %d bytes, more than %d", len(req.Allocations), got, specrules.AssumedMaxMsgBytes)
	} else {
		t.Logf("%d allocations of a %d-byte spec: %d bytes (limit %d)", len(req.Allocations), size, got, specrules.AssumedMaxMsgBytes)
	}
}
