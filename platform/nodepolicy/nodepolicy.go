// Package nodepolicy is what a node agent allows an instance beyond the
// hardened default, and the one check of an instance's asks against it that
// both the agent (before it starts anything) and the coordinator (at Deploy)
// run.
//
// The hardened default every container gets: no-new-privileges, every
// capability dropped (DefaultCaps is empty), a pids and a memory limit, no
// host network, PID or IPC namespace, not privileged, no devices and no host
// mounts. A spec may ask for more (privileged, extra capabilities, host
// mounts) only where the node's agent allows it with its own flags
// (FlagPrivileged, FlagCaps, FlagHostPaths); FlagImages restricts the image
// references a node runs. The agent publishes its policy as Consul service
// meta (Meta, FromMeta), which is how the coordinator learns it.
package nodepolicy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The agent flags that widen a node's policy, as named in messages.
const (
	FlagPrivileged = "-allow-privileged"
	FlagCaps       = "-allow-caps"
	FlagHostPaths  = "-allow-host-paths"
	FlagImages     = "-allow-images"
)

// Consul service meta keys of the node agent's registration. A key is
// absent when the policy allows nothing of its kind (images: any image).
const (
	MetaPrivileged = "allow_privileged"
	MetaCaps       = "allow_caps"
	MetaHostPaths  = "allow_host_paths"
	MetaImages     = "allow_images"
)

// MaxMetaValue is the longest Consul service meta value.
const MaxMetaValue = 512

// ErrInvalid marks an invalid list given to a Parse function or in meta.
var ErrInvalid = errors.New("nodepolicy: invalid")

// DefaultCaps are the capabilities every container keeps after dropping
// ALL: none. HTTP services need none of them (Docker sets the container's
// net.ipv4.ip_unprivileged_port_start to 0, so even ports below 1024 bind
// without NET_BIND_SERVICE); images that chown or switch users at start
// need CHOWN, SETUID, SETGID through FlagCaps and the spec's cap_add.
var DefaultCaps = []string{}

// Capabilities are the Linux capability names accepted, without "CAP_".
var Capabilities = []string{
	"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
	"KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
	"NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
	"SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE",
	"SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG",
	"WAKE_ALARM",
}

// Policy is what a node allows beyond the hardened default. The zero
// Policy allows nothing extra and any image.
type Policy struct {
	// Privileged allows privileged containers.
	Privileged bool
	// Caps are the capabilities a container may add, canonical (see
	// CanonicalCap).
	Caps []string
	// HostPaths are the host directories (absolute, clean) that may be
	// bind-mounted, each with everything under it.
	HostPaths []string
	// Images are glob patterns of the image references the node runs ('*'
	// matches any run of characters, '/' included), e.g. "slipway/*" or
	// "registry.local/*"; empty allows every image.
	Images []string
}

// Mount is a host path bind-mounted into an instance.
type Mount struct {
	// HostPath is the absolute host path.
	HostPath string
	// ContainerPath is the absolute path inside the container.
	ContainerPath string
	// ReadOnly mounts it read-only.
	ReadOnly bool
}

// Ask is what an instance asks for that the policy governs.
type Ask struct {
	// Image is the image reference.
	Image string
	// Privileged asks for a privileged container.
	Privileged bool
	// Caps are the capabilities asked for beyond DefaultCaps.
	Caps []string
	// Mounts are the host mounts asked for.
	Mounts []Mount
}

// Violation is one ask the policy refuses, with its field path relative to
// the ask's owner: "image", "privileged", "cap_add[i]", "host_mounts[i]" or
// "host_mounts[i].host_path".
type Violation struct {
	Field       string
	Description string
}

// Check returns every ask of a that p refuses, naming the agent flag that
// would allow it; nil when p allows all of a.
func (p Policy) Check(a Ask) []Violation {
	var vs []Violation
	if !p.AllowsImage(a.Image) {
		vs = append(vs, Violation{"image", fmt.Sprintf("image %q is not allowed on this node (%s %s)", a.Image, FlagImages, strings.Join(p.Images, ","))})
	}
	if a.Privileged && !p.Privileged {
		vs = append(vs, Violation{"privileged", "privileged containers are not allowed on this node (the agent needs " + FlagPrivileged + ")"})
	}
	for i, c := range a.Caps {
		if !p.AllowsCap(c) {
			c, _ = CanonicalCap(c)
			vs = append(vs, Violation{fmt.Sprintf("cap_add[%d]", i), fmt.Sprintf("capability %s is not allowed on this node (the agent needs %s %s)", c, FlagCaps, c)})
		}
	}
	for i, m := range a.Mounts {
		if !p.AllowsHostPath(m.HostPath) {
			vs = append(vs, Violation{fmt.Sprintf("host_mounts[%d].host_path", i), fmt.Sprintf("host path %s is not allowed on this node (the agent needs %s %s or a parent directory)", m.HostPath, FlagHostPaths, m.HostPath)})
		}
	}
	return vs
}

// Extra reports whether a asks for anything beyond the hardened default
// (the image aside).
func (a Ask) Extra() bool { return a.Privileged || len(a.Caps) > 0 || len(a.Mounts) > 0 }

// AllowsCap reports whether capability c (any case, "CAP_" optional) may be
// added.
func (p Policy) AllowsCap(c string) bool {
	cc, ok := CanonicalCap(c)
	return ok && slices.Contains(p.Caps, cc)
}

