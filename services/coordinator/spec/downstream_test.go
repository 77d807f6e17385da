// The tests in this file run the node agent's and the edge's own code on
// what the coordinator records. They import those modules' packages through
// the workspace (go.work), as make test runs them; the coordinator module
// itself does not require them.

package spec_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/engine"
	"slipway.dev/coordinator/rollout"
	"slipway.dev/edge/nginx"
	"slipway.dev/edge/routetable"
	agentapi "slipway.dev/nodeagent/grpcapi"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/spec"
	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// The longest ids an allocation gets: the agent's limit for both.
var (
	nodeID  = strings.Repeat("n", specrules.MaxIdentifierBytes)
	allocID = strings.Repeat("a", specrules.MaxIdentifierBytes)
)

// refusals is what the components downstream of Deploy refuse of a
// recorded spec: the node agent, the edge and the coordinator's own
// rollout machine.
type refusals struct {
	agent, edge, rollout []string
}

func (r refusals) none() bool { return len(r.agent)+len(r.edge)+len(r.rollout) == 0 }

// downstream does with s what happens to a release after Deploy: the
// spec is normalised and recorded; the rollout machine is configured from
// its update strategy; each instance becomes an allocation
// (engine.Template) that the node agent converts and validates
// (grpcapi.SpecFromProto, allocation.Spec.Validate); a routed release
// becomes a traffic intent (engine.Intent, with a canary split and the
// blue/green preview pin) that the edge parses from Consul's JSON
// (routetable.ParseIntent) and whose host it renders into nginx.conf.
func downstream(t testing.TB, s *deployv1.ServiceSpec) refusals {
	t.Helper()
	var r refusals
	n := spec.Normalize(s)
	cfg, err := rollout.ConfigFromSpec(n.GetUpdate())
	if err != nil {
		r.rollout = append(r.rollout, err.Error())
	}
	a := engine.Template(n, 1, rollout.TrackCanary)
	a.Id, a.NodeId = allocID, nodeID
	for _, v := range agentapi.SpecFromProto(a).Validate(nodeID) {
		r.agent = append(r.agent, v.Field+": "+v.Description)
	}
	if host := n.GetRoute().GetHost(); host != "" {
		header := cfg.PreviewHeader
		if header == "" {
			header = n.GetUpdate().GetBlueGreen().GetPreviewHeader()
		}
		in := engine.Intent(n.GetName(), n, rollout.Traffic{Generation: 7, Weights: map[uint64]int{1: 90, 2: 10},
			Pins: []rollout.Pin{{Header: header, Release: 2}}})
		b, err := protojson.Marshal(in)
		if err != nil {
			t.Fatalf("marshal intent: %v", err)
		}
		if _, err := routetable.ParseIntent(n.GetName(), b); err != nil {
			r.edge = append(r.edge, err.Error())
		}
		if _, err := nginx.Render(nginx.ConfigData{Hosts: []string{host}}); err != nil {
			r.edge = append(r.edge, err.Error())
		}
	}
	return r
}

// baseline is a valid routed spec using every part downstream sees.
func baseline() *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{
		Name: "web", Image: "slipway/demo:v2", Count: 3, Port: 8080,
		Env:       map[string]string{"GREETING": "hello"},
		Args:      []string{"--verbose"},
		Resources: &deployv1.Resources{CpuMhz: 200, MemoryMb: 128},
		Check:     &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(2 * time.Second)},
		Route:     &deployv1.Route{Host: "web.example.com", Path: "/api/v1/"},
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN,
			BlueGreen: &deployv1.BlueGreenStrategy{PreviewHeader: "X-Preview"}},
		KillTimeout: durationpb.New(10 * time.Second),
	}
}

