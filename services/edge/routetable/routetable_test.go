package routetable

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func inst(svc, id string, rel uint64) Instance {
	return Instance{ID: id, Service: svc, Address: "127.0.0.1:" + id, Release: rel, Track: "stable", Allocation: "a-" + id}
}

func TestHostlessIntentIsNotRoutedNorAProblem(t *testing.T) {
	if _, err := ParseIntent("worker", []byte(`{"weights":{"1":100}}`)); !errors.Is(err, ErrNotRouted) {
		t.Fatalf("ParseIntent without host: %v, want ErrNotRouted", err)
	}
	tbl, problems := Build(Table{}, Input{Intents: map[string][]byte{"worker": []byte(`{"weights":{"1":100}}`)}})
	if len(tbl.Routes) != 0 || len(problems) != 0 {
		t.Fatalf("Build of a host-less intent: routes %v, problems %v; want neither", tbl.Routes, problems)
	}
}

func TestParseIntentRejects(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"malformed", `{"host":`, "json"},
		{"regex host", `{"host":"~(","weights":{"1":100}}`, "not a DNS name"},
		{"host with port", `{"host":"a.b:80","weights":{"1":100}}`, "not a DNS name"},
		{"sum", `{"host":"a","weights":{"1":90,"2":20}}`, "sum to 110"},
		{"no weights", `{"host":"a"}`, "weights: required"},
		{"bad release", `{"host":"a","weights":{"x":100}}`, `weights["x"]`},
		{"negative", `{"host":"a","weights":{"1":-5,"2":105}}`, "not within 0-100"},
		{"pin both", `{"host":"a","weights":{"1":100},"pins":[{"header":"X","cookie":"c","release":1}]}`, "exclusive"},
		{"pin no release", `{"host":"a","weights":{"1":100},"pins":[{"header":"X"}]}`, "release required"},
		{"bad path", `{"host":"a","path":"x","weights":{"1":100}}`, "path"},
		{"service mismatch", `{"service":"other","host":"a","weights":{"1":100}}`, "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseIntent("web", []byte(tc.json))
			if !errors.Is(err, ErrInvalidIntent) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidIntent mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseIntentAccepts(t *testing.T) {
	got, err := ParseIntent("web", []byte(`{"service":"web","generation":"7","host":"Web.Local","weights":{"1":90,"2":10},"pins":[{"header":"x-canary","value":"yes","release":"2"},{"cookie":"beta","release":"1"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Intent{Service: "web", Generation: 7, Host: "web.local", Path: "/", Weights: map[uint64]int{1: 90, 2: 10},
		Pins: []Pin{{Kind: PinHeader, Name: "X-Canary", Value: "yes", Release: 2}, {Kind: PinCookie, Name: "beta", Release: 1}}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("intent (-want +got):\n%s", d)
	}
}

func TestBuildRoutesAndSafetyFloors(t *testing.T) {
	in := Input{
		Instances: map[string][]Instance{
			"web": {inst("web", "w2", 2), inst("web", "w1", 1), inst("web", "w0", 1)},
			"api": {inst("api", "a1", 1)},
		},
		Intents: map[string][]byte{
			"web": []byte(`{"generation":1,"host":"web.local","weights":{"1":90,"2":10}}`),
			"api": []byte(`{"generation":1,"host":"api.local","path":"/v1","weights":{"1":100}}`),
		},
	}
	t1, probs := Build(Table{}, in)
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	wantWeb := Route{Service: "web", Host: "web.local", Path: "/", Generation: 1, Backends: []Backend{
		{Release: 1, Track: "stable", Weight: 90, Upstreams: []Upstream{{"w0", "127.0.0.1:w0", "a-w0"}, {"w1", "127.0.0.1:w1", "a-w1"}}},
		{Release: 2, Track: "stable", Weight: 10, Upstreams: []Upstream{{"w2", "127.0.0.1:w2", "a-w2"}}},
	}}
	if d := cmp.Diff(wantWeb, t1.Routes["web"]); d != "" {
		t.Fatalf("web route (-want +got):\n%s", d)
	}

	// web's intent now names release 3 with no instance; api's intent is
	// malformed: both keep their last good routes, independently.
	in.Intents["web"] = []byte(`{"generation":2,"host":"web.local","weights":{"3":100}}`)
	in.Intents["api"] = []byte(`{"generation":2,"host":`)
	in.Intents["new"] = []byte(`{"generation":1,"host":"new.local","weights":{"1":100}}`)
	in.Instances["new"] = []Instance{inst("new", "n1", 1)}
	t2, probs := Build(t1, in)
	kinds := map[string]string{}
	for _, p := range probs {
		kinds[p.Service] = p.Kind
	}
	if d := cmp.Diff(map[string]string{"web": ProblemNoInstances, "api": ProblemInvalidIntent}, kinds); d != "" {
		t.Fatalf("problems (-want +got):\n%s", d)
	}
	if g := t2.Routes["web"].Generation; g != 1 || t2.Routes["web"].Degraded == "" {
		t.Fatalf("web kept generation %d degraded %q; want 1 with a reason", g, t2.Routes["web"].Degraded)
	}
	if g := t2.Routes["api"].Generation; g != 1 || !strings.Contains(t2.Routes["api"].Degraded, "json") {
		t.Fatalf("api kept generation %d degraded %q", g, t2.Routes["api"].Degraded)
	}
	if _, ok := t2.Routes["new"]; !ok {
		t.Fatal("healthy service 'new' not routed while others are broken")
	}
}

// A Consul restart without its data loses the intent keys: each service
// keeps its last good route (degraded, reported as missing_intent) until
// the coordinator writes its intent again, and then follows it.
func TestBuildKeepsRouteWhenIntentKeyMissing(t *testing.T) {
	in := Input{
		Instances: map[string][]Instance{"web": {inst("web", "w1", 1)}, "api": {inst("api", "a1", 1)}},
		Intents: map[string][]byte{
			"web": []byte(`{"generation":4,"host":"web.local","weights":{"1":100}}`),
			"api": []byte(`{"generation":2,"host":"api.local","weights":{"1":100}}`),
		},
	}
	t1, probs := Build(Table{}, in)
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	// Both keys gone, and the instances too for a moment (Consul restarted).
	t2, probs := Build(t1, Input{})
	if len(probs) != 2 || probs[0].Kind != ProblemMissingIntent || probs[1].Kind != ProblemMissingIntent {
		t.Fatalf("problems %v, want missing_intent for both", probs)
	}
	for _, svc := range []string{"api", "web"} {
		r, ok := t2.Routes[svc]
		if !ok {
			t.Fatalf("%s lost its route with its intent key", svc)
		}
		want := t1.Routes[svc]
		want.Degraded = r.Degraded
		if !strings.Contains(r.Degraded, "missing") || !Equal(r, want) {
			t.Errorf("%s = %+v, want the last good route, degraded", svc, r)
		}
	}
	// Kept again and again, not only once.
	t3, _ := Build(t2, Input{Instances: in.Instances})
	if len(t3.Routes) != 2 {
		t.Fatalf("second build without intents: %v", t3.Routes)
	}
	// The coordinator writes web's intent again: web follows it, api still
	// waits for its own.
	t4, probs := Build(t3, Input{Instances: in.Instances, Intents: map[string][]byte{"web": in.Intents["web"]}})
	if d := cmp.Diff(t1.Routes["web"], t4.Routes["web"]); d != "" {
		t.Errorf("web after its intent returned (-want +got):\n%s", d)
	}
	if len(probs) != 1 || probs[0].Service != "api" || t4.Routes["api"].Generation != 2 {
		t.Errorf("api: problems %v route %+v", probs, t4.Routes["api"])
	}
}

func TestBuildNoPreviousRouteMeansNone(t *testing.T) {
	in := Input{Intents: map[string][]byte{"web": []byte(`{"host":"w","weights":{"1":100}}`)}}
	tb, probs := Build(Table{}, in)
	if len(tb.Routes) != 0 || len(probs) != 1 || probs[0].Kind != ProblemNoInstances {
		t.Fatalf("routes %v problems %v", tb.Routes, probs)
	}
}

func TestBuildDuplicateHost(t *testing.T) {
	in := Input{
		Instances: map[string][]Instance{"a": {inst("a", "a1", 1)}, "b": {inst("b", "b1", 1)}},
		Intents: map[string][]byte{
			"b": []byte(`{"generation":1,"host":"x.local","weights":{"1":100}}`),
		},
	}
	t1, _ := Build(Table{}, in)
	in.Intents["a"] = []byte(`{"generation":1,"host":"x.local","weights":{"1":100}}`)
	t2, probs := Build(t1, in)
	if len(probs) != 1 || probs[0].Service != "a" || probs[0].Kind != ProblemDuplicateHost {
		t.Fatalf("problems = %v, want duplicate_host for a (b held the host first)", probs)
	}
	if _, ok := t2.Routes["a"]; ok {
		t.Fatal("a routed despite duplicate host")
	}
	if t2.Routes["b"].Host != "x.local" {
		t.Fatal("b lost its route")
	}
}

func TestPinnedReleaseWithoutWeightIsRouted(t *testing.T) {
	in := Input{
		Instances: map[string][]Instance{"web": {inst("web", "w1", 1), inst("web", "w2", 2)}},
		Intents:   map[string][]byte{"web": []byte(`{"host":"w","weights":{"1":100},"pins":[{"header":"X-Preview","release":2}]}`)},
	}
	tb, probs := Build(Table{}, in)
	if len(probs) != 0 {
		t.Fatal(probs)
	}
	bs := tb.Routes["web"].Backends
	if len(bs) != 2 || bs[1].Release != 2 || bs[1].Weight != 0 {
		t.Fatalf("backends = %+v, want release 2 at weight 0", bs)
	}
}

func TestCompareDeterministic(t *testing.T) {
	in := Input{
		Instances: map[string][]Instance{"a": {inst("a", "a1", 1)}, "b": {inst("b", "b1", 1)}, "c": {inst("c", "c1", 1)}},
		Intents: map[string][]byte{
			"a": []byte(`{"generation":1,"host":"a","weights":{"1":100}}`),
			"b": []byte(`{"generation":1,"host":"b","weights":{"1":100}}`),
			"c": []byte(`{"generation":1,"host":"c","weights":{"1":100}}`),
		},
	}
	t1, _ := Build(Table{}, in)
	if d := Compare(t1, t1); !d.Empty() {
		t.Fatalf("self diff not empty: %+v", d)
	}
	delete(in.Intents, "a")
	in.Instances["c"] = append(in.Instances["c"], inst("c", "c2", 1))
	in.Intents["d"] = []byte(`{"generation":1,"host":"d","weights":{"1":100}}`)
	in.Instances["d"] = []Instance{inst("d", "d1", 1)}
	for i := 0; i < 20; i++ {
		t2, _ := Build(t1, in)
		d := Compare(t1, t2)
		var up []string
		for _, r := range d.Upserted {
			up = append(up, r.Service)
		}
		// a lost its intent key: it keeps its route, now degraded.
		if diff := cmp.Diff([]string{"a", "c", "d"}, up); diff != "" {
			t.Fatalf("upserted (-want +got):\n%s", diff)
		}
		if len(d.Removed) != 0 {
			t.Fatalf("removed %v, want none", d.Removed)
		}
		if ids := d.Upserted[1].InstanceIDs(); !cmp.Equal(ids, []string{"c1", "c2"}) {
			t.Fatalf("c ids = %v", ids)
		}
	}
}

func FuzzParseIntent(f *testing.F) {
	for _, s := range []string{
		`{"generation":1,"host":"web.local","weights":{"1":90,"2":10}}`,
		`{"host":"a","path":"/x","weights":{"1":100},"pins":[{"cookie":"c","value":"v","release":"1"}]}`,
		`{"host":`, `{}`, `{"weights":{"-1":100}}`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := ParseIntent("web", data)
		if err != nil {
			if !errors.Is(err, ErrInvalidIntent) && !errors.Is(err, ErrNotRouted) {
				t.Fatalf("error wrapping neither ErrInvalidIntent nor ErrNotRouted: %v", err)
			}
			return
		}
		sum := 0
		for rel, w := range in.Weights {
			if rel == 0 || w < 0 {
				t.Fatalf("accepted bad weight %d=%d", rel, w)
			}
			sum += w
		}
		if sum != 100 || in.Host == "" || !strings.HasPrefix(in.Path, "/") {
			t.Fatalf("accepted invalid intent %+v", in)
		}
		// Building a table from any accepted intent never panics.
		Build(Table{}, Input{Intents: map[string][]byte{"web": data}, Instances: map[string][]Instance{"web": {inst("web", "w", 1)}}})
	})
}

func TestStickyBuckets(t *testing.T) {
	r := Route{Backends: []Backend{{Release: 1, Weight: 90}, {Release: 2, Weight: 10}}}
	count := map[int]int{}
	for b := 0; b < Buckets; b++ {
		count[r.Bucket(b)]++
	}
	if count[0] != 90 || count[1] != 10 || r.Bucket(89) != 0 || r.Bucket(90) != 1 {
		t.Fatalf("buckets at 90/10: %v, 89->%d, 90->%d", count, r.Bucket(89), r.Bucket(90))
	}
	// The canary grows to 50%: clients only move from stable to canary.
	grown := Route{Backends: []Backend{{Release: 1, Weight: 50}, {Release: 2, Weight: 50}}}
	for b := 0; b < Buckets; b++ {
		if r.Bucket(b) == 1 && grown.Bucket(b) != 1 {
			t.Fatalf("bucket %d left the canary when it grew", b)
		}
	}
	// A zero weight takes no bucket; no weight at all: -1.
	z := Route{Backends: []Backend{{Release: 1, Weight: 0}, {Release: 2, Weight: 100}}}
	if z.Bucket(0) != 1 || (Route{}).Bucket(3) != -1 {
		t.Fatalf("zero weights: %d, %d", z.Bucket(0), (Route{}).Bucket(3))
	}
}

func TestStickyIntent(t *testing.T) {
	in, err := ParseIntent("web", []byte(`{"host":"web.test","weights":{"1":100},"sticky":{"cookie":"slipway-web","maxAgeSeconds":"60"}}`))
	if err != nil || in.Sticky == nil || *in.Sticky != (Sticky{Cookie: "slipway-web", MaxAge: 60}) {
		t.Fatalf("ParseIntent sticky = %+v, %v", in.Sticky, err)
	}
	if _, err := ParseIntent("web", []byte(`{"host":"web.test","weights":{"1":100},"sticky":{"cookie":"a b"}}`)); !errors.Is(err, ErrInvalidIntent) || !strings.Contains(err.Error(), "sticky.cookie") {
		t.Fatalf("bad sticky cookie: %v", err)
	}
	a := Route{Service: "web", Sticky: &Sticky{Cookie: "c"}}
	b := a
	b.Sticky = &Sticky{Cookie: "c", MaxAge: 5}
	if Equal(a, b) || !Equal(a, a) {
		t.Fatal("Equal ignores Sticky")
	}
}

// A fenced node's instances are not routed (the coordinator lost the node
// and replaced them), unless a weighted release would be left without an
// instance: then they stay, since the route could only keep its last good
// state, fenced instances included.
func TestBuildLeavesOutFencedNodes(t *testing.T) {
	on := func(i Instance, node string) Instance { i.Node = node; return i }
	in := Input{
		Instances: map[string][]Instance{"web": {on(inst("web", "w1", 1), "n1"), on(inst("web", "w2", 1), "n2"), on(inst("web", "w3", 2), "n1"), inst("web", "w4", 1)}},
		Intents:   map[string][]byte{"web": []byte(`{"generation":1,"host":"web.local","weights":{"1":100}}`)},
		Fenced:    map[string]bool{"n1": true},
	}
	t1, probs := Build(Table{}, in)
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	if got := t1.Routes["web"].InstanceIDs(); !cmp.Equal(got, []string{"w2", "w4"}) {
		t.Fatalf("routed %v, want w2 w4 (w1 is on fenced n1; w4's node is unknown)", got)
	}
	in.Intents["web"] = []byte(`{"generation":2,"host":"web.local","weights":{"1":50,"2":50}}`)
	t2, probs := Build(t1, in)
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	if got := t2.Routes["web"].InstanceIDs(); !cmp.Equal(got, []string{"w1", "w2", "w3", "w4"}) {
		t.Fatalf("routed %v, want every instance: release 2's only one is on the fenced node", got)
	}
	in.Fenced = nil
	in.Intents["web"] = []byte(`{"generation":3,"host":"web.local","weights":{"1":100}}`)
	t3, _ := Build(t2, in)
	if got := t3.Routes["web"].InstanceIDs(); !cmp.Equal(got, []string{"w1", "w2", "w4"}) {
		t.Fatalf("routed %v after the fence is lifted, want w1 w2 w4", got)
	}
}
