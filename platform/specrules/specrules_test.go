package specrules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"slipway.dev/platform/rpc"
)

func TestRules(t *testing.T) {
	big := func(n int) string { return strings.Repeat("a", n) }
	env := func(n, size int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m["V"+strings.Repeat("_", i%50)+big(i/50+1)] = big(size)
		}
		return m
	}
	tests := []struct {
		rule string
		got  string
		ok   bool
	}{
		{"count 0", Count(0), true},
		{"count max", Count(MaxCount), true},
		{"count over", Count(MaxCount + 1), false},
		{"count 1e9", Count(1e9), false},
		{"count negative", Count(-1), false},
		{"spec size max", SpecSize(MaxSpecBytes), true},
		{"spec size over", SpecSize(MaxSpecBytes + 1), false},
		{"release small", ReleaseSize(MaxCount, 1000), true},
		{"release big spec", ReleaseSize(MaxCount, MaxSpecBytes), false},
		{"release zero count", ReleaseSize(0, MaxSpecBytes), true},
		{"release edge", ReleaseSize(MaxReleaseBytes/(MaxSpecBytes+AllocationOverheadBytes), MaxSpecBytes), true},
		{"release edge+1", ReleaseSize(MaxReleaseBytes/(MaxSpecBytes+AllocationOverheadBytes)+1, MaxSpecBytes), false},
		{"env name", EnvName("_A1"), true},
		{"env name empty", EnvName(""), false},
		{"env name digit first", EnvName("1A"), false},
		{"env name =", EnvName("A=B"), false},
		{"env name NUL", EnvName("A\x00"), false},
		{"env name dash", EnvName("A-B"), false},
		{"env name PORT", EnvName("PORT"), false},
		{"env name long", EnvName(big(MaxEnvNameBytes + 1)), false},
		{"env value", EnvValue(big(MaxEnvValueBytes)), true},
		{"env value NUL", EnvValue("a\x00b"), false},
		{"env value long", EnvValue(big(MaxEnvValueBytes + 1)), false},
		{"env total", EnvTotal(env(MaxEnvEntries, 10)), true},
		{"env too many", EnvTotal(env(MaxEnvEntries+1, 1)), false},
		{"env too big", EnvTotal(env(3, MaxEnvValueBytes)), false},
		{"arg", Arg("--x=1"), true},
		{"arg NUL", Arg("a\x00"), false},
		{"arg long", Arg(big(MaxArgBytes + 1)), false},
		{"args", ArgsTotal(make([]string, MaxArgs)), true},
		{"args too many", ArgsTotal(make([]string, MaxArgs+1)), false},
		{"args too big", ArgsTotal([]string{big(MaxArgBytes), big(MaxArgBytes), big(MaxArgBytes), big(MaxArgBytes)}), false},
		{"port", Port(65535), true},
		{"port 0", Port(0), false},
		{"port over", Port(65536), false},
		{"cpu", CPUMHz(0), true},
		{"cpu negative", CPUMHz(-1), false},
		{"memory default", MemoryMB(0), true},
		{"memory min", MemoryMB(MinMemoryMB), true},
		{"memory under docker min", MemoryMB(5), false},
		{"memory negative", MemoryMB(-1), false},
		{"duration", Duration(MaxDuration), true},
		{"duration negative", Duration(-time.Nanosecond), false},
		{"duration over", Duration(MaxDuration + 1), false},
		{"identifier", Identifier("web-v1-12-0"), true},
		{"identifier empty", Identifier(""), false},
		{"identifier slash", Identifier("a/b"), false},
		{"identifier long", Identifier(big(MaxIdentifierBytes + 1)), false},
		{"service", ServiceName("web-1"), true},
		{"service upper", ServiceName("Web"), false},
		{"service digit", ServiceName("1web"), false},
		{"service dash", ServiceName("web-"), false},
		{"service long", ServiceName(big(64)), false},
		{"host", RouteHost("web.example.com"), true},
		{"host upper", RouteHost("Web.local"), false},
		{"host port", RouteHost("web.local:80"), false},
		{"host empty label", RouteHost("web..local"), false},
		{"host trailing dot", RouteHost("web.local."), false},
		{"host dash label", RouteHost("-web.local"), false},
		{"host quote", RouteHost("web\".local"), false},
		{"host dollar", RouteHost("$host"), false},
		{"host long", RouteHost(strings.Repeat("a.", 127) + "aa"), false},
		{"path root", RoutePath("/"), true},
		{"path", RoutePath("/api/v1"), true},
		{"path trailing slash", RoutePath("/api/"), true},
		{"path sub-delims", RoutePath("/a-b._~!$&()*+,=:@"), true},
		{"path dots in name", RoutePath("/a..b/.well-known"), true},
		{"path relative", RoutePath("api"), false},
		{"path empty", RoutePath(""), false},
		{"path semicolon", RoutePath("/a;b"), false},
		{"path brace", RoutePath("/a{b}"), false},
		{"path quote", RoutePath("/a'b"), false},
		{"path dquote", RoutePath(`/a"b`), false},
		{"path backslash", RoutePath(`/a\b`), false},
		{"path space", RoutePath("/a b"), false},
		{"path tab", RoutePath("/a\tb"), false},
		{"path NUL", RoutePath("/a\x00"), false},
		{"path percent", RoutePath("/a%20b"), false},
		{"path query", RoutePath("/a?b"), false},
		{"path dotdot", RoutePath("/a/../b"), false},
		{"path dotdot end", RoutePath("/a/.."), false},
		{"path dot", RoutePath("/./a"), false},
		{"path double slash", RoutePath("/a//b"), false},
		{"path non-ascii", RoutePath("/caf\u00e9"), false},
		{"path long", RoutePath("/" + big(MaxPathBytes)), false},
		{"check", CheckPath("/healthz?deep=1"), true},
		{"check escapes", CheckPath("/a%20b"), true},
		{"check relative", CheckPath("healthz"), false},
		{"check space", CheckPath("/a b"), false},
		{"check bad escape", CheckPath("/a%zz"), false},
		{"check long", CheckPath("/" + big(MaxPathBytes)), false},
		{"header", HeaderName("X-Slipway-Preview"), true},
		{"header space", HeaderName("X Preview"), false},
		{"header colon", HeaderName("X:"), false},
		{"header empty", HeaderName(""), false},
		{"header long", HeaderName(big(MaxHeaderNameBytes + 1)), false},
		{"header value", HeaderValue("yes please"), true},
		{"header value CRLF", HeaderValue("a\r\nX-Evil: 1"), false},
		{"header value tab", HeaderValue("a\tb"), false},
		{"header value long", HeaderValue(big(MaxHeaderValueBytes + 1)), false},
	}
	for _, tt := range tests {
		if ok := tt.got == ""; ok != tt.ok {
			t.Errorf("%s: got %q, want ok=%v", tt.rule, tt.got, tt.ok)
		}
	}
}

