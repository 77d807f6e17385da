// Package routetable turns Consul's passing instances and the coordinator's
// traffic intents into routes: pure, deterministic, with safety floors.
package routetable

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/platform/specrules"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// ErrInvalidIntent is wrapped by every intent rejection.
var ErrInvalidIntent = errors.New("routetable: invalid intent")

// ErrNotRouted is returned for an intent without a host: the service has
// no route (its spec has none), which is not a problem to report.
var ErrNotRouted = errors.New("routetable: service has no route")

// Instance is one passing instance of a managed service.
type Instance struct {
	// ID is the Consul service id.
	ID string
	// Service is the service name.
	Service string
	// Address is host:port.
	Address string
	// Release is the release number.
	Release uint64
	// Track is the rollout track.
	Track string
	// Allocation is the Slipway allocation id.
	Allocation string
	// Node is the Slipway node that runs it (empty when unknown).
	Node string
}

// PinKind says what a pin matches on.
type PinKind int

// Pin kinds.
const (
	PinHeader PinKind = iota + 1
	PinCookie
)

// Pin forces requests carrying a header or cookie to one release.
type Pin struct {
	Kind PinKind
	// Name is the header (canonical form) or cookie name.
	Name string
	// Value is the value to match; empty matches any value.
	Value   string
	Release uint64
}

// Sticky keeps each client on one release: a client without Cookie gets
// a random bucket 0-99 in it, and bucket b goes to the release that
// Bucket maps it to.
type Sticky struct {
	// Cookie is the cookie's name.
	Cookie string
	// MaxAge is the cookie's Max-Age in seconds; 0: a session cookie.
	MaxAge int64
}

// Buckets is the number of sticky buckets: one per weight percent.
const Buckets = 100

// Intent is a validated traffic intent.
type Intent struct {
	Service    string
	Generation uint64
	Host       string
	Path       string
	// Weights maps release to percentage; they sum to 100.
	Weights map[uint64]int
	Pins    []Pin
	// Sticky is set when clients stay on one release.
	Sticky *Sticky
}

// Upstream is one instance a route sends traffic to.
type Upstream struct {
	ID         string
	Address    string
	Allocation string
}

// Backend is one release of a route with its weight and instances.
type Backend struct {
	Release   uint64
	Track     string
	Weight    int
	Upstreams []Upstream // sorted by ID
}

// Route is one service's routing.
type Route struct {
	Service    string
	Host       string
	Path       string
	Generation uint64
	Backends   []Backend // sorted by release
	Pins       []Pin
	// Sticky is set when clients stay on one release (see Bucket).
	Sticky *Sticky
	// Degraded says why the route keeps its last good state, if it does.
	Degraded string
}

// Bucket is the backend sticky bucket b (0-99) goes to: backends in
// release order each take as many buckets as their weight, so bucket b
// maps to the one whose cumulative weight first exceeds b, and a growing
// newest release takes buckets only from the ones before it. It returns
// -1 when no backend has weight.
func (r Route) Bucket(b int) int {
	return BucketOf(len(r.Backends), func(i int) int { return r.Backends[i].Weight }, b)
}

// BucketOf is Bucket over n weights given by weight(i), in order.
func BucketOf(n int, weight func(int) int, b int) int {
	sum, last := 0, -1
	for i := 0; i < n; i++ {
		w := weight(i)
		if w <= 0 {
			continue
		}
		sum += w
		last = i
		if b < sum {
			return i
		}
	}
	return last
}

// Table is a set of routes keyed by service.
type Table struct {
	Routes map[string]Route
}

// Problem is a reason a service's new routes were not taken.
type Problem struct {
	Service string
	// Kind is "invalid_intent", "missing_intent", "no_instances" or
	// "duplicate_host", used as a metric label.
	Kind   string
	Reason string
}

// Problem kinds.
const (
	ProblemInvalidIntent = "invalid_intent"
	ProblemMissingIntent = "missing_intent"
	ProblemNoInstances   = "no_instances"
	ProblemDuplicateHost = "duplicate_host"
)

