// Package specrules is the one set of rules a service spec must satisfy to be
// run by a node agent and routed by an edge: the coordinator applies them at
// Deploy, and the agent and the edge apply the same functions to what they
// receive, so a release the coordinator accepts can always be run and routed.
//
// Every rule function returns "" for a valid value, or a description of
// what is wrong without the field name (callers name fields in their own
// API's terms). The package is pure: no I/O, no state.
package specrules

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Limits. They bound what one Deploy can make the cluster carry: raft
// entries, the desired set sent to a node in one gRPC message, the
// environment handed to execve, the route table of every edge.
//
// The arithmetic that keeps a node's desired set inside one gRPC message
// (see SyncBudgetBytes):
//
//   - one allocation is at most MaxSpecBytes + AllocationOverheadBytes
//     (64.5 KiB) on the wire: an allocation copies a subset of its spec's
//     fields and adds ids, a release number and a track;
//   - one release of a service is at most MaxReleaseBytes (4 MiB) in
//     allocations, whatever its count, since ReleaseSize bounds
//     count × (spec size + overhead);
//   - so a service in the middle of a rollout (two releases on a node, the
//     worst case a rollout makes) needs at most 8 MiB of a node's message,
//     half of AssumedMaxMsgBytes (16 MiB).
//
// Many services together can still exceed a message on one node; the
// coordinator's engine then holds back the newest allocations of that node
// (naming their services) and sends the rest, so one service never blocks
// another.
const (
	// MaxCount bounds a service's instance count. The leader builds an
	// allocation id per instance in one raft entry and placement is
	// count × nodes; a fleet larger than this is several services.
	MaxCount = 1000
	// MaxSpecBytes bounds a spec's wire size (proto.Size).
	MaxSpecBytes = 64 << 10
	// AllocationOverheadBytes bounds what an allocation adds to the spec
	// fields it copies: allocation and node ids (at most MaxIdentifierBytes
	// each), service, release, track, desired state and host port.
	AllocationOverheadBytes = 512
	// MaxReleaseBytes bounds count × (spec size + AllocationOverheadBytes):
	// all the allocations of one release together, i.e. what one rollout
	// step can put into one raft entry and onto one node.
	MaxReleaseBytes = 4 << 20
	// AssumedMaxMsgBytes is the gRPC message size limit this package's
	// arithmetic assumes for the coordinator -> node agent link (16 MiB).
	AssumedMaxMsgBytes = 16 << 20
	// SyncBudgetBytes is how much of one SyncAllocations request the
	// allocations of a node may take; the rest (64 KiB) is for the node id,
	// the fencing token and framing.
	SyncBudgetBytes = AssumedMaxMsgBytes - 64<<10

	// MaxEnvEntries bounds the number of environment variables.
	MaxEnvEntries = 128
	// MaxEnvNameBytes bounds one variable's name.
	MaxEnvNameBytes = 128
	// MaxEnvValueBytes bounds one variable's value (a PEM chain fits; the
	// kernel's own per-string limit is 128 KiB).
	MaxEnvValueBytes = 16 << 10
	// MaxEnvBytes bounds the whole environment: the sum of
	// len(name)+len(value)+2 ("=" and NUL, as execve sees it).
	MaxEnvBytes = 32 << 10
	// MaxArgs bounds the number of entrypoint arguments.
	MaxArgs = 128
	// MaxArgBytes bounds one argument.
	MaxArgBytes = 4 << 10
	// MaxArgsBytes bounds all arguments: the sum of len(arg)+1. With
	// MaxEnvBytes it stays far under the kernel's ARG_MAX (2 MiB or more).
	MaxArgsBytes = 16 << 10

	// MaxCanarySteps bounds a canary strategy's steps.
	MaxCanarySteps = 20
	// MaxConstraints bounds a spec's placement constraints.
	MaxConstraints = 32
	// MaxConstraintBytes bounds a constraint's attribute and its value.
	MaxConstraintBytes = 1 << 10

	// MaxIdentifierBytes bounds allocation ids, node ids and service names
	// as the agent stores them (see Identifier). The coordinator's
	// allocation ids, <service>-v<release>-<raft index>-<k>, are at most
	// 63+2+20+1+20+1+4 = 111 bytes.
	MaxIdentifierBytes = 128
	// MaxHostBytes bounds a route host (a DNS name).
	MaxHostBytes = 253
	// MaxPathBytes bounds a route path and a health check path.
	MaxPathBytes = 1 << 10
	// MaxHeaderNameBytes bounds an HTTP header (or cookie) name.
	MaxHeaderNameBytes = 128
	// MaxHeaderValueBytes bounds a pinned header or cookie value.
	MaxHeaderValueBytes = 1 << 10

	// MinMemoryMB is the smallest memory limit Docker accepts; 0 means the
	// default.
	MinMemoryMB = 6
	// MaxDuration bounds every duration in a spec: long enough for any
	// rollout step, short enough that adding durations never overflows
	// time.Duration (a larger protobuf duration saturates when converted).
	MaxDuration = 7 * 24 * time.Hour

	// ReservedEnv is the variable the agent sets itself (the port the
	// instance listens on).
	ReservedEnv = "PORT"
)

