// Package placement chooses nodes for new allocations: feasible nodes
// (ready, not draining, matching constraints, with free CPU, memory and host
// ports) ranked to spread a service's instances across nodes, then to pack
// by resources as Nomad's bin-packing scorer does.
//
// It is pure: it sees the cluster through the read-only State interface and
// returns a Plan; committing it is the caller's job. The result is
// deterministic for a given State and seed: nodes are considered in id order
// shuffled by the seed, and the shuffle only decides between nodes that rank
// equal.
//
// How the leader uses it, in the decide stage of its pass (package engine):
// when the rollout machine decides to place N instances of a release, the
// engine builds a Snapshot from its committed FSM (the live nodes with their
// drain flag, labels, capacity and policy; every stored allocation), names
// the N allocations deterministically, and calls Place with a seed taken
// from the raft index of the decision. The placements are committed with
// the rollout's step; only then are the nodes sent their desired sets.
// Failures carry a Reason for the rollout's events; allocations that failed
// are asked for again on a later pass (e.g. when a node joins). Package
// migrate calls Place the same way for the allocations of lost and drained
// nodes.
package placement

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"

	"slipway.dev/platform/nodepolicy"
)

// ErrInvalidAsk is returned (wrapped, naming the field) for an ask that
// cannot be placed by construction; no plan is returned with it.
var ErrInvalidAsk = errors.New("placement: invalid ask")

// Node is a node as placement sees it.
type Node struct {
	// ID is the node id.
	ID string
	// Ready is false for a node whose agent does not answer.
	Ready bool
	// Draining nodes take no new allocations.
	Draining bool
	// Labels are the node's labels ("node.label.<key>" in constraints).
	Labels map[string]string
	// Attributes are other attributes by full name, e.g. "node.driver".
	Attributes map[string]string
	// CPU is the node's CPU capacity in MHz.
	CPU int
	// MemoryMB is the node's memory capacity in MiB.
	MemoryMB int
	// Policy is what the node's agent allows beyond the hardened container
	// default, and which images it runs.
	Policy nodepolicy.Policy
}

// Attribute returns the value of a constraint attribute for the node:
// "node.id", "node.label.<key>" or any name in Attributes.
func (n Node) Attribute(name string) (string, bool) {
	if name == "node.id" {
		return n.ID, true
	}
	if k, ok := strings.CutPrefix(name, "node.label."); ok {
		v, ok := n.Labels[k]
		return v, ok
	}
	v, ok := n.Attributes[name]
	return v, ok
}

// Allocation is an allocation already running (or committed) on a node.
type Allocation struct {
	// ID is the allocation id.
	ID string
	// Service is the service it belongs to.
	Service string
	// NodeID is the node it runs on.
	NodeID string
	// CPU and MemoryMB are its reservations.
	CPU, MemoryMB int
	// HostPorts are static host ports it holds.
	HostPorts []int
}

// State is the read-only view of the cluster placement works on (Nomad's
// scheduler.State). The order of the slices does not matter.
type State interface {
	// Nodes returns every known node.
	Nodes() []Node
	// Allocations returns every allocation holding resources on a node.
	Allocations() []Allocation
}

// Snapshot is a State held in memory.
type Snapshot struct {
	// NodeList are the nodes.
	NodeList []Node
	// AllocList are the allocations.
	AllocList []Allocation
}

// Nodes implements State.
func (s Snapshot) Nodes() []Node { return s.NodeList }

// Allocations implements State.
func (s Snapshot) Allocations() []Allocation { return s.AllocList }

// Interface guards.
var _ State = Snapshot{}

// Constraint restricts the nodes an allocation may use.
type Constraint struct {
	// Attribute names a node attribute, e.g. "node.label.zone".
	Attribute string
	// Operator is "=", "==", "!=" or "regexp".
	Operator string
	// Value is compared with the attribute.
	Value string
}

func (c Constraint) String() string { return c.Attribute + " " + c.Operator + " " + c.Value }

// Ask requests one allocation per id in IDs for a release of a service.
type Ask struct {
	// Service is the service name; allocations of the same service spread.
	Service string
	// Release is the release number (reported back in the plan).
	Release uint64
	// IDs are the ids of the allocations to place, one per instance.
	IDs []string
	// CPU and MemoryMB are each allocation's reservations.
	CPU, MemoryMB int
	// HostPorts are static host ports each allocation needs.
	HostPorts []int
	// Constraints all have to hold on the chosen node.
	Constraints []Constraint
	// Security is what each allocation asks of the node's policy (image,
	// privileged, capabilities, host mounts); the node must allow all of it.
	Security nodepolicy.Ask
}

