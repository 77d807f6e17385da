package spec

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// valid returns a small valid spec.
func valid() *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{
		Name:  "web",
		Image: "slipway/demo:v2",
		Count: 2,
		Port:  8080,
		Env:   map[string]string{"GREETING": "hello", "_X1": ""},
		Check: &deployv1.HealthCheck{Http: "/healthz", Interval: dur(time.Second), Timeout: dur(500 * time.Millisecond)},
		Route: &deployv1.Route{Host: "web.local", Path: "/"},
		Constraints: []*deployv1.Constraint{
			{Attribute: "node.label.zone", Operator: "!=", Value: "b"},
			{Attribute: "node.id", Operator: "regexp", Value: "^node-[0-9]+$"},
		},
		Update: &deployv1.UpdateStrategy{
			Strategy: deployv1.Strategy_STRATEGY_CANARY,
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
				{Weight: 10, Pause: dur(30 * time.Second)},
				{Weight: 50, Manual: true},
				{Weight: 100},
			}},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *deployv1.ServiceSpec)
		want   []rpc.FieldViolation
	}{
		{name: "valid", mutate: func(*deployv1.ServiceSpec) {}},
		{name: "minimal", mutate: func(s *deployv1.ServiceSpec) {
			*s = deployv1.ServiceSpec{Name: "a", Image: "nginx", Port: 1}
		}},
		{name: "digest image and registry", mutate: func(s *deployv1.ServiceSpec) {
			s.Image = "registry.example:5000/team/app@sha256:" + strings.Repeat("a", 64)
		}},
		{name: "tcp check and max port", mutate: func(s *deployv1.ServiceSpec) {
			s.Check = &deployv1.HealthCheck{Tcp: true}
			s.Port = 65535
		}},
		{name: "empty name and image, zero port", mutate: func(s *deployv1.ServiceSpec) {
			s.Name, s.Image, s.Port = "", "", 0
		}, want: []rpc.FieldViolation{
			{Field: "spec.name", Description: "is required"},
			{Field: "spec.image", Description: "is required"},
			{Field: "spec.port", Description: "is required (1-65535)"},
		}},
		{name: "name not a DNS label", mutate: func(s *deployv1.ServiceSpec) { s.Name = "Web_1" }, want: []rpc.FieldViolation{
			{Field: "spec.name", Description: `"Web_1" is not a DNS label (lower-case letters, digits and '-', starting with a letter and not ending with '-')`},
		}},
		{name: "name ends with dash", mutate: func(s *deployv1.ServiceSpec) { s.Name = "web-" }, want: []rpc.FieldViolation{
			{Field: "spec.name", Description: `"web-" is not a DNS label (lower-case letters, digits and '-', starting with a letter and not ending with '-')`},
		}},
		{name: "name starts with digit", mutate: func(s *deployv1.ServiceSpec) { s.Name = "1web" }, want: []rpc.FieldViolation{
			{Field: "spec.name", Description: `"1web" is not a DNS label (lower-case letters, digits and '-', starting with a letter and not ending with '-')`},
		}},
		{name: "name too long", mutate: func(s *deployv1.ServiceSpec) { s.Name = strings.Repeat("a", 64) }, want: []rpc.FieldViolation{
			{Field: "spec.name", Description: "must be at most 63 characters, got 64"},
		}},
		{name: "uppercase image", mutate: func(s *deployv1.ServiceSpec) { s.Image = "slipway/Demo:v2" }, want: []rpc.FieldViolation{
			{Field: "spec.image", Description: `"slipway/Demo:v2" is not a valid image reference: invalid reference format: repository name (slipway/Demo) must be lowercase`},
		}},
		{name: "bad tag", mutate: func(s *deployv1.ServiceSpec) { s.Image = "slipway/demo:v2!" }, want: []rpc.FieldViolation{
			{Field: "spec.image", Description: `"slipway/demo:v2!" is not a valid image reference: invalid reference format`},
		}},
		{name: "image with spaces", mutate: func(s *deployv1.ServiceSpec) { s.Image = " slipway/demo" }, want: []rpc.FieldViolation{
			{Field: "spec.image", Description: `" slipway/demo" has leading or trailing spaces`},
		}},
		{name: "negative count, port too big", mutate: func(s *deployv1.ServiceSpec) { s.Count, s.Port = -1, 65536 }, want: []rpc.FieldViolation{
			{Field: "spec.count", Description: "must be between 0 and 1000, got -1"},
			{Field: "spec.port", Description: "must be between 1 and 65535, got 65536"},
		}},
		{name: "negative port", mutate: func(s *deployv1.ServiceSpec) { s.Port = -80 }, want: []rpc.FieldViolation{
			{Field: "spec.port", Description: "must be between 1 and 65535, got -80"},
		}},
		{name: "bad env keys sorted", mutate: func(s *deployv1.ServiceSpec) { s.Env = map[string]string{"B-X": "", "1A": "", "": "", "OK": ""} }, want: []rpc.FieldViolation{
			{Field: `spec.env[""]`, Description: "the name is empty"},
			{Field: `spec.env["1A"]`, Description: "is not a valid environment variable name (letters, digits and '_', not starting with a digit)"},
			{Field: `spec.env["B-X"]`, Description: "is not a valid environment variable name (letters, digits and '_', not starting with a digit)"},
		}},
		{name: "negative resources", mutate: func(s *deployv1.ServiceSpec) {
			s.Resources = &deployv1.Resources{CpuMhz: -1, MemoryMb: -2}
		}, want: []rpc.FieldViolation{
			{Field: "spec.resources.cpu_mhz", Description: "must be zero (the default) or more, got -1"},
			{Field: "spec.resources.memory_mb", Description: "must be zero (the default) or more, got -2"},
		}},
		{name: "check http and tcp, bad path", mutate: func(s *deployv1.ServiceSpec) {
			s.Check = &deployv1.HealthCheck{Http: "healthz", Tcp: true}
		}, want: []rpc.FieldViolation{
			{Field: "spec.check", Description: "http and tcp are exclusive; set one"},
			{Field: "spec.check.http", Description: `"healthz" must be a path starting with "/"`},
		}},
		{name: "check without probe", mutate: func(s *deployv1.ServiceSpec) { s.Check = &deployv1.HealthCheck{} }, want: []rpc.FieldViolation{
			{Field: "spec.check", Description: "needs http (a path) or tcp: true; omit check for none"},
		}},
		{name: "check timeout over interval", mutate: func(s *deployv1.ServiceSpec) {
			s.Check.Interval, s.Check.Timeout = dur(2*time.Second), dur(3*time.Second)
		}, want: []rpc.FieldViolation{
			{Field: "spec.check.timeout", Description: "3s must not exceed the interval (2s)"},
		}},
		{name: "check timeout over default interval", mutate: func(s *deployv1.ServiceSpec) {
			s.Check.Interval, s.Check.Timeout = nil, dur(2*time.Second)
		}, want: []rpc.FieldViolation{
			{Field: "spec.check.timeout", Description: "2s must not exceed the interval (1s)"},
		}},
		{name: "check negative and invalid durations", mutate: func(s *deployv1.ServiceSpec) {
			s.Check.Interval, s.Check.Timeout = dur(-time.Second), &durationpb.Duration{Seconds: 1, Nanos: -1}
		}, want: []rpc.FieldViolation{
			{Field: "spec.check.interval", Description: "must not be negative, got -1s"},
			{Field: "spec.check.timeout", Description: "is not a valid duration (seconds 1, nanos -1: out of range or of different signs)"},
		}},
		{name: "check start period negative", mutate: func(s *deployv1.ServiceSpec) { s.Check.StartPeriod = dur(-time.Second) }, want: []rpc.FieldViolation{
			{Field: "spec.check.start_period", Description: "must not be negative, got -1s"},
		}},
		{name: "check start period over the max", mutate: func(s *deployv1.ServiceSpec) {
			s.Check.StartPeriod = dur(11 * time.Minute)
			s.Update = &deployv1.UpdateStrategy{HealthyDeadline: dur(20 * time.Minute), ProgressDeadline: dur(30 * time.Minute)}
		}, want: []rpc.FieldViolation{
			{Field: "spec.check.start_period", Description: "must be at most 10m0s, got 11m0s"},
		}},
		{name: "check start period not under the default healthy deadline", mutate: func(s *deployv1.ServiceSpec) { s.Check.StartPeriod = dur(time.Minute) }, want: []rpc.FieldViolation{
			{Field: "spec.check.start_period", Description: "1m0s must be less than update.healthy_deadline (1m0s)"},
		}},
		{name: "check start period over the healthy deadline", mutate: func(s *deployv1.ServiceSpec) {
			s.Check.StartPeriod = dur(30 * time.Second)
			s.Update = &deployv1.UpdateStrategy{HealthyDeadline: dur(20 * time.Second)}
		}, want: []rpc.FieldViolation{
			{Field: "spec.check.start_period", Description: "30s must be less than update.healthy_deadline (20s)"},
		}},
		{name: "check start period invalid", mutate: func(s *deployv1.ServiceSpec) { s.Check.StartPeriod = &durationpb.Duration{Seconds: 1, Nanos: -1} }, want: []rpc.FieldViolation{
			{Field: "spec.check.start_period", Description: "is not a valid duration (seconds 1, nanos -1: out of range or of different signs)"},
		}},
		{name: "named ports, one routed, checked on another", mutate: func(s *deployv1.ServiceSpec) {
			s.Port = 0
			s.Ports = []*deployv1.Port{{Name: "http", Port: 8080}, {Name: "metrics", Port: 9100, HostPort: 19100, Protocol: "tcp"}}
			s.RoutePort = "http"
			s.Check.Port = "metrics"
		}},
		{name: "named ports with the routed port repeated in port", mutate: func(s *deployv1.ServiceSpec) {
			s.Ports = []*deployv1.Port{{Name: "admin", Port: 9000}, {Name: "http", Port: 8080}}
			s.RoutePort = "http"
		}},
		{name: "named ports invalid", mutate: func(s *deployv1.ServiceSpec) {
			s.Port = 0
			s.Ports = []*deployv1.Port{
				{Name: "http", Port: 8080, HostPort: 80},
				{Name: "http", Port: 8080, HostPort: 80},
				{Name: "Metrics_1", Port: 70000, HostPort: 65536, Protocol: "udp"},
			}
		}, want: []rpc.FieldViolation{
			{Field: "spec.ports[1].name", Description: `"http" is the name of ports[0] too`},
			{Field: "spec.ports[1].port", Description: "8080 is the container port of ports[0] too"},
			{Field: "spec.ports[1].host_port", Description: "80 is the host port of ports[0] too"},
			{Field: "spec.ports[2].name", Description: `"Metrics_1" is not a port name (lower-case letters, digits and '-', starting with a letter and not ending with '-')`},
			{Field: "spec.ports[2].port", Description: "must be between 1 and 65535, got 70000"},
			{Field: "spec.ports[2].host_port", Description: "must be 0 (ephemeral) or between 1 and 65535, got 65536"},
			{Field: "spec.ports[2].protocol", Description: `"udp" is not supported (only tcp)`},
		}},
		{name: "route and check port name no port", mutate: func(s *deployv1.ServiceSpec) {
			s.Port = 0
			s.Ports = []*deployv1.Port{{Name: "http", Port: 8080}}
			s.RoutePort = "web"
			s.Check.Port = "metrics"
		}, want: []rpc.FieldViolation{
			{Field: "spec.route_port", Description: `"web" is not the name of a port in spec.ports`},
			{Field: "spec.check.port", Description: `"metrics" is not the name of a port in spec.ports`},
		}},
		{name: "route and check port without ports", mutate: func(s *deployv1.ServiceSpec) {
			s.RoutePort = "http"
			s.Check.Port = "http"
		}, want: []rpc.FieldViolation{
			{Field: "spec.route_port", Description: `"http" names a port, and spec.ports is empty`},
			{Field: "spec.check.port", Description: `"http" names a port, and spec.ports is empty`},
		}},
		{name: "port conflicting with the routed port", mutate: func(s *deployv1.ServiceSpec) {
			s.Port = 8081
			s.Ports = []*deployv1.Port{{Name: "http", Port: 8080}, {Name: "metrics", Port: 8081}}
		}, want: []rpc.FieldViolation{
			{Field: "spec.port", Description: `8081 conflicts with spec.ports: the routed port "http" is container port 8080 (leave port unset with ports, or set it to 8080)`},
		}},
		{name: "env sets a named port's variable", mutate: func(s *deployv1.ServiceSpec) {
			s.Port = 0
			s.Ports = []*deployv1.Port{{Name: "http", Port: 8080}, {Name: "grpc-web", Port: 8081}}
			s.Env["PORT_GRPC_WEB"] = "1"
		}, want: []rpc.FieldViolation{
			{Field: `spec.env["PORT_GRPC_WEB"]`, Description: `is set by the node agent: the container port of the port "grpc-web"`},
		}},
		{name: "no port at all", mutate: func(s *deployv1.ServiceSpec) { s.Port = 0 }, want: []rpc.FieldViolation{
			{Field: "spec.port", Description: "is required (1-65535)"},
		}},
		{name: "too many ports", mutate: func(s *deployv1.ServiceSpec) {
			s.Port = 0
			for i := range 17 {
				s.Ports = append(s.Ports, &deployv1.Port{Name: fmt.Sprintf("p%d", i), Port: int32(9000 + i)})
			}
		}, want: []rpc.FieldViolation{
			{Field: "spec.ports", Description: "17 ports, more than the 16 allowed"},
		}},
		{name: "route host and path", mutate: func(s *deployv1.ServiceSpec) {
			s.Route = &deployv1.Route{Host: "Web..local", Path: "api"}
		}, want: []rpc.FieldViolation{
			{Field: "spec.route.host", Description: `"Web..local" is not a valid lower-case hostname (labels of letters, digits and '-', without port)`},
			{Field: "spec.route.path", Description: `"api" must start with "/"`},
		}},
		{name: "route host with port", mutate: func(s *deployv1.ServiceSpec) { s.Route.Host = "web.local:80" }, want: []rpc.FieldViolation{
			{Field: "spec.route.host", Description: `"web.local:80" is not a valid lower-case hostname (labels of letters, digits and '-', without port)`},
		}},
		{name: "constraints", mutate: func(s *deployv1.ServiceSpec) {
			s.Constraints = []*deployv1.Constraint{
				{Attribute: "", Operator: "="},
				{Attribute: "node.id", Operator: "~"},
				{Attribute: "node.id", Operator: "regexp", Value: "(["},
				{Attribute: "node.id"},
			}
		}, want: []rpc.FieldViolation{
			{Field: "spec.constraints[0].attribute", Description: `is required, e.g. "node.label.zone" or "node.id"`},
			{Field: "spec.constraints[1].operator", Description: `"~" is not one of =, ==, !=, regexp`},
			{Field: "spec.constraints[2].value", Description: "is not a valid regular expression: error parsing regexp: missing closing ]: `[`"},
			{Field: "spec.constraints[3].operator", Description: "is required, one of =, ==, !=, regexp"},
		}},
		{name: "unknown strategy, negative max_parallel", mutate: func(s *deployv1.ServiceSpec) {
			s.Update.Strategy = 9
			s.Update.MaxParallel = -1
		}, want: []rpc.FieldViolation{
			{Field: "spec.update.strategy", Description: "unknown strategy 9 (want rolling, blue_green or canary)"},
			{Field: "spec.update.max_parallel", Description: "must be zero (default 1) or more, got -1"},
		}},
		{name: "durations out of order with defaults", mutate: func(s *deployv1.ServiceSpec) {
			s.Update.MinHealthyTime = dur(90 * time.Second)
			s.Update.ProgressDeadline = dur(30 * time.Second)
		}, want: []rpc.FieldViolation{
			{Field: "spec.update.min_healthy_time", Description: "1m30s must be less than healthy_deadline (1m0s)"},
			{Field: "spec.update.healthy_deadline", Description: "1m0s must be less than progress_deadline (30s)"},
		}},
		{name: "equal durations", mutate: func(s *deployv1.ServiceSpec) {
			s.Update.MinHealthyTime = dur(10 * time.Second)
			s.Update.HealthyDeadline = dur(10 * time.Second)
		}, want: []rpc.FieldViolation{
			{Field: "spec.update.min_healthy_time", Description: "10s must be less than healthy_deadline (10s)"},
		}},
		{name: "negative durations", mutate: func(s *deployv1.ServiceSpec) {
			s.Update.MinHealthyTime = dur(-time.Second)
			s.Update.ScaleDownDelay = dur(-time.Millisecond)
			s.KillTimeout = dur(-5 * time.Second)
		}, want: []rpc.FieldViolation{
			{Field: "spec.update.min_healthy_time", Description: "must not be negative, got -1s"},
			{Field: "spec.update.scale_down_delay", Description: "must not be negative, got -1ms"},
			{Field: "spec.kill_timeout", Description: "must not be negative, got -5s"},
		}},
		{name: "canary weights", mutate: func(s *deployv1.ServiceSpec) {
			s.Update.Canary.Steps = []*deployv1.CanaryStep{
				{Weight: 20}, {Weight: 20}, {Weight: 101}, {Weight: 10}, {Weight: -1}, {Weight: 100, Manual: true, Pause: dur(time.Second)},
			}
		}, want: []rpc.FieldViolation{
			{Field: "spec.update.canary.steps[1].weight", Description: "20 must be greater than the previous step's weight (20)"},
			{Field: "spec.update.canary.steps[2].weight", Description: "must be between 0 and 100, got 101"},
			{Field: "spec.update.canary.steps[3].weight", Description: "10 must be greater than the previous step's weight (20)"},
			{Field: "spec.update.canary.steps[4].weight", Description: "must be between 0 and 100, got -1"},
			{Field: "spec.update.canary.steps[5].pause", Description: "a step is either paused for a duration or manual, not both"},
		}},
		{name: "restart policy", mutate: func(s *deployv1.ServiceSpec) {
			zero := int32(0)
			s.Restart = &deployv1.RestartPolicy{Attempts: &zero, Interval: dur(time.Minute), Delay: dur(0), Mode: deployv1.RestartMode_RESTART_MODE_DELAY}
		}},
		{name: "restart policy out of bounds", mutate: func(s *deployv1.ServiceSpec) {
			many := int32(101)
			s.Restart = &deployv1.RestartPolicy{Attempts: &many, Interval: dur(time.Second), Delay: dur(2 * time.Second), Mode: 7}
		}, want: []rpc.FieldViolation{
			{Field: "spec.restart.attempts", Description: "must be between 0 and 100, got 101"},
			{Field: "spec.restart.interval", Description: "interval 1s is shorter than delay 2s; no restart would fit in it"},
			{Field: "spec.restart.mode", Description: "unknown mode 7 (want fail or delay)"},
		}},
		{name: "restart policy negative", mutate: func(s *deployv1.ServiceSpec) {
			neg := int32(-1)
			s.Restart = &deployv1.RestartPolicy{Attempts: &neg, Delay: dur(-time.Second)}
		}, want: []rpc.FieldViolation{
			{Field: "spec.restart.attempts", Description: "must be between 0 and 100, got -1"},
			{Field: "spec.restart.delay", Description: "must not be negative, got -1s"},
		}},
		{name: "preview header", mutate: func(s *deployv1.ServiceSpec) {
			s.Update.BlueGreen = &deployv1.BlueGreenStrategy{PreviewHeader: "X Preview"}
		}, want: []rpc.FieldViolation{
			{Field: "spec.update.blue_green.preview_header", Description: `"X Preview" is not a valid HTTP header name`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.mutate(s)
			before := proto.Clone(s)
			got := Validate(s)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
			if !proto.Equal(before, s) {
				t.Errorf("Validate modified its input")
			}
			if len(got) == 0 {
				if vs := Validate(Normalize(s)); vs != nil {
					t.Errorf("Validate(Normalize(valid spec)) = %v", vs)
				}
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	want := []rpc.FieldViolation{{Field: "spec", Description: "is required"}}
	if diff := cmp.Diff(want, Validate(nil)); diff != "" {
		t.Errorf("Validate(nil) mismatch (-want +got):\n%s", diff)
	}
}

func TestNormalizeFillsDefaults(t *testing.T) {
	in := &deployv1.ServiceSpec{
		Name: "web", Image: "slipway/demo:v2", Port: 8080,
		Check:  &deployv1.HealthCheck{Http: "/healthz", Timeout: &durationpb.Duration{}},
		Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY},
	}
	before := proto.Clone(in)
	got := Normalize(in)
	want := &deployv1.ServiceSpec{
		Name: "web", Image: "slipway/demo:v2", Port: 8080,
		Resources:   &deployv1.Resources{CpuMhz: 100, MemoryMb: 64},
		Check:       &deployv1.HealthCheck{Http: "/healthz", Interval: dur(time.Second), Timeout: dur(time.Second)},
		Route:       &deployv1.Route{Path: "/"},
		KillTimeout: dur(5 * time.Second),
		Restart:     &deployv1.RestartPolicy{Attempts: proto.Int32(3), Interval: dur(5 * time.Minute), Delay: dur(time.Second), Mode: deployv1.RestartMode_RESTART_MODE_FAIL},
		Update: &deployv1.UpdateStrategy{
			Strategy:         deployv1.Strategy_STRATEGY_CANARY,
			MaxParallel:      1,
			MinHealthyTime:   dur(3 * time.Second),
			HealthyDeadline:  dur(60 * time.Second),
			ProgressDeadline: dur(5 * time.Minute),
			ScaleDownDelay:   dur(30 * time.Second),
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
				{Weight: 10, Pause: dur(30 * time.Second)},
				{Weight: 50, Pause: dur(30 * time.Second)},
				{Weight: 100},
			}},
		},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("Normalize() mismatch (-want +got):\n%s", diff)
	}
	if !proto.Equal(before, in) {
		t.Errorf("Normalize modified its input")
	}
}

func TestNormalizeStrategies(t *testing.T) {
	tests := []struct {
		name string
		in   *deployv1.UpdateStrategy
		want *deployv1.UpdateStrategy
	}{
		{name: "unset is rolling", in: nil, want: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING}},
		{name: "blue green preview header", in: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN},
			want: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN, BlueGreen: &deployv1.BlueGreenStrategy{PreviewHeader: "X-Slipway-Preview"}}},
		{name: "explicit values kept", in: &deployv1.UpdateStrategy{
			Strategy: deployv1.Strategy_STRATEGY_CANARY, MaxParallel: 3, MinHealthyTime: dur(time.Second),
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 100}}},
		}, want: &deployv1.UpdateStrategy{
			Strategy: deployv1.Strategy_STRATEGY_CANARY, MaxParallel: 3, MinHealthyTime: dur(time.Second),
			Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 100}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Normalize(&deployv1.ServiceSpec{Name: "a", Image: "a", Port: 1, Update: tt.in}).GetUpdate()
			// Only the fields under test; durations are covered above.
			got.HealthyDeadline, got.ProgressDeadline, got.ScaleDownDelay = nil, nil, nil
			if tt.want.MinHealthyTime == nil {
				got.MinHealthyTime = nil
			}
			if tt.want.MaxParallel == 0 {
				tt.want.MaxParallel = 1
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Normalize().update mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNormalizeNil(t *testing.T) {
	if got := Normalize(nil); got != nil {
		t.Errorf("Normalize(nil) = %v, want nil", got)
	}
}

func TestDefaultsNotShared(t *testing.T) {
	a := Normalize(&deployv1.ServiceSpec{Name: "a", Image: "a", Port: 1})
	a.KillTimeout.Seconds = 99
	b := Normalize(&deployv1.ServiceSpec{Name: "a", Image: "a", Port: 1})
	if b.GetKillTimeout().GetSeconds() != 5 {
		t.Fatalf("mutating one normalized spec changed the defaults: kill_timeout %v", b.GetKillTimeout())
	}
}

// TestNormalizePorts: with named ports, route_port defaults to the first
// port and port to the routed one's container port; the normalized spec
// still validates.
func TestNormalizePorts(t *testing.T) {
	in := &deployv1.ServiceSpec{Name: "web", Image: "slipway/demo:v2",
		Ports: []*deployv1.Port{{Name: "metrics", Port: 9100}, {Name: "http", Port: 8080}}}
	got := Normalize(in)
	if got.GetRoutePort() != "metrics" || got.GetPort() != 9100 {
		t.Errorf("normalized route_port %q port %d, want metrics 9100", got.GetRoutePort(), got.GetPort())
	}
	if in.GetPort() != 0 || in.GetRoutePort() != "" {
		t.Errorf("Normalize changed its input")
	}
	if vs := Validate(got); vs != nil {
		t.Errorf("normalized spec invalid: %v", vs)
	}
	in.RoutePort = "http"
	if got := Normalize(in); got.GetPort() != 8080 || RoutedPort(got).GetName() != "http" {
		t.Errorf("route_port http: port %d routed %v", got.GetPort(), RoutedPort(got))
	}
}