// Count checks a service's instance count.
func Count(n int64) string {
	if n < 0 || n > MaxCount {
		return fmt.Sprintf("must be between 0 and %d, got %d", MaxCount, n)
	}
	return ""
}

// SpecSize checks a spec's wire size in bytes.
func SpecSize(n int) string {
	if n > MaxSpecBytes {
		return fmt.Sprintf("the spec is %d bytes, more than the %d allowed", n, MaxSpecBytes)
	}
	return ""
}

// ReleaseSize checks that count instances of a spec of specBytes fit
// MaxReleaseBytes.
func ReleaseSize(count int64, specBytes int) string {
	if count <= 0 {
		return ""
	}
	per := int64(specBytes) + AllocationOverheadBytes
	if count > MaxReleaseBytes/per {
		return fmt.Sprintf("%d instances of a %d-byte spec are %d bytes of allocations, more than the %d allowed; at this spec size at most %d instances",
			count, specBytes, count*per, MaxReleaseBytes, MaxReleaseBytes/per)
	}
	return ""
}

// EnvName checks an environment variable's name: letters, digits and '_',
// not starting with a digit, at most MaxEnvNameBytes, not ReservedEnv.
func EnvName(k string) string {
	switch {
	case k == "":
		return "the name is empty"
	case len(k) > MaxEnvNameBytes:
		return fmt.Sprintf("the name is %d bytes, more than the %d allowed", len(k), MaxEnvNameBytes)
	case k == ReservedEnv:
		return ReservedEnv + " is set by the node agent"
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return "is not a valid environment variable name (letters, digits and '_', not starting with a digit)"
		}
	}
	return ""
}

// EnvValue checks an environment variable's value: no NUL, at most
// MaxEnvValueBytes.
func EnvValue(v string) string {
	switch {
	case len(v) > MaxEnvValueBytes:
		return fmt.Sprintf("the value is %d bytes, more than the %d allowed", len(v), MaxEnvValueBytes)
	case strings.IndexByte(v, 0) >= 0:
		return "the value contains a NUL byte"
	}
	return ""
}

// EnvTotal checks the environment as a whole: at most MaxEnvEntries
// entries and MaxEnvBytes bytes.
func EnvTotal(env map[string]string) string {
	if len(env) > MaxEnvEntries {
		return fmt.Sprintf("%d variables, more than the %d allowed", len(env), MaxEnvEntries)
	}
	n := 0
	for k, v := range env {
		n += len(k) + len(v) + 2
	}
	if n > MaxEnvBytes {
		return fmt.Sprintf("the environment is %d bytes, more than the %d allowed", n, MaxEnvBytes)
	}
	return ""
}

// Arg checks one entrypoint argument: no NUL, at most MaxArgBytes.
func Arg(a string) string {
	switch {
	case len(a) > MaxArgBytes:
		return fmt.Sprintf("is %d bytes, more than the %d allowed", len(a), MaxArgBytes)
	case strings.IndexByte(a, 0) >= 0:
		return "contains a NUL byte"
	}
	return ""
}

// ArgsTotal checks the arguments as a whole: at most MaxArgs arguments and
// MaxArgsBytes bytes.
func ArgsTotal(args []string) string {
	if len(args) > MaxArgs {
		return fmt.Sprintf("%d arguments, more than the %d allowed", len(args), MaxArgs)
	}
	n := 0
	for _, a := range args {
		n += len(a) + 1
	}
	if n > MaxArgsBytes {
		return fmt.Sprintf("the arguments are %d bytes, more than the %d allowed", n, MaxArgsBytes)
	}
	return ""
}

// Port checks a port number (1-65535).
func Port(p int64) string {
	switch {
	case p == 0:
		return "is required (1-65535)"
	case p < 1 || p > 65535:
		return fmt.Sprintf("must be between 1 and 65535, got %d", p)
	}
	return ""
}

// CPUMHz checks a CPU reservation: zero (the default) or more.
func CPUMHz(mhz int64) string {
	if mhz < 0 {
		return fmt.Sprintf("must be zero (the default) or more, got %d", mhz)
	}
	return ""
}

