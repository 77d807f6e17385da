package specfile

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

const designYAML = `
name: web
image: slipway/demo:v2
count: 4
port: 8080                     # container port; the agent picks the host port
env: {GREETING: hello, PORT: 8080, EMPTY: }
resources: {cpu_mhz: 100, memory_mb: 64}
check: {http: /healthz, interval: 1s, timeout: 500ms}
route: {host: web.local, path: /}
constraints: [{attribute: node.label.zone, operator: "!=", value: b}]
args: [--verbose]
kill_timeout: 1h30m
update:
  strategy: Canary
  max_parallel: 1
  min_healthy_time: 3s
  healthy_deadline: 60s
  progress_deadline: 5m
  auto_revert: true
  canary: {steps: [{weight: 10, pause: 30s}, {weight: 50, pause: manual}, {weight: 100}]}
`

func designSpec() *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{
		Name:        "web",
		Image:       "slipway/demo:v2",
		Count:       4,
		Port:        8080,
		Env:         map[string]string{"GREETING": "hello", "PORT": "8080", "EMPTY": ""},
		Resources:   &deployv1.Resources{CpuMhz: 100, MemoryMb: 64},
		Check:       &deployv1.HealthCheck{Http: "/healthz", Interval: dur(time.Second), Timeout: dur(500 * time.Millisecond)},
		Route:       &deployv1.Route{Host: "web.local", Path: "/"},
		Constraints: []*deployv1.Constraint{{Attribute: "node.label.zone", Operator: "!=", Value: "b"}},
		Args:        []string{"--verbose"},
		KillTimeout: dur(90 * time.Minute),
		Update: &deployv1.UpdateStrategy{
			Strategy:         deployv1.Strategy_STRATEGY_CANARY,
			MaxParallel:      1,
			MinHealthyTime:   dur(3 * time.Second),
			HealthyDeadline:  dur(60 * time.Second),
			ProgressDeadline: dur(5 * time.Minute),
			AutoRevert:       true,
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
				{Weight: 10, Pause: dur(30 * time.Second)},
				{Weight: 50, Manual: true},
				{Weight: 100},
			}},
		},
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *deployv1.ServiceSpec
	}{
		{name: "yaml from the design", in: designYAML, want: designSpec()},
		{name: "json with protojson names and durations", in: `{
	"name": "web", "image": "slipway/demo:v2", "count": 4, "port": 8080,
	"env": {"GREETING": "hello", "PORT": "8080", "EMPTY": ""},
	"resources": {"cpuMhz": 100, "memoryMb": 64},
	"check": {"http": "/healthz", "interval": "1s", "timeout": "0.5s"},
	"route": {"host": "web.local", "path": "/"},
	"constraints": [{"attribute": "node.label.zone", "operator": "!=", "value": "b"}],
	"args": ["--verbose"],
	"killTimeout": "5400s",
	"update": {
		"strategy": "STRATEGY_CANARY", "maxParallel": 1, "minHealthyTime": "3s",
		"healthyDeadline": "1m", "progressDeadline": "300s", "autoRevert": true,
		"canary": {"steps": [{"weight": 10, "pause": "30s"}, {"weight": 50, "manual": true}, {"weight": 100}]}
	}
}`, want: designSpec()},
		{name: "strategy blue-green and nulls", in: "name: a\nimage: b\nport: 1\ncheck: ~\nupdate: {strategy: blue-green, scale_down_delay: 250ms}\n",
			want: &deployv1.ServiceSpec{Name: "a", Image: "b", Port: 1, Update: &deployv1.UpdateStrategy{
				Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN, ScaleDownDelay: dur(250 * time.Millisecond)}}},
		{name: "strategy enum name lower case and zero duration", in: "name: a\nupdate: {strategy: strategy_rolling, min_healthy_time: 0}\n",
			want: &deployv1.ServiceSpec{Name: "a", Update: &deployv1.UpdateStrategy{
				Strategy: deployv1.Strategy_STRATEGY_ROLLING, MinHealthyTime: dur(0)}}},
		{name: "analysis with numbers and short enum names", in: "name: a\nupdate: {canary: {analysis: {no_data: fail, success_rate: {min: 99.5%}, compare: {confidence: 0.99}, min_requests: 50}}}\n",
			want: &deployv1.ServiceSpec{Name: "a", Update: &deployv1.UpdateStrategy{Canary: &deployv1.CanaryStrategy{Analysis: &deployv1.Analysis{
				NoData: deployv1.NoDataPolicy_NO_DATA_POLICY_FAIL, SuccessRate: &deployv1.SuccessRateThreshold{Min: 99.5},
				Compare: &deployv1.Comparison{Confidence: 0.99}, MinRequests: 50}}}}},
		{name: "anchors and aliases", in: "name: a\ncheck: &c {tcp: true}\n",
			want: &deployv1.ServiceSpec{Name: "a", Check: &deployv1.HealthCheck{Tcp: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("spec.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "unknown fields named with their line", in: "name: web\nimgae: x\nupdate:\n  stratgy: canary\n  canary: {steps: [{weight: 10, paws: 3s}]}\n", want: []string{
			`spec.yaml:2: imgae: unknown field "imgae" (known: args, check, configs, constraints, count, entrypoint, env, image, kill_timeout, labels, name, port, ports, resources, restart, route, route_port, secrets, security, stop_signal, update, volumes)`,
			`spec.yaml:4: update.stratgy: unknown field "stratgy" (known: auto_promote, auto_revert, blue_green, canary, healthy_deadline, hooks, max_parallel, max_surge, max_unavailable, min_healthy_time, progress_deadline, rollback_window, rolling, scale_down_delay, stagger, strategy)`,
			`spec.yaml:5: update.canary.steps[0].paws: unknown field "paws" (known: analysis, manual, pause, weight)`,
		}},
		{name: "bad durations", in: "kill_timeout: 5\ncheck: {interval: soon, timeout: [1]}\n", want: []string{
			`spec.yaml:1: kill_timeout: "5" needs a unit, e.g. 5s or 5ms`,
			`spec.yaml:2: check.interval: "soon" is not a duration such as 500ms, 30s, 5m or 1h`,
			`spec.yaml:2: check.timeout: must be a duration such as 500ms, 30s, 5m or 1h, got a list`,
		}},
		{name: "bad strategy", in: "update:\n  strategy: linear\n", want: []string{
			`spec.yaml:2: update.strategy: unknown strategy "linear" (want rolling, blue_green or canary)`,
		}},
		{name: "bad restart mode", in: "restart: {mode: sometimes}\n", want: []string{
			`spec.yaml:1: restart.mode: unknown value "sometimes" (want one of fail, delay)`,
		}},
		{name: "bad scalars", in: "port: http\ncount: 1.5\nupdate: {auto_revert: maybe, max_parallel: 99999999999}\n", want: []string{
			`spec.yaml:1: port: must be a whole number, got "http"`,
			`spec.yaml:2: count: must be a whole number, got "1.5"`,
			`spec.yaml:3: update.auto_revert: must be true or false, got "maybe"`,
			`spec.yaml:3: update.max_parallel: 99999999999 is out of range (-2147483648 to 2147483647)`,
		}},
		{name: "wrong shapes", in: "env: [A]\nconstraints: {attribute: x}\nroute: /web\nname: [a]\n", want: []string{
			`spec.yaml:1: env: must be a mapping, got a list`,
			`spec.yaml:2: constraints: must be a list, got a mapping`,
			`spec.yaml:3: route: must be a mapping of fields, got "/web"`,
			`spec.yaml:4: name: must be a single value, got a list`,
		}},
		{name: "duplicates", in: "name: a\nname: b\nenv: {A: 1, A: 2}\n", want: []string{
			`spec.yaml:2: name: is given twice`,
			`spec.yaml:3: env["A"]: is given twice`,
		}},
		{name: "json unknown field", in: "{\n  \"name\": \"a\",\n  \"Image\": \"b\"\n}", want: []string{
			`spec.yaml:3: Image: unknown field "Image" (known: args, check, configs, constraints, count, entrypoint, env, image, kill_timeout, labels, name, port, ports, resources, restart, route, route_port, secrets, security, stop_signal, update, volumes)`,
		}},
		{name: "not a mapping", in: "- a\n- b\n", want: []string{`spec.yaml:1: spec: must be a mapping of fields, got a list`}},
		{name: "empty", in: "", want: []string{`spec.yaml: the file is empty; a spec needs at least name, image and port`}},
		{name: "two documents", in: "name: a\n---\nname: b\n", want: []string{`spec.yaml:3: a spec file holds one spec; found a second YAML document`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("spec.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse() = %v, want an error", got)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse() error %T %v, want Errors", err, err)
			}
			lines := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(tt.want, lines); diff != "" {
				t.Errorf("Parse() errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRestart(t *testing.T) {
	got, err := Parse("spec.yaml", []byte("name: web\nrestart: {attempts: 0, interval: 10m, delay: 0s, mode: Delay}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := got.GetRestart()
	if r.Attempts == nil || r.GetAttempts() != 0 || r.GetInterval().AsDuration() != 10*time.Minute || r.GetDelay() == nil ||
		r.GetDelay().AsDuration() != 0 || r.GetMode() != deployv1.RestartMode_RESTART_MODE_DELAY {
		t.Errorf("restart = %v, want attempts 0 (set), interval 10m, delay 0 (set), mode delay", r)
	}
}

func TestParseSyntaxError(t *testing.T) {
	_, err := Parse("spec.yaml", []byte("name: [a\nimage: b\n"))
	if !errors.Is(err, ErrSyntax) {
		t.Fatalf("Parse() error = %v, want ErrSyntax", err)
	}
	if !strings.HasPrefix(err.Error(), "spec.yaml: ") || !strings.Contains(err.Error(), "line") {
		t.Errorf("syntax error %q should name the file and the line", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                        "0s",
		500 * time.Millisecond:   "0.5s",
		90 * time.Minute:         "5400s",
		time.Nanosecond:          "0.000000001s",
		-1500 * time.Millisecond: "-1.5s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestFileModeIsOctal(t *testing.T) {
	spec, err := Parse("spec.yaml", []byte("name: web\nimage: x\nsecrets: [{name: db, target: /run/secrets/db, mode: 0400}, {name: b, mode: \"0o644\"}, {name: c, mode: 440}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint32{0o400, 0o644, 0o440} {
		if got := spec.GetSecrets()[i].GetMode(); got != want {
			t.Errorf("secrets[%d].mode = %#o, want %#o", i, got, want)
		}
	}
	if _, err := Parse("spec.yaml", []byte("name: web\nsecrets: [{name: db, mode: 0999}]\n")); err == nil || !strings.Contains(err.Error(), "secrets[0].mode") {
		t.Fatalf("mode 0999: %v, want an error naming secrets[0].mode", err)
	}
}

// TestReadsNamedPorts: ports, route_port and check.port read from YAML
// (proto names) and JSON (lowerCamelCase).
func TestReadsNamedPorts(t *testing.T) {
	want := &deployv1.ServiceSpec{Name: "web", Image: "demo", RoutePort: "http",
		Ports: []*deployv1.Port{{Name: "http", Port: 8080}, {Name: "metrics", Port: 9100, HostPort: 19100, Protocol: "tcp"}},
		Check: &deployv1.HealthCheck{Http: "/healthz", Port: "metrics"}}
	for name, doc := range map[string]string{
		"yaml": "name: web\nimage: demo\nports:\n  - {name: http, port: 8080}\n  - {name: metrics, port: 9100, host_port: 19100, protocol: tcp}\nroute_port: http\ncheck: {http: /healthz, port: metrics}\n",
		"json": `{"name": "web", "image": "demo", "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100, "hostPort": 19100, "protocol": "tcp"}], "routePort": "http", "check": {"http": "/healthz", "port": "metrics"}}`,
	} {
		got, err := Parse("spec."+name, []byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}