// ParseIntent decodes and validates the protojson intent of service.
func ParseIntent(service string, data []byte) (Intent, error) {
	var pb edgev1.TrafficIntent
	if err := protojson.Unmarshal(data, &pb); err != nil {
		return Intent{}, fmt.Errorf("%w: %s: json: %w", ErrInvalidIntent, service, err)
	}
	return FromProto(service, &pb)
}

// FromProto validates an intent message for service. Host, path and pin
// rules are package specrules', the same the coordinator checks a spec's
// route and preview header with at Deploy.
func FromProto(service string, pb *edgev1.TrafficIntent) (Intent, error) {
	var vs []string
	if pb.GetService() != "" && pb.GetService() != service {
		vs = append(vs, fmt.Sprintf("service: %q does not match key %q", pb.GetService(), service))
	}
	host := strings.ToLower(strings.TrimSpace(pb.GetHost()))
	if host == "" {
		return Intent{}, fmt.Errorf("%w: %s", ErrNotRouted, service)
	}
	if d := specrules.RouteHost(host); d != "" {
		vs = append(vs, fmt.Sprintf("host: not a DNS name: %s", d))
	}
	path := pb.GetPath()
	if path == "" {
		path = "/"
	}
	if d := specrules.RoutePath(path); d != "" {
		vs = append(vs, "path: "+d)
	}
	weights := map[uint64]int{}
	sum := 0
	keys := make([]string, 0, len(pb.GetWeights()))
	for k := range pb.GetWeights() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w := pb.GetWeights()[k]
		rel, err := strconv.ParseUint(k, 10, 64)
		if err != nil || rel == 0 {
			vs = append(vs, fmt.Sprintf("weights[%q]: release must be a positive decimal number", k))
			continue
		}
		if w < 0 || w > 100 {
			vs = append(vs, fmt.Sprintf("weights[%q]: %d not within 0-100", k, w))
			continue
		}
		if _, dup := weights[rel]; dup {
			vs = append(vs, fmt.Sprintf("weights[%q]: release listed twice", k))
			continue
		}
		weights[rel] = int(w)
		sum += int(w)
	}
	if len(weights) > 0 && sum != 100 {
		vs = append(vs, fmt.Sprintf("weights: sum to %d, want 100", sum))
	}
	if len(pb.GetWeights()) == 0 {
		vs = append(vs, "weights: required")
	}
	var pins []Pin
	for i, p := range pb.GetPins() {
		var pin Pin
		switch {
		case p.GetHeader() != "" && p.GetCookie() != "":
			vs = append(vs, fmt.Sprintf("pins[%d]: header and cookie are exclusive", i))
			continue
		case p.GetHeader() != "":
			pin = Pin{Kind: PinHeader, Name: canonicalHeader(p.GetHeader())}
		case p.GetCookie() != "":
			pin = Pin{Kind: PinCookie, Name: p.GetCookie()}
		default:
			vs = append(vs, fmt.Sprintf("pins[%d]: header or cookie required", i))
			continue
		}
		if d := specrules.HeaderName(pin.Name); d != "" {
			vs = append(vs, fmt.Sprintf("pins[%d]: name %q is not a valid token: %s", i, pin.Name, d))
			continue
		}
		if d := specrules.HeaderValue(p.GetValue()); d != "" {
			vs = append(vs, fmt.Sprintf("pins[%d]: value %s", i, d))
			continue
		}
		if p.GetRelease() == 0 {
			vs = append(vs, fmt.Sprintf("pins[%d]: release required", i))
			continue
		}
		pin.Value = p.GetValue()
		pin.Release = p.GetRelease()
		pins = append(pins, pin)
	}
	var sticky *Sticky
	if st := pb.GetSticky(); st != nil {
		switch {
		case specrules.HeaderName(st.GetCookie()) != "":
			vs = append(vs, fmt.Sprintf("sticky.cookie: %s", specrules.HeaderName(st.GetCookie())))
		case st.GetMaxAgeSeconds() < 0:
			vs = append(vs, fmt.Sprintf("sticky.max_age_seconds: %d is negative", st.GetMaxAgeSeconds()))
		default:
			sticky = &Sticky{Cookie: st.GetCookie(), MaxAge: st.GetMaxAgeSeconds()}
		}
	}
	if len(vs) > 0 {
		return Intent{}, fmt.Errorf("%w: %s: %s", ErrInvalidIntent, service, strings.Join(vs, "; "))
	}
	return Intent{Service: service, Generation: pb.GetGeneration(), Host: host, Path: path, Weights: weights, Pins: pins, Sticky: sticky}, nil
}