// TestDeployRefusesWhatDownstreamRefuses: for every rule the node agent or
// the edge enforces, a value breaking it is refused at Deploy
// (INVALID_ARGUMENT with a violation naming the field), and the table
// proves the rule is real: the agent or the edge (or the rollout machine)
// does refuse that value. Rows with no downstream component are limits
// that only Deploy can enforce (sizes and counts).
func TestDeployRefusesWhatDownstreamRefuses(t *testing.T) {
	if vs := spec.Validate(baseline()); vs != nil {
		t.Fatalf("baseline refused: %v", vs)
	}
	if r := downstream(t, baseline()); !r.none() {
		t.Fatalf("baseline refused downstream: %+v", r)
	}
	str := strings.Repeat
	env := func(n, size int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("V%d", i)] = str("x", size)
		}
		return m
	}
	steps := func(n int) []*deployv1.CanaryStep {
		var out []*deployv1.CanaryStep
		for i := range n {
			out = append(out, &deployv1.CanaryStep{Weight: int32(i + 1)})
		}
		return out
	}
	const agent, edge, machine, limit = "agent", "edge", "rollout", ""
	tests := []struct {
		name   string
		mutate func(s *deployv1.ServiceSpec)
		field  string
		by     string // the component that refuses it downstream, or limit
	}{
		// What the node agent refuses.
		{"env value with NUL", func(s *deployv1.ServiceSpec) { s.Env["A"] = "x\x00y" }, `spec.env["A"]`, agent},
		{"env name with =", func(s *deployv1.ServiceSpec) { s.Env["A=B"] = "x" }, `spec.env["A=B"]`, agent},
		{"env name with NUL", func(s *deployv1.ServiceSpec) { s.Env["A\x00"] = "x" }, `spec.env["A\x00"]`, agent},
		{"env name empty", func(s *deployv1.ServiceSpec) { s.Env[""] = "x" }, `spec.env[""]`, agent},
		{"env name with dash", func(s *deployv1.ServiceSpec) { s.Env["A-B"] = "x" }, `spec.env["A-B"]`, agent},
		{"env name too long", func(s *deployv1.ServiceSpec) { s.Env[str("A", specrules.MaxEnvNameBytes+1)] = "x" }, fmt.Sprintf("spec.env[%q]", str("A", specrules.MaxEnvNameBytes+1)), agent},
		{"env PORT (set by the agent)", func(s *deployv1.ServiceSpec) { s.Env["PORT"] = "80" }, `spec.env["PORT"]`, agent},
		{"env value too long", func(s *deployv1.ServiceSpec) { s.Env["A"] = str("x", specrules.MaxEnvValueBytes+1) }, `spec.env["A"]`, agent},
		{"env of 2.5 MB", func(s *deployv1.ServiceSpec) { s.Env["BLOB"] = str("x", 2_500_000) }, `spec.env["BLOB"]`, agent},
		{"env of 2.5 MB in small values", func(s *deployv1.ServiceSpec) { s.Env = env(2500, 1000) }, "spec.env", agent},
		{"env too many entries", func(s *deployv1.ServiceSpec) { s.Env = env(specrules.MaxEnvEntries+1, 1) }, "spec.env", agent},
		{"env too large in all", func(s *deployv1.ServiceSpec) { s.Env = env(3, specrules.MaxEnvValueBytes) }, "spec.env", agent},
		{"arg with NUL", func(s *deployv1.ServiceSpec) { s.Args = []string{"a", "b\x00"} }, "spec.args[1]", agent},
		{"arg too long", func(s *deployv1.ServiceSpec) { s.Args = []string{str("a", specrules.MaxArgBytes+1)} }, "spec.args[0]", agent},
		{"args too many", func(s *deployv1.ServiceSpec) { s.Args = make([]string, specrules.MaxArgs+1) }, "spec.args", agent},
		{"args too large in all", func(s *deployv1.ServiceSpec) {
			s.Args = []string{str("a", specrules.MaxArgBytes), str("a", specrules.MaxArgBytes), str("a", specrules.MaxArgBytes), str("a", specrules.MaxArgBytes)}
		}, "spec.args", agent},
		{"restart attempts too many", func(s *deployv1.ServiceSpec) {
			s.Restart = &deployv1.RestartPolicy{Attempts: proto.Int32(specrules.MaxRestartAttempts + 1)}
		}, "spec.restart.attempts", agent},
		{"restart interval shorter than delay", func(s *deployv1.ServiceSpec) {
			s.Restart = &deployv1.RestartPolicy{Interval: durationpb.New(time.Second), Delay: durationpb.New(time.Minute)}
		}, "spec.restart.interval", agent},
		{"restart mode unknown", func(s *deployv1.ServiceSpec) { s.Restart = &deployv1.RestartPolicy{Mode: 9} }, "spec.restart.mode", agent},
		{"check path relative", func(s *deployv1.ServiceSpec) { s.Check.Http = "healthz" }, "spec.check.http", agent},
		{"check path bad escape", func(s *deployv1.ServiceSpec) { s.Check.Http = "/a%zz" }, "spec.check.http", agent},
		{"check path with NUL", func(s *deployv1.ServiceSpec) { s.Check.Http = "/a\x00" }, "spec.check.http", agent},
		{"check path too long", func(s *deployv1.ServiceSpec) { s.Check.Http = "/" + str("a", specrules.MaxPathBytes) }, "spec.check.http", agent},
		{"check http and tcp", func(s *deployv1.ServiceSpec) { s.Check.Tcp = true }, "spec.check", agent},
		{"check interval negative", func(s *deployv1.ServiceSpec) { s.Check.Interval = durationpb.New(-time.Second) }, "spec.check.interval", agent},
		{"check interval over 7 days", func(s *deployv1.ServiceSpec) { s.Check.Interval = &durationpb.Duration{Seconds: 1e11} }, "spec.check.interval", agent},
		{"kill timeout negative", func(s *deployv1.ServiceSpec) { s.KillTimeout = durationpb.New(-time.Second) }, "spec.kill_timeout", agent},
		{"kill timeout over 7 days", func(s *deployv1.ServiceSpec) { s.KillTimeout = durationpb.New(8 * 24 * time.Hour) }, "spec.kill_timeout", agent},
		{"port zero", func(s *deployv1.ServiceSpec) { s.Port = 0 }, "spec.port", agent},
		{"port too big", func(s *deployv1.ServiceSpec) { s.Port = 65536 }, "spec.port", agent},
		{"memory under Docker's minimum", func(s *deployv1.ServiceSpec) { s.Resources.MemoryMb = 5 }, "spec.resources.memory_mb", agent},
		{"memory negative", func(s *deployv1.ServiceSpec) { s.Resources.MemoryMb = -1 }, "spec.resources.memory_mb", agent},
		{"cpu negative", func(s *deployv1.ServiceSpec) { s.Resources.CpuMhz = -1 }, "spec.resources.cpu_mhz", agent},
		{"image empty", func(s *deployv1.ServiceSpec) { s.Image = "" }, "spec.image", agent},
		{"name with slash", func(s *deployv1.ServiceSpec) { s.Name = "a/b" }, "spec.name", agent},
		{"name too long for the agent", func(s *deployv1.ServiceSpec) { s.Name = str("a", specrules.MaxIdentifierBytes+1) }, "spec.name", agent},

		// What the edge refuses.
		{"host with ;", func(s *deployv1.ServiceSpec) { s.Route.Host = "a;b.local" }, "spec.route.host", edge},
		{"host with brace", func(s *deployv1.ServiceSpec) { s.Route.Host = "a{b}.local" }, "spec.route.host", edge},
		{"host with quote", func(s *deployv1.ServiceSpec) { s.Route.Host = `a"b.local` }, "spec.route.host", edge},
		{"host with $", func(s *deployv1.ServiceSpec) { s.Route.Host = "$host" }, "spec.route.host", edge},
		{"host with space", func(s *deployv1.ServiceSpec) { s.Route.Host = "a b" }, "spec.route.host", edge},
		{"host with port", func(s *deployv1.ServiceSpec) { s.Route.Host = "web.local:80" }, "spec.route.host", edge},
		{"host empty label", func(s *deployv1.ServiceSpec) { s.Route.Host = "web..local" }, "spec.route.host", edge},
		{"host label starting with -", func(s *deployv1.ServiceSpec) { s.Route.Host = "-web.local" }, "spec.route.host", edge},
		{"host too long", func(s *deployv1.ServiceSpec) { s.Route.Host = str("a.", 127) + "aa" }, "spec.route.host", edge},
		{"path relative", func(s *deployv1.ServiceSpec) { s.Route.Path = "api" }, "spec.route.path", edge},
		{"path with ;", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a;b" }, "spec.route.path", edge},
		{"path with braces", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a{b}" }, "spec.route.path", edge},
		{"path with quote", func(s *deployv1.ServiceSpec) { s.Route.Path = `/a"b` }, "spec.route.path", edge},
		{"path with apostrophe", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a'b" }, "spec.route.path", edge},
		{"path with backslash", func(s *deployv1.ServiceSpec) { s.Route.Path = `/a\b` }, "spec.route.path", edge},
		{"path with space", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a b" }, "spec.route.path", edge},
		{"path with tab", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a\tb" }, "spec.route.path", edge},
		{"path with newline", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a\nb" }, "spec.route.path", edge},
		{"path with NUL", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a\x00" }, "spec.route.path", edge},
		{"path with /../", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a/../b" }, "spec.route.path", edge},
		{"path ending in /..", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a/.." }, "spec.route.path", edge},
		{"path with /./", func(s *deployv1.ServiceSpec) { s.Route.Path = "/./a" }, "spec.route.path", edge},
		{"path with //", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a//b" }, "spec.route.path", edge},
		{"path with %-escape", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a%2e%2e" }, "spec.route.path", edge},
		{"path with ?", func(s *deployv1.ServiceSpec) { s.Route.Path = "/a?b" }, "spec.route.path", edge},
		{"path not ASCII", func(s *deployv1.ServiceSpec) { s.Route.Path = "/caf\u00e9" }, "spec.route.path", edge},
		{"path too long", func(s *deployv1.ServiceSpec) { s.Route.Path = "/" + str("a", specrules.MaxPathBytes) }, "spec.route.path", edge},
		{"preview header with space", func(s *deployv1.ServiceSpec) { s.Update.BlueGreen.PreviewHeader = "X Preview" }, "spec.update.blue_green.preview_header", edge},
		{"preview header with colon", func(s *deployv1.ServiceSpec) { s.Update.BlueGreen.PreviewHeader = "X:Y" }, "spec.update.blue_green.preview_header", edge},
		{"preview header with CRLF", func(s *deployv1.ServiceSpec) { s.Update.BlueGreen.PreviewHeader = "X\r\nY" }, "spec.update.blue_green.preview_header", edge},
		{"preview header too long", func(s *deployv1.ServiceSpec) {
			s.Update.BlueGreen.PreviewHeader = str("X", specrules.MaxHeaderNameBytes+1)
		}, "spec.update.blue_green.preview_header", edge},

		// What the rollout machine would refuse after the release is recorded.
		{"deadlines beyond time.Duration", func(s *deployv1.ServiceSpec) {
			// Valid protobuf durations, ordered, but beyond time.Duration:
			// both saturate to the same value in the machine.
			s.Update.HealthyDeadline = &durationpb.Duration{Seconds: 1e11}
			s.Update.ProgressDeadline = &durationpb.Duration{Seconds: 2e11}
		}, "spec.update.healthy_deadline", machine},

		// Limits only Deploy can enforce.
		{"count 1001", func(s *deployv1.ServiceSpec) { s.Count = specrules.MaxCount + 1 }, "spec.count", limit},
		{"count 1e9", func(s *deployv1.ServiceSpec) { s.Count = 1e9 }, "spec.count", limit},
		{"count x spec size over a release", func(s *deployv1.ServiceSpec) {
			s.Count, s.Env = specrules.MaxCount, env(4, 2000)
		}, "spec.count", limit},
		{"spec over 64 KiB", func(s *deployv1.ServiceSpec) {
			for i := range specrules.MaxConstraints {
				s.Constraints = append(s.Constraints, &deployv1.Constraint{Attribute: fmt.Sprintf("node.label.%s%d", str("k", 900), i), Operator: "=",
					Value: str("v", specrules.MaxConstraintBytes)})
			}
			s.Env = env(3, 10_000)
		}, "spec", limit},
		{"too many constraints", func(s *deployv1.ServiceSpec) {
			for range specrules.MaxConstraints + 1 {
				s.Constraints = append(s.Constraints, &deployv1.Constraint{Attribute: "node.id", Operator: "=", Value: "n1"})
			}
		}, "spec.constraints", limit},
		{"constraint value too long", func(s *deployv1.ServiceSpec) {
			s.Constraints = []*deployv1.Constraint{{Attribute: "node.id", Operator: "regexp", Value: str("a", specrules.MaxConstraintBytes+1)}}
		}, "spec.constraints[0].value", limit},
		{"too many canary steps", func(s *deployv1.ServiceSpec) {
			s.Update = &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
				Canary: &deployv1.CanaryStrategy{Steps: steps(specrules.MaxCanarySteps + 1)}}
		}, "spec.update.canary.steps", limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseline()
			tt.mutate(s)
			vs := spec.Validate(s)
			// What Deploy answers with these violations.
			err := rpc.InvalidArgument("spec", vs)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Deploy answers %v, want INVALID_ARGUMENT", err)
			}
			named := false
			for _, v := range rpc.Violations(err) {
				named = named || v.Field == tt.field
			}
			if !named {
				t.Errorf("violations %v do not name %s", vs, tt.field)
			}
			r := downstream(t, s)
			var got []string
			switch tt.by {
			case agent:
				got = r.agent
			case edge:
				got = r.edge
			case machine:
				got = r.rollout
			}
			if tt.by != limit && len(got) == 0 {
				t.Errorf("the %s accepts this value (%+v): the row tests no downstream rule", tt.by, r)
			}
			if tt.by != limit {
				t.Logf("%s: %s; %s refuses: %s", tt.field, vs[0].Description, tt.by, got[0])
			}
		})
	}
}

// FuzzAcceptedRunsAndRoutes: a spec accepted at Deploy is accepted by the
// node agent's validation, by the edge's route table and nginx render, and
// by the rollout machine, and its allocation stays within the size
// arithmetic of package specrules. The fuzzer drives a whole spec (from
// protobuf bytes) and, separately, the strings downstream is pickiest
// about, set into the baseline spec.
func FuzzAcceptedRunsAndRoutes(f *testing.F) {
	canary := baseline()
	canary.Update = &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY, Canary: &deployv1.CanaryStrategy{
		Steps: []*deployv1.CanaryStep{{Weight: 5, Pause: durationpb.New(time.Minute)}, {Weight: 50, Manual: true}, {Weight: 100}}}}
	minimal := &deployv1.ServiceSpec{Name: "a", Image: "nginx", Port: 1, Route: &deployv1.Route{Host: "a"}}
	for _, s := range []*deployv1.ServiceSpec{baseline(), canary, minimal, {}} {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "web.example.com", "/api/v1/", "X-Preview", "GREETING", "hello", "--verbose", "/healthz")
	}
	f.Add([]byte{}, "a-1.b-2.c", "/a-b._~!$&()*+,=:@/x", "X-A_b.c!#$%&'*+^`|~", "_K9", "v\t\r\n=;{}\"'", "a b\tc", "/p?q=1&r=%20#f")
	f.Add([]byte{}, "xn--caf-dma.example", "/..a/b..", "Cookie", "A", strings.Repeat("v", specrules.MaxEnvValueBytes), strings.Repeat("a", specrules.MaxArgBytes), "/"+strings.Repeat("h", specrules.MaxPathBytes-1))
	f.Add([]byte{}, "Web.Local", "/a/../b", "X Preview", "PORT", "a\x00", "b\x00", "/a%zz")
	f.Fuzz(func(t *testing.T, data []byte, host, path, header, envKey, envValue, arg, check string) {
		s := &deployv1.ServiceSpec{}
		if err := proto.Unmarshal(data, s); err == nil {
			acceptedRunsAndRoutes(t, s)
			// Random bytes rarely make a valid name, image and port.
			fixed := proto.CloneOf(s)
			fixed.Name, fixed.Image, fixed.Port = "web", "slipway/demo:v2", 8080
			acceptedRunsAndRoutes(t, fixed)
		}
		b := baseline()
		b.Route.Host, b.Route.Path, b.Update.BlueGreen.PreviewHeader = host, path, header
		b.Env[envKey] = envValue
		b.Args = append(b.Args, arg)
		b.Check.Http = check
		acceptedRunsAndRoutes(t, b)
	})
}

// acceptedRunsAndRoutes checks FuzzAcceptedRunsAndRoutes's properties for
// one spec.
func acceptedRunsAndRoutes(t *testing.T, s *deployv1.ServiceSpec) {
	t.Helper()
	if vs := spec.Validate(s); vs != nil {
		return
	}
	if r := downstream(t, s); !r.none() {
		t.Fatalf("accepted at Deploy but refused downstream: %+v\nspec: %v", r, s)
	}
	size := proto.Size(s)
	a := engine.Template(spec.Normalize(s), 1<<63, rollout.TrackCanary)
	a.Id, a.NodeId, a.HostPort = allocID, nodeID, 65535
	if got := proto.Size(a); got > size+specrules.AllocationOverheadBytes {
		t.Fatalf("allocation of %d bytes from a %d-byte spec: more than the %d bytes of overhead the arithmetic allows", got, size, specrules.AllocationOverheadBytes)
	}
	if total := int(s.GetCount()) * proto.Size(a); total > specrules.MaxReleaseBytes {
		t.Fatalf("%d allocations of %d bytes are %d bytes, more than a release may weigh (%d)", s.GetCount(), proto.Size(a), total, specrules.MaxReleaseBytes)
	}
}

// TestSizeLimitsHoldAfterNormalize: a spec at the edge of the release size
// limit is judged by its recorded (normalised) size, so it is not accepted
// at Deploy and refused when revalidated after Normalize.
func TestSizeLimitsHoldAfterNormalize(t *testing.T) {
	s := &deployv1.ServiceSpec{Name: "web", Image: "slipway/demo:v1", Port: 8080, Count: 1,
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY},
		Env:    map[string]string{"BLOB": strings.Repeat("x", 5000)}}
	for c := int32(specrules.MaxCount); c > 0; c-- {
		s.Count = c
		if spec.Validate(s) == nil {
			break
		}
	}
	if s.GetCount() == specrules.MaxCount || s.GetCount() <= 1 {
		t.Fatalf("count %d: the spec does not sit at the release size edge", s.GetCount())
	}
	if vs := spec.Validate(spec.Normalize(s)); vs != nil {
		t.Errorf("count %d accepted, refused after Normalize: %v", s.GetCount(), vs)
	}
	s.Count++
	if spec.Validate(s) == nil {
		t.Errorf("count %d beyond the edge accepted", s.GetCount())
	}
}