// Placement puts one allocation on a node.
type Placement struct {
	// AllocID is the allocation id from the ask.
	AllocID string
	// Service and Release are copied from the ask.
	Service string
	Release uint64
	// NodeID is the chosen node.
	NodeID string
	// Score is the chosen node's bin-packing score (0-18, higher is fuller).
	Score float64
}

// Metrics count why nodes were not chosen for an allocation.
type Metrics struct {
	// NodesEvaluated is the number of nodes considered.
	NodesEvaluated int
	// NotReady and Draining count nodes filtered for their status.
	NotReady, Draining int
	// Constraint counts nodes filtered by each constraint (its String form).
	Constraint map[string]int
	// Policy counts nodes whose agent does not allow the ask's image or
	// security asks.
	Policy int
	// ExhaustedCPU, ExhaustedMemory and PortClash count nodes that passed the
	// filters but had no room.
	ExhaustedCPU, ExhaustedMemory, PortClash int
}

// Failure is an allocation that could not be placed.
type Failure struct {
	// AllocID is the allocation id from the ask.
	AllocID string
	// Service and Release are copied from the ask.
	Service string
	Release uint64
	// Reason explains it for people.
	Reason string
	// Metrics are the counts behind Reason.
	Metrics Metrics
}

// Plan is the result of placing asks.
type Plan struct {
	// Placements are the allocations placed, in ask order.
	Placements []Placement
	// Failures are the allocations that could not be placed, in ask order.
	Failures []Failure
}

// node is a node with its running totals.
type node struct {
	Node
	cpu, mem int
	ports    map[int]bool
}

type compiled struct {
	Constraint
	re *regexp.Regexp
}

// Place places every allocation of asks, in order, each seeing the ones
// placed before it. An invalid ask fails the whole call with an error naming
// the field.
func Place(st State, asks []Ask, seed uint64) (Plan, error) {
	cons, err := validate(asks)
	if err != nil {
		return Plan{}, err
	}
	in := st.Nodes()
	nodes := make([]*node, len(in))
	for i := range in {
		nodes[i] = &node{Node: in[i]}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	rng := rand.New(rand.NewPCG(seed, 0x5d1e_c0de))
	rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n.ID] = i
	}
	// Same-service allocations per node, for spreading.
	perService := map[string][]int{}
	count := func(service string) []int {
		c, ok := perService[service]
		if !ok {
			c = make([]int, len(nodes))
			perService[service] = c
		}
		return c
	}
	// Only the asked services' counts matter: at fleet scale counting
	// every service would make a node-sized slice per service per call.
	asked := make(map[string]bool, len(asks))
	for _, ask := range asks {
		asked[ask.Service] = true
	}
	for _, a := range st.Allocations() {
		i, ok := index[a.NodeID]
		if !ok {
			continue
		}
		n := nodes[i]
		n.cpu += a.CPU
		n.mem += a.MemoryMB
		for _, p := range a.HostPorts {
			if n.ports == nil {
				n.ports = map[int]bool{}
			}
			n.ports[p] = true
		}
		if asked[a.Service] {
			count(a.Service)[i]++
		}
	}

	var plan Plan
	for ai, ask := range asks {
		// Static filters: status and constraints.
		m := Metrics{NodesEvaluated: len(nodes)}
		feasible := make([]int, 0, len(nodes))
	nodes:
		for i, n := range nodes {
			switch {
			case !n.Ready:
				m.NotReady++
				continue
			case n.Draining:
				m.Draining++
				continue
			}
			for _, c := range cons[ai] {
				if !c.holds(n.Node) {
					if m.Constraint == nil {
						m.Constraint = map[string]int{}
					}
					m.Constraint[c.String()]++
					continue nodes
				}
			}
			if len(n.Policy.Check(ask.Security)) > 0 {
				m.Policy++
				continue
			}
			feasible = append(feasible, i)
		}
		svc := count(ask.Service)
		// A node's score for this ask changes only when the ask places on
		// it, so it is computed once and refreshed for the chosen node.
		scores := make([]float64, len(feasible))
		for f := range scores {
			scores[f] = -1
		}
		for k, id := range ask.IDs {
			best, bestF, bestScore := -1, -1, 0.0
			mm := m
			for f, i := range feasible {
				n := nodes[i]
				switch {
				case n.cpu+ask.CPU > n.CPU:
					mm.ExhaustedCPU++
					continue
				case n.mem+ask.MemoryMB > n.MemoryMB:
					mm.ExhaustedMemory++
					continue
				case clash(n.ports, ask.HostPorts):
					mm.PortClash++
					continue
				}
				if best >= 0 && svc[i] > svc[best] {
					continue
				}
				if scores[f] < 0 {
					scores[f] = binPack(n, ask)
				}
				if score := scores[f]; best < 0 || svc[i] < svc[best] || score > bestScore {
					best, bestF, bestScore = i, f, score
				}
			}
			if best < 0 {
				// Resources only shrink within a call: every remaining
				// allocation of this ask fails for the same reason.
				reason := reasonFor(ask, mm)
				for _, rest := range ask.IDs[k:] {
					plan.Failures = append(plan.Failures, Failure{AllocID: rest, Service: ask.Service, Release: ask.Release, Reason: reason, Metrics: mm})
				}
				break
			}
			n := nodes[best]
			n.cpu += ask.CPU
			n.mem += ask.MemoryMB
			for _, p := range ask.HostPorts {
				if n.ports == nil {
					n.ports = map[int]bool{}
				}
				n.ports[p] = true
			}
			svc[best]++
			scores[bestF] = -1
			plan.Placements = append(plan.Placements, Placement{AllocID: id, Service: ask.Service, Release: ask.Release, NodeID: n.ID, Score: bestScore})
		}
	}
	return plan, nil
}