func canonicalHeader(s string) string {
	b := []byte(strings.ToLower(s))
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		up = c == '-'
	}
	return string(b)
}

// Input is everything Build needs for one service set.
type Input struct {
	// Instances maps service to its passing instances.
	Instances map[string][]Instance
	// Intents maps service to its raw intent JSON.
	Intents map[string][]byte
	// Fenced are the nodes the coordinators' leader fenced: it lost them
	// and replaced their allocations elsewhere, while they may still be
	// registered and passing (cut off from the coordinators only). Their
	// instances are not routed, unless a release with weight or a pin has
	// no other instance (dropping them would only keep the last good
	// route, fenced instances included).
	Fenced map[string]bool
}

// Build computes the new table from in, keeping prev's route for any
// service whose new routes are unsafe. A service without an intent has no
// route, unless it had one: the coordinator never deletes an intent, so a
// missing one (Consul restarted without its data, or lost it) keeps the last
// good route, like an invalid one, until the coordinator writes it again.
// Build is deterministic and does no I/O.
func Build(prev Table, in Input) (Table, []Problem) {
	next := Table{Routes: map[string]Route{}}
	var problems []Problem
	services := make([]string, 0, len(in.Intents)+len(prev.Routes))
	for s := range in.Intents {
		services = append(services, s)
	}
	for s := range prev.Routes {
		if _, ok := in.Intents[s]; !ok {
			services = append(services, s)
		}
	}
	slices.Sort(services)
	keep := func(svc, kind, reason string) {
		problems = append(problems, Problem{Service: svc, Kind: kind, Reason: reason})
		if old, ok := prev.Routes[svc]; ok {
			old.Degraded = reason
			next.Routes[svc] = old
		}
	}
	for _, svc := range services {
		raw, ok := in.Intents[svc]
		if !ok {
			keep(svc, ProblemMissingIntent, fmt.Sprintf("intent key of %s is missing; keeping generation %d until the coordinator writes it again", svc, prev.Routes[svc].Generation))
			continue
		}
		intent, err := ParseIntent(svc, raw)
		if errors.Is(err, ErrNotRouted) {
			continue // a service without a route host: nothing to route
		}
		if err != nil {
			keep(svc, ProblemInvalidIntent, err.Error())
			continue
		}
		r, reason := route(intent, unfenced(in.Instances[svc], in.Fenced))
		if reason != "" {
			r, reason = route(intent, in.Instances[svc])
		}
		if reason != "" {
			keep(svc, ProblemNoInstances, reason)
			continue
		}
		next.Routes[svc] = r
	}
	// Duplicate host+path: the service that held it before keeps it; among
	// newcomers the smallest service name wins. The loser keeps its old route
	// if that does not conflict, else it has none.
	owner := map[string]string{}
	claim := func(r Route) string { return r.Host + r.Path }
	for _, svc := range services {
		r, ok := next.Routes[svc]
		if !ok {
			continue
		}
		if old, ok := prev.Routes[svc]; ok && claim(old) == claim(r) {
			owner[claim(r)] = svc
		}
	}
	for _, svc := range services {
		r, ok := next.Routes[svc]
		if !ok {
			continue
		}
		if o, taken := owner[claim(r)]; taken && o != svc {
			reason := fmt.Sprintf("duplicate host: %s%s already routed to service %s", r.Host, r.Path, o)
			problems = append(problems, Problem{Service: svc, Kind: ProblemDuplicateHost, Reason: reason})
			delete(next.Routes, svc)
			if old, ok := prev.Routes[svc]; ok {
				if o2, taken := owner[claim(old)]; !taken || o2 == svc {
					old.Degraded = reason
					next.Routes[svc] = old
					owner[claim(old)] = svc
				}
			}
			continue
		}
		owner[claim(r)] = svc
	}
	return next, problems
}

// unfenced are the instances not on a fenced node.
func unfenced(instances []Instance, fenced map[string]bool) []Instance {
	if len(fenced) == 0 {
		return instances
	}
	out := make([]Instance, 0, len(instances))
	for _, inst := range instances {
		if inst.Node == "" || !fenced[inst.Node] {
			out = append(out, inst)
		}
	}
	return out
}