// AllowsHostPath reports whether host path h (absolute, clean) is one of the
// allowed directories or under one. It does not resolve symbolic links: the
// agent resolves them before it checks again.
func (p Policy) AllowsHostPath(h string) bool {
	if !cleanAbs(h) {
		return false
	}
	for _, a := range p.HostPaths {
		if h == a || a == "/" || strings.HasPrefix(h, a+"/") {
			return true
		}
	}
	return false
}

// AllowsImage reports whether image reference ref matches an allowed
// pattern, or any image when there are none. A pattern matches the
// reference as written, its familiar form ("slipway/demo:v1") or its fully
// qualified form ("docker.io/slipway/demo:v1").
func (p Policy) AllowsImage(ref string) bool {
	if len(p.Images) == 0 {
		return true
	}
	forms := imageForms(ref)
	for _, pat := range p.Images {
		re := globRE(pat)
		for _, f := range forms {
			if re.MatchString(f) {
				return true
			}
		}
	}
	return false
}

// imageForms returns ref as written, familiar and fully qualified, by the
// Docker rule: a first path component without '.' or ':' that is not
// "localhost" names a repository on docker.io; a single component is under
// "library/".
func imageForms(ref string) []string {
	first, rest, hasSlash := strings.Cut(ref, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		if first == "docker.io" || first == "index.docker.io" {
			fam := strings.TrimPrefix(rest, "library/")
			return []string{ref, fam, "docker.io/" + rest}
		}
		return []string{ref}
	}
	full := "docker.io/" + ref
	fam := ref
	if !hasSlash {
		full = "docker.io/library/" + ref
	} else {
		fam = strings.TrimPrefix(ref, "library/")
	}
	return []string{ref, fam, full}
}

func globRE(pat string) *regexp.Regexp {
	parts := strings.Split(pat, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

func cleanAbs(p string) bool {
	return strings.HasPrefix(p, "/") && path.Clean(p) == p && !strings.ContainsAny(p, ",\x00")
}

// CanonicalCap returns capability c upper-cased without "CAP_", and whether
// it is a known Linux capability.
func CanonicalCap(c string) (string, bool) {
	u := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
	return u, slices.Contains(Capabilities, u)
}

// ValidHostPath returns why h cannot be a host or container path of a mount,
// or "" when it can: absolute, clean, not "/", without ',' or NUL.
func ValidHostPath(h string) string {
	switch {
	case !strings.HasPrefix(h, "/"):
		return "must be an absolute path"
	case path.Clean(h) != h:
		return fmt.Sprintf("must be a clean path (%s), without '..', '.' or repeated or trailing '/'", path.Clean(h))
	case h == "/":
		return "must not be the root directory"
	case strings.ContainsAny(h, ",\x00"):
		return "must not contain ',' or NUL"
	}
	return ""
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParseCaps parses a comma-separated capability list (FlagCaps) into
// canonical, sorted, unique names.
func ParseCaps(s string) ([]string, error) {
	var out []string
	for _, c := range split(s) {
		cc, ok := CanonicalCap(c)
		if !ok {
			return nil, fmt.Errorf("capability %q is not a Linux capability (e.g. NET_ADMIN): %w", c, ErrInvalid)
		}
		out = append(out, cc)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParseHostPaths parses a comma-separated list of absolute, clean host
// directories (FlagHostPaths).
func ParseHostPaths(s string) ([]string, error) {
	var out []string
	for _, p := range split(s) {
		if p != "/" {
			if why := ValidHostPath(p); why != "" {
				return nil, fmt.Errorf("host path %q %s: %w", p, why, ErrInvalid)
			}
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParseImages parses a comma-separated list of image patterns
// (FlagImages).
func ParseImages(s string) ([]string, error) {
	out := split(s)
	for _, p := range out {
		if strings.ContainsAny(p, " \t\x00") {
			return nil, fmt.Errorf("image pattern %q must not contain spaces or NUL: %w", p, ErrInvalid)
		}
	}
	return out, nil
}

// Meta returns p as Consul service meta (keys absent for what p does not
// widen), or an error when a value is longer than Consul allows.
func (p Policy) Meta() (map[string]string, error) {
	m := map[string]string{}
	if p.Privileged {
		m[MetaPrivileged] = "true"
	}
	for k, l := range map[string][]string{MetaCaps: p.Caps, MetaHostPaths: p.HostPaths, MetaImages: p.Images} {
		if len(l) == 0 {
			continue
		}
		v := strings.Join(l, ",")
		if len(v) > MaxMetaValue {
			return nil, fmt.Errorf("%s: %d characters, Consul meta holds at most %d: %w", k, len(v), MaxMetaValue, ErrInvalid)
		}
		m[k] = v
	}
	return m, nil
}

// FromMeta reads a policy from a node agent's Consul service meta.
func FromMeta(meta map[string]string) (Policy, error) {
	var p Policy
	var err error
	if v, ok := meta[MetaPrivileged]; ok {
		if p.Privileged, err = strconv.ParseBool(v); err != nil {
			return Policy{}, fmt.Errorf("meta %s=%q: %w", MetaPrivileged, v, ErrInvalid)
		}
	}
	if p.Caps, err = ParseCaps(meta[MetaCaps]); err != nil {
		return Policy{}, fmt.Errorf("meta %s: %w", MetaCaps, err)
	}
	if p.HostPaths, err = ParseHostPaths(meta[MetaHostPaths]); err != nil {
		return Policy{}, fmt.Errorf("meta %s: %w", MetaHostPaths, err)
	}
	if p.Images, err = ParseImages(meta[MetaImages]); err != nil {
		return Policy{}, fmt.Errorf("meta %s: %w", MetaImages, err)
	}
	return p, nil
}