// binPack is Nomad's ScoreFitBinPack: 20 - (10^freeCPU + 10^freeMemory)
// with the allocation added, clamped to 0-18; fuller nodes score higher.
func binPack(n *node, ask Ask) float64 {
	free := func(used, capacity int) float64 {
		if capacity <= 0 {
			return 0
		}
		return 1 - float64(used)/float64(capacity)
	}
	total := math.Pow(10, free(n.cpu+ask.CPU, n.CPU)) + math.Pow(10, free(n.mem+ask.MemoryMB, n.MemoryMB))
	return min(max(20-total, 0), 18)
}

func clash(used map[int]bool, want []int) bool {
	for _, p := range want {
		if used[p] {
			return true
		}
	}
	return false
}

func (c compiled) holds(n Node) bool {
	v, ok := n.Attribute(c.Attribute)
	switch c.Operator {
	case "=", "==":
		return ok && v == c.Value
	case "!=":
		return !ok || v != c.Value
	case "regexp":
		return ok && c.re.MatchString(v)
	}
	return false
}

func reasonFor(ask Ask, m Metrics) string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(m.NotReady, "not ready")
	add(m.Draining, "draining")
	keys := make([]string, 0, len(m.Constraint))
	for k := range m.Constraint {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(m.Constraint[k], "filtered by constraint "+k)
	}
	add(m.Policy, "not allowing the image or security asks (node agent -allow-* flags)")
	add(m.ExhaustedCPU, "exhausted cpu")
	add(m.ExhaustedMemory, "exhausted memory")
	add(m.PortClash, "host port in use")
	what := fmt.Sprintf("%s v%d (%d MHz, %d MiB)", ask.Service, ask.Release, ask.CPU, ask.MemoryMB)
	if m.NodesEvaluated == 0 {
		return "no node can run " + what + ": the cluster has no nodes"
	}
	return fmt.Sprintf("no node can run %s: of %d nodes, %s", what, m.NodesEvaluated, strings.Join(parts, ", "))
}

func validate(asks []Ask) ([][]compiled, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidAsk)
	}
	seen := map[string]string{}
	out := make([][]compiled, len(asks))
	for i, a := range asks {
		f := fmt.Sprintf("asks[%d]", i)
		switch {
		case a.Service == "":
			return nil, bad(f+".service", "must not be empty")
		case a.CPU < 0:
			return nil, bad(f+".cpu", "must not be negative, got %d", a.CPU)
		case a.MemoryMB < 0:
			return nil, bad(f+".memory_mb", "must not be negative, got %d", a.MemoryMB)
		}
		for j, id := range a.IDs {
			if id == "" {
				return nil, bad(fmt.Sprintf("%s.ids[%d]", f, j), "must not be empty")
			}
			if prev, dup := seen[id]; dup {
				return nil, bad(fmt.Sprintf("%s.ids[%d]", f, j), "%q already used by %s", id, prev)
			}
			seen[id] = fmt.Sprintf("%s.ids[%d]", f, j)
		}
		for j, p := range a.HostPorts {
			if p < 1 || p > 65535 {
				return nil, bad(fmt.Sprintf("%s.host_ports[%d]", f, j), "must be 1-65535, got %d", p)
			}
		}
		for j, c := range a.Constraints {
			cf := fmt.Sprintf("%s.constraints[%d]", f, j)
			cc := compiled{Constraint: c}
			switch c.Operator {
			case "=", "==", "!=":
			case "regexp":
				re, err := regexp.Compile(c.Value)
				if err != nil {
					return nil, bad(cf+".value", "invalid regexp %q: %v", c.Value, err)
				}
				cc.re = re
			default:
				return nil, bad(cf+".operator", "must be one of =, ==, !=, regexp; got %q", c.Operator)
			}
			if c.Attribute == "" {
				return nil, bad(cf+".attribute", "must not be empty")
			}
			out[i] = append(out[i], cc)
		}
	}
	return out, nil
}
