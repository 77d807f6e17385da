package placement

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func mkNode(id string, cpu, mem int, labels ...string) Node {
	n := Node{ID: id, Ready: true, CPU: cpu, MemoryMB: mem, Labels: map[string]string{}}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		n.Labels[k] = v
	}
	return n
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return out
}

// where maps alloc id to node id, the part of a plan most tests check.
func where(p Plan) map[string]string {
	m := map[string]string{}
	for _, pl := range p.Placements {
		m[pl.AllocID] = pl.NodeID
	}
	return m
}

func failed(p Plan) map[string]string {
	m := map[string]string{}
	for _, f := range p.Failures {
		m[f.AllocID] = f.Reason
	}
	return m
}

func TestPlace(t *testing.T) {
	notReady := mkNode("n-down", 1000, 1000)
	notReady.Ready = false
	draining := mkNode("n-drain", 1000, 1000)
	draining.Draining = true
	web := func(n int, cs ...Constraint) Ask {
		return Ask{Service: "web", Release: 2, IDs: ids("web", n), CPU: 100, MemoryMB: 100, Constraints: cs}
	}
	for _, tc := range []struct {
		name     string
		nodes    []Node
		allocs   []Allocation
		asks     []Ask
		want     map[string]string
		failures map[string]string
	}{
		{
			name:  "skips nodes not ready or draining",
			nodes: []Node{notReady, draining, mkNode("n-ok", 1000, 1000)},
			asks:  []Ask{web(1)},
			want:  map[string]string{"web-1": "n-ok"},
		},
		{
			name:  "spreads a service across nodes before packing",
			nodes: []Node{mkNode("a", 1000, 1000), mkNode("b", 1000, 1000), mkNode("c", 1000, 1000)},
			asks:  []Ask{web(3)},
			// One per node; which node first is the seed's choice (ties).
			want: map[string]string{"web-1": "a", "web-2": "b", "web-3": "c"},
		},
		{
			name:   "packs onto the fullest node among equally spread ones",
			nodes:  []Node{mkNode("empty", 1000, 1000), mkNode("busy", 1000, 1000)},
			allocs: []Allocation{{ID: "db-1", Service: "db", NodeID: "busy", CPU: 600, MemoryMB: 600}},
			asks:   []Ask{web(1)},
			want:   map[string]string{"web-1": "busy"},
		},
		{
			name:   "spread wins over packing",
			nodes:  []Node{mkNode("empty", 1000, 1000), mkNode("busy", 1000, 1000)},
			allocs: []Allocation{{ID: "web-0", Service: "web", NodeID: "busy", CPU: 600, MemoryMB: 600}},
			asks:   []Ask{web(1)},
			want:   map[string]string{"web-1": "empty"},
		},
		{
			name:  "equality constraints, = and ==",
			nodes: []Node{mkNode("a", 1000, 1000, "zone=a"), mkNode("b", 1000, 1000, "zone=b")},
			asks: []Ask{
				web(1, Constraint{"node.label.zone", "=", "b"}),
				{Service: "api", IDs: []string{"api-1"}, Constraints: []Constraint{{"node.label.zone", "==", "a"}}},
			},
			want: map[string]string{"web-1": "b", "api-1": "a"},
		},
		{
			name:  "!= also matches nodes without the attribute",
			nodes: []Node{mkNode("a", 1000, 1000, "zone=a"), mkNode("b", 1000, 1000, "zone=b"), mkNode("x", 1000, 1000)},
			asks:  []Ask{web(2, Constraint{"node.label.zone", "!=", "b"})},
			want:  map[string]string{"web-1": "a", "web-2": "x"},
		},
		{
			name:  "regexp and node.id",
			nodes: []Node{mkNode("eu-1", 1000, 1000), mkNode("us-1", 1000, 1000), mkNode("us-2", 1000, 1000)},
			asks: []Ask{
				web(1, Constraint{"node.id", "regexp", "^us-"}, Constraint{"node.id", "!=", "us-2"}),
				{Service: "api", IDs: []string{"api-1"}, Constraints: []Constraint{{"node.label.missing", "regexp", ".*"}}},
			},
			want:     map[string]string{"web-1": "us-1"},
			failures: map[string]string{"api-1": "no node can run api v0 (0 MHz, 0 MiB): of 3 nodes, 3 filtered by constraint node.label.missing regexp .*"},
		},
		{
			name: "attributes",
			nodes: []Node{
				{ID: "d", Ready: true, CPU: 1000, MemoryMB: 1000, Attributes: map[string]string{"node.driver": "docker"}},
				{ID: "p", Ready: true, CPU: 1000, MemoryMB: 1000, Attributes: map[string]string{"node.driver": "process"}},
			},
			asks: []Ask{web(1, Constraint{"node.driver", "=", "process"})},
			want: map[string]string{"web-1": "p"},
		},
		{
			name:  "planned allocations use up resources",
			nodes: []Node{mkNode("small", 150, 1000), mkNode("big", 1000, 250)},
			asks:  []Ask{web(4)},
			// small is fuller after web-1 (9.9 vs 8.1), web-2 spreads to big,
			// web-3 no longer fits small's CPU, web-4 fits nowhere.
			want: map[string]string{"web-1": "small", "web-2": "big", "web-3": "big"},
			failures: map[string]string{
				"web-4": "no node can run web v2 (100 MHz, 100 MiB): of 2 nodes, 1 exhausted cpu, 1 exhausted memory",
			},
		},
		{
			name:  "the reason of the issue's example",
			nodes: []Node{mkNode("a1", 1000, 1000, "zone=b"), mkNode("a2", 1000, 1000, "zone=b"), mkNode("a3", 1000, 1000, "zone=b"), mkNode("c1", 1000, 50, "zone=c"), mkNode("c2", 1000, 80, "zone=c")},
			asks:  []Ask{web(2, Constraint{"node.label.zone", "!=", "b"})},
			failures: map[string]string{
				"web-1": "no node can run web v2 (100 MHz, 100 MiB): of 5 nodes, 3 filtered by constraint node.label.zone != b, 2 exhausted memory",
				"web-2": "no node can run web v2 (100 MHz, 100 MiB): of 5 nodes, 3 filtered by constraint node.label.zone != b, 2 exhausted memory",
			},
		},
		{
			name:   "host port clash",
			nodes:  []Node{mkNode("a", 1000, 1000), mkNode("b", 1000, 1000)},
			allocs: []Allocation{{ID: "lb-1", Service: "lb", NodeID: "a", HostPorts: []int{80}}},
			asks:   []Ask{{Service: "edge", Release: 1, IDs: ids("edge", 2), HostPorts: []int{80}}},
			want:   map[string]string{"edge-1": "b"},
			failures: map[string]string{
				"edge-2": "no node can run edge v1 (0 MHz, 0 MiB): of 2 nodes, 2 host port in use",
			},
		},
		{
			name:     "empty cluster",
			asks:     []Ask{web(1)},
			failures: map[string]string{"web-1": "no node can run web v2 (100 MHz, 100 MiB): the cluster has no nodes"},
		},
		{
			name:   "allocations on unknown nodes are ignored",
			nodes:  []Node{mkNode("a", 100, 100)},
			allocs: []Allocation{{ID: "x", Service: "web", NodeID: "gone", CPU: 100, MemoryMB: 100}},
			asks:   []Ask{web(1)},
			want:   map[string]string{"web-1": "a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Place(Snapshot{NodeList: tc.nodes, AllocList: tc.allocs}, tc.asks, 1)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, where(plan), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("placements (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.failures, failed(plan), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("failures (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlaceReportsMetricsAndScores(t *testing.T) {
	st := Snapshot{NodeList: []Node{mkNode("a", 1000, 1000, "zone=b"), mkNode("c", 1000, 50, "zone=c")}}
	plan, err := Place(st, []Ask{{Service: "web", Release: 3, IDs: []string{"w1"}, CPU: 500, MemoryMB: 100, Constraints: []Constraint{{"node.label.zone", "!=", "b"}}}}, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := []Failure{{
		AllocID: "w1", Service: "web", Release: 3,
		Reason:  "no node can run web v3 (500 MHz, 100 MiB): of 2 nodes, 1 filtered by constraint node.label.zone != b, 1 exhausted memory",
		Metrics: Metrics{NodesEvaluated: 2, Constraint: map[string]int{"node.label.zone != b": 1}, ExhaustedMemory: 1},
	}}
	if diff := cmp.Diff(want, plan.Failures); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
	// A half-full node scores 20 - 2*10^0.5 ≈ 13.68 in Nomad's scale.
	plan, err = Place(Snapshot{NodeList: []Node{mkNode("a", 1000, 1000)}}, []Ask{{Service: "web", IDs: []string{"w1"}, CPU: 500, MemoryMB: 500}}, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Placements[0].Score; got < 13.67 || got > 13.69 {
		t.Errorf("score %v, want about 13.68", got)
	}
}

func TestPlaceIsDeterministic(t *testing.T) {
	var nodes []Node
	for i := range 30 {
		nodes = append(nodes, mkNode(fmt.Sprintf("n%02d", i), 2000, 2000, "zone="+string(rune('a'+i%3))))
	}
	asks := []Ask{
		{Service: "web", Release: 1, IDs: ids("web", 40), CPU: 100, MemoryMB: 100},
		{Service: "api", Release: 1, IDs: ids("api", 20), CPU: 300, MemoryMB: 50, Constraints: []Constraint{{"node.label.zone", "!=", "a"}}},
	}
	first, err := Place(Snapshot{NodeList: nodes}, asks, 42)
	if err != nil {
		t.Fatal(err)
	}
	// The same state in another order with the same seed gives the same plan.
	shuffled := append([]Node(nil), nodes...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	again, err := Place(Snapshot{NodeList: shuffled}, asks, 42)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Fatalf("same state and seed, different plan (-first +again):\n%s", diff)
	}
	// Another seed only breaks ties differently: the spread is the same
	// (every node gets web instances before any gets a third).
	other, err := Place(Snapshot{NodeList: nodes}, asks, 43)
	if err != nil {
		t.Fatal(err)
	}
	if cmp.Equal(where(first), where(other)) {
		t.Errorf("seeds 42 and 43 chose identical nodes for 60 ties; the seed is not used")
	}
	for _, p := range []Plan{first, other} {
		per := map[string]int{}
		for _, pl := range p.Placements {
			if pl.Service == "web" {
				per[pl.NodeID]++
			}
		}
		for n, c := range per {
			if c < 1 || c > 2 {
				t.Errorf("node %s got %d web instances, want 1-2 (40 over 30 nodes)", n, c)
			}
		}
		if len(per) != 30 || len(p.Failures) != 0 {
			t.Errorf("web spread over %d nodes with %d failures, want 30 and 0", len(per), len(p.Failures))
		}
	}
}

func TestPlaceRejectsInvalidAsks(t *testing.T) {
	for _, tc := range []struct {
		field string
		ask   Ask
	}{
		{"asks[0].service", Ask{IDs: []string{"a"}}},
		{"asks[0].cpu", Ask{Service: "s", CPU: -1}},
		{"asks[0].memory_mb", Ask{Service: "s", MemoryMB: -1}},
		{"asks[0].ids[1]", Ask{Service: "s", IDs: []string{"a", ""}}},
		{"asks[0].ids[1]", Ask{Service: "s", IDs: []string{"a", "a"}}},
		{"asks[0].host_ports[0]", Ask{Service: "s", HostPorts: []int{70000}}},
		{"asks[0].constraints[0].operator", Ask{Service: "s", Constraints: []Constraint{{"node.id", "~", "x"}}}},
		{"asks[0].constraints[0].value", Ask{Service: "s", Constraints: []Constraint{{"node.id", "regexp", "("}}}},
		{"asks[0].constraints[0].attribute", Ask{Service: "s", Constraints: []Constraint{{"", "=", "x"}}}},
	} {
		plan, err := Place(Snapshot{NodeList: []Node{mkNode("a", 1, 1)}}, []Ask{tc.ask}, 0)
		if !errors.Is(err, ErrInvalidAsk) || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: got %v, want ErrInvalidAsk naming the field", tc.field, err)
		}
		if len(plan.Placements)+len(plan.Failures) != 0 {
			t.Errorf("%s: partial plan %+v returned with the error", tc.field, plan)
		}
	}
}