// TestArithmetic checks the bounds documented on the limits: one service
// mid-rollout (two releases) fits a node's message, and one allocation
// of the largest spec fits many times.
func TestArithmetic(t *testing.T) {
	if 2*MaxReleaseBytes >= SyncBudgetBytes {
		t.Errorf("two releases (%d bytes) do not fit the sync budget (%d)", 2*MaxReleaseBytes, SyncBudgetBytes)
	}
	if MaxSpecBytes+AllocationOverheadBytes > MaxReleaseBytes {
		t.Errorf("one allocation of the largest spec exceeds a release")
	}
	if MaxEnvBytes+MaxArgsBytes > MaxSpecBytes {
		t.Errorf("env and args limits (%d) exceed the spec limit (%d)", MaxEnvBytes+MaxArgsBytes, MaxSpecBytes)
	}
	if got := 2*MaxIdentifierBytes + 63 + 64; got > AllocationOverheadBytes {
		t.Errorf("ids, service and fixed fields (%d) exceed AllocationOverheadBytes", got)
	}
}

// TestAssumedMessageLimit keeps the arithmetic's assumed gRPC message limit
// in step with the one platform/rpc sets on every server and client.
func TestAssumedMessageLimit(t *testing.T) {
	if AssumedMaxMsgBytes > rpc.MaxMsgSize {
		t.Errorf("AssumedMaxMsgBytes = %d, more than rpc.MaxMsgSize = %d", AssumedMaxMsgBytes, rpc.MaxMsgSize)
	}
}

func portsIndex(i int) string { return fmt.Sprintf("ports[%d]", i) }

// TestPorts: names, container ports and static host ports are valid and
// unique; only tcp.
func TestPorts(t *testing.T) {
	ok := []NamedPort{{Name: "http", Port: 8080}, {Name: "metrics-2", Port: 9100, HostPort: 9100, Protocol: "tcp"}}
	if vs := Ports(ok, portsIndex); len(vs) != 0 {
		t.Fatalf("valid ports: %v", vs)
	}
	bad := []NamedPort{
		{Name: "http", Port: 8080, HostPort: 80},
		{Name: "http", Port: 8080, HostPort: 80},
		{Name: "Metrics", Port: 0},
		{Name: "a-very-long-port-name", Port: 70000, HostPort: -1, Protocol: "udp"},
		{Name: "", Port: 1},
		{Name: "x-", Port: 2},
	}
	want := []PortViolation{
		{1, "name", `"http" is the name of ports[0] too`},
		{1, "port", "8080 is the container port of ports[0] too"},
		{1, "host_port", "80 is the host port of ports[0] too"},
		{2, "name", `"Metrics" is not a port name (lower-case letters, digits and '-', starting with a letter and not ending with '-')`},
		{2, "port", "is required (1-65535)"},
		{3, "name", `"a-very-long-port-name" is longer than 15 characters`},
		{3, "port", "must be between 1 and 65535, got 70000"},
		{3, "host_port", "must be 0 (ephemeral) or between 1 and 65535, got -1"},
		{3, "protocol", `"udp" is not supported (only tcp)`},
		{4, "name", "is required"},
		{5, "name", `"x-" is not a port name (lower-case letters, digits and '-', starting with a letter and not ending with '-')`},
	}
	got := Ports(bad, portsIndex)
	if len(got) != len(want) {
		t.Fatalf("got %d violations %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("violation %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if vs := Ports(make([]NamedPort, MaxPorts+1), portsIndex); len(vs) == 0 || vs[0].Index != -1 {
		t.Errorf("too many ports: %v", vs)
	}
	if got := PortEnv("grpc-web"); got != "PORT_GRPC_WEB" {
		t.Errorf("PortEnv = %s", got)
	}
}