// MemoryMB checks a memory limit: zero (the default) or at least
// MinMemoryMB.
func MemoryMB(mb int64) string {
	switch {
	case mb < 0:
		return fmt.Sprintf("must be zero (the default) or more, got %d", mb)
	case mb > 0 && mb < MinMemoryMB:
		return fmt.Sprintf("must be zero (the default) or at least %d (Docker's minimum), got %d", MinMemoryMB, mb)
	}
	return ""
}

// MaxStartPeriod bounds a health check's start_period: a grace in which
// failing probes do not count should not hide a broken instance for long.
const MaxStartPeriod = 10 * time.Minute

// StartPeriod checks a health check's start period: not negative, at most
// MaxStartPeriod.
func StartPeriod(d time.Duration) string {
	switch {
	case d < 0:
		return fmt.Sprintf("must not be negative, got %s", d)
	case d > MaxStartPeriod:
		return fmt.Sprintf("must be at most %s, got %s", MaxStartPeriod, d)
	}
	return ""
}

// Duration checks a duration: not negative, at most MaxDuration.
func Duration(d time.Duration) string {
	switch {
	case d < 0:
		return fmt.Sprintf("must not be negative, got %s", d)
	case d > MaxDuration:
		return fmt.Sprintf("must be at most %s, got %s", MaxDuration, d)
	}
	return ""
}

// Identifier checks an id or name as the agent stores it: letters, digits,
// '.', '_' and '-', 1 to MaxIdentifierBytes bytes.
func Identifier(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > MaxIdentifierBytes:
		return fmt.Sprintf("is %d bytes, more than the %d allowed", len(s), MaxIdentifierBytes)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "only letters, digits, '.', '_' and '-' are allowed"
		}
	}
	return ""
}

// ServiceName checks a service name: a DNS label (lower-case letters,
// digits and '-', starting with a letter, not ending with '-', at most 63
// bytes). Every service name is also an Identifier.
func ServiceName(s string) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > 63:
		return fmt.Sprintf("must be at most 63 characters, got %d", len(s))
	case !(s[0] >= 'a' && s[0] <= 'z') || !label(s):
		return fmt.Sprintf("%q is not a DNS label (lower-case letters, digits and '-', starting with a letter and not ending with '-')", s)
	}
	return ""
}

// label reports whether s is a lower-case DNS label of 1-63 bytes.
func label(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// RouteHost checks a route host: a lower-case DNS name of labels of
// letters, digits and '-' (not at either end), at most MaxHostBytes, without
// port or trailing dot. It is matched against the request's Host by the
// edge and written into nginx's server_name.
func RouteHost(h string) string {
	if h == "" {
		return "is empty"
	}
	if len(h) > MaxHostBytes {
		return fmt.Sprintf("%q is %d bytes, more than the %d of a DNS name", h, len(h), MaxHostBytes)
	}
	for _, l := range strings.Split(h, ".") {
		if !label(l) {
			return fmt.Sprintf("%q is not a valid lower-case hostname (labels of letters, digits and '-', without port)", h)
		}
	}
	return ""
}

// RoutePath checks a route path prefix: "/" followed by segments of ASCII
// letters, digits and -._~!$&()*+,=:@ separated by single '/', an optional
// trailing '/', no "." or ".." segment, at most MaxPathBytes. The edges
// match it against the decoded, normalised request path, so a prefix with
// percent-escapes, dot segments or "//" could never match at nginx; ';',
// quotes, braces, '\', spaces and control characters would break the
// data plane's config and route encoding.
func RoutePath(p string) string {
	if !strings.HasPrefix(p, "/") {
		return fmt.Sprintf("%q must start with \"/\"", p)
	}
	if len(p) > MaxPathBytes {
		return fmt.Sprintf("is %d bytes, more than the %d allowed", len(p), MaxPathBytes)
	}
	for i := 0; i < len(p); i++ {
		if !pathByte(p[i]) {
			return fmt.Sprintf("%q has %q; a route path has only ASCII letters, digits, '/' and -._~!$&()*+,=:@", p, p[i:i+1])
		}
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		switch {
		case s == "." || s == "..":
			return fmt.Sprintf("%q has a %q segment; write the path the edges match, without dot segments", p, s)
		case s == "" && i < len(segs)-1:
			return fmt.Sprintf("%q has an empty segment (\"//\")", p)
		}
	}
	return ""
}

func pathByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/-._~!$&()*+,=:@", c) >= 0
}