func route(in Intent, instances []Instance) (Route, string) {
	r := Route{Service: in.Service, Host: in.Host, Path: in.Path, Generation: in.Generation, Pins: in.Pins, Sticky: in.Sticky}
	byRelease := map[uint64][]Instance{}
	for _, inst := range instances {
		byRelease[inst.Release] = append(byRelease[inst.Release], inst)
	}
	releases := make([]uint64, 0, len(in.Weights))
	for rel := range in.Weights {
		releases = append(releases, rel)
	}
	for _, p := range in.Pins {
		if _, ok := in.Weights[p.Release]; !ok && !slices.Contains(releases, p.Release) {
			releases = append(releases, p.Release)
		}
	}
	slices.Sort(releases)
	for _, rel := range releases {
		insts := byRelease[rel]
		if len(insts) == 0 {
			if in.Weights[rel] > 0 {
				return Route{}, fmt.Sprintf("intent generation %d gives release %d weight %d but it has no passing instance", in.Generation, rel, in.Weights[rel])
			}
			if !slices.ContainsFunc(in.Pins, func(p Pin) bool { return p.Release == rel }) {
				continue
			}
			return Route{}, fmt.Sprintf("intent generation %d pins release %d but it has no passing instance", in.Generation, rel)
		}
		b := Backend{Release: rel, Weight: in.Weights[rel]}
		slices.SortFunc(insts, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
		for _, inst := range insts {
			if b.Track == "" {
				b.Track = inst.Track
			}
			b.Upstreams = append(b.Upstreams, Upstream{ID: inst.ID, Address: inst.Address, Allocation: inst.Allocation})
		}
		r.Backends = append(r.Backends, b)
	}
	return r, ""
}

// InstanceIDs returns the ids of every instance a route may send traffic to,
// sorted.
func (r Route) InstanceIDs() []string {
	var ids []string
	for _, b := range r.Backends {
		for _, u := range b.Upstreams {
			ids = append(ids, u.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// Services returns the table's service names, sorted.
func (t Table) Services() []string {
	out := make([]string, 0, len(t.Routes))
	for s := range t.Routes {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Hosts returns the table's distinct hosts, sorted.
func (t Table) Hosts() []string {
	var out []string
	for _, r := range t.Routes {
		if !slices.Contains(out, r.Host) {
			out = append(out, r.Host)
		}
	}
	slices.Sort(out)
	return out
}

// Diff is the change from one table to another.
type Diff struct {
	// Upserted are routes added or changed, sorted by service.
	Upserted []Route
	// Removed are services whose routes are gone, sorted.
	Removed []string
}

// Empty reports whether the diff changes nothing.
func (d Diff) Empty() bool { return len(d.Upserted) == 0 && len(d.Removed) == 0 }

// Compare returns the diff from a to b.
func Compare(a, b Table) Diff {
	var d Diff
	for _, svc := range b.Services() {
		nr := b.Routes[svc]
		if or, ok := a.Routes[svc]; !ok || !Equal(or, nr) {
			d.Upserted = append(d.Upserted, nr)
		}
	}
	for _, svc := range a.Services() {
		if _, ok := b.Routes[svc]; !ok {
			d.Removed = append(d.Removed, svc)
		}
	}
	return d
}

// Equal reports whether two routes are identical.
func Equal(a, b Route) bool {
	if a.Service != b.Service || a.Host != b.Host || a.Path != b.Path || a.Generation != b.Generation || a.Degraded != b.Degraded {
		return false
	}
	if (a.Sticky == nil) != (b.Sticky == nil) || (a.Sticky != nil && *a.Sticky != *b.Sticky) {
		return false
	}
	if !slices.Equal(a.Pins, b.Pins) || len(a.Backends) != len(b.Backends) {
		return false
	}
	for i := range a.Backends {
		x, y := a.Backends[i], b.Backends[i]
		if x.Release != y.Release || x.Track != y.Track || x.Weight != y.Weight || !slices.Equal(x.Upstreams, y.Upstreams) {
			return false
		}
	}
	return true
}