// CheckPath checks a health check path: it starts with '/', has no spaces
// or control characters, at most MaxPathBytes, and makes a valid URL
// (well-formed percent-escapes) when appended to "http://host:port", as
// the agent's probe and Consul's HTTP check do.
func CheckPath(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q must be a path starting with \"/\"", p)
	case len(p) > MaxPathBytes:
		return fmt.Sprintf("is %d bytes, more than the %d allowed", len(p), MaxPathBytes)
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Sprintf("%q must not contain spaces or control characters", p)
	}
	u, err := url.Parse("http://127.0.0.1:1" + p)
	if err != nil || u.Host != "127.0.0.1:1" {
		return fmt.Sprintf("%q is not a valid URL path (check its %%-escapes)", p)
	}
	return ""
}

// HeaderName checks an HTTP header or cookie name: an RFC 9110 token of at
// most MaxHeaderNameBytes.
func HeaderName(n string) string {
	switch {
	case n == "":
		return "is empty"
	case len(n) > MaxHeaderNameBytes:
		return fmt.Sprintf("is %d bytes, more than the %d allowed", len(n), MaxHeaderNameBytes)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fmt.Sprintf("%q is not a valid HTTP header name", n)
		}
	}
	return ""
}

// HeaderValue checks a header or cookie value matched by a pin: no control
// characters (tab, CR and LF included), at most MaxHeaderValueBytes.
func HeaderValue(v string) string {
	switch {
	case len(v) > MaxHeaderValueBytes:
		return fmt.Sprintf("is %d bytes, more than the %d allowed", len(v), MaxHeaderValueBytes)
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "has control characters"
	}
	return ""
}

// Restart policy defaults and bounds (the spec's restart block; see
// RestartBackoff).
const (
	// DefaultRestartAttempts is how many restarts an interval allows when
	// the spec sets none.
	DefaultRestartAttempts = 3
	// DefaultRestartInterval is the window restart attempts are counted in.
	DefaultRestartInterval = 5 * time.Minute
	// DefaultRestartDelay is the wait before the first restart in an
	// interval.
	DefaultRestartDelay = time.Second
	// MaxRestartAttempts bounds attempts.
	MaxRestartAttempts = 100
	// RestartBackoffCap caps the doubling of the wait between restarts
	// (a delay longer than it is used as is).
	RestartBackoffCap = 30 * time.Second
	// DefaultStartDeadline is how long a failed start is retried when the
	// allocation names no deadline (the default healthy_deadline).
	DefaultStartDeadline = 60 * time.Second
)

// RestartAttempts checks a restart policy's attempts.
func RestartAttempts(n int64) string {
	if n < 0 || n > MaxRestartAttempts {
		return fmt.Sprintf("must be between 0 and %d, got %d", MaxRestartAttempts, n)
	}
	return ""
}

// RestartWindow checks a restart policy's delay against its interval (both
// defaulted and valid durations): the first restart must fit in the window
// it is counted in.
func RestartWindow(delay, interval time.Duration) string {
	if interval < delay {
		return fmt.Sprintf("interval %s is shorter than delay %s; no restart would fit in it", interval, delay)
	}
	return ""
}

// RestartBackoff is the wait before the n-th restart (1-based) in an
// interval: delay, then twice the previous wait, capped at
// RestartBackoffCap or delay if that is longer.
func RestartBackoff(delay time.Duration, n int) time.Duration {
	limit := max(delay, RestartBackoffCap)
	d := delay
	for i := 1; i < n && d > 0 && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// StopSignals are the signals a spec's stop_signal may name.
var StopSignals = []string{"SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH"}

// StopSignal checks a stop signal: empty (SIGTERM) or one of StopSignals.
func StopSignal(s string) string {
	if s == "" || slices.Contains(StopSignals, s) {
		return ""
	}
	return fmt.Sprintf("%q is not one of %s", s, strings.Join(StopSignals, ", "))
}

// MaxLabels bounds a spec's labels; MaxLabelBytes each key and value.
const (
	MaxLabels     = 32
	MaxLabelBytes = 256
)

// Label checks one container label: a non-empty key of printable ASCII
// without spaces, not in the agent's own "slipway." namespace; key and
// value at most MaxLabelBytes, without NUL.
func Label(k, v string) string {
	switch {
	case k == "":
		return "the key is empty"
	case strings.HasPrefix(strings.ToLower(k), "slipway."):
		return fmt.Sprintf("%q is in the slipway. namespace, which the node agent's own labels use", k)
	case len(k) > MaxLabelBytes || len(v) > MaxLabelBytes:
		return fmt.Sprintf("key and value must be at most %d bytes each", MaxLabelBytes)
	case strings.IndexByte(v, 0) >= 0:
		return "the value contains a NUL byte"
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] >= 0x7f {
			return fmt.Sprintf("%q: a key is printable ASCII without spaces", k)
		}
	}
	return ""
}
