package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"slipway.dev/platform/specrules"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Secrets prints secrets or configs: name, latest version, its digest and
// size, the services mounting it. Values are never known to slipctl.
func Secrets(w io.Writer, ss []*deployv1.Secret) error {
	tw := table(w)
	row(tw, "NAME", "VERSION", "DIGEST", "SIZE", "KEY", "UPDATED", "SERVICES", "USED BY")
	for _, s := range ss {
		vs := s.GetVersions()
		var last *deployv1.SecretVersion
		if len(vs) > 0 {
			last = vs[len(vs)-1]
		}
		row(tw, s.GetName(), strconv.FormatUint(s.GetVersion(), 10), shortDigest(last.GetDigest()),
			fmt.Sprintf("%dB", last.GetSize()), last.GetKeyId(), Time(last.GetCreatedAt()), orNone(strings.Join(s.GetServices(), ",")), strings.Join(s.GetUsedBy(), ","))
	}
	return tw.Flush()
}

// Secret prints one secret or config with every version.
func Secret(w io.Writer, s *deployv1.Secret) error {
	kind := "secret"
	if s.GetKind() == deployv1.SecretKind_SECRET_KIND_CONFIG {
		kind = "config"
	}
	fmt.Fprintf(w, "%s %s, version %d, used by: %s\n", kind, s.GetName(), s.GetVersion(), orNone(strings.Join(s.GetUsedBy(), ", ")))
	fmt.Fprintf(w, "may be mounted by: %s\n", scope(s.GetServices()))
	var outside []string
	for _, u := range s.GetUsedBy() {
		if !specrules.MatchServiceGlobs(s.GetServices(), u) {
			outside = append(outside, u)
		}
	}
	if len(outside) > 0 {
		fmt.Fprintf(w, "outside its scope: %s (their releases keep the pinned version; their next deploy is refused)\n", strings.Join(outside, ", "))
	}
	tw := table(w)
	row(tw, "VERSION", "DIGEST", "SIZE", "KEY", "CREATED", "BY")
	for _, v := range s.GetVersions() {
		row(tw, strconv.FormatUint(v.GetVersion(), 10), v.GetDigest(), fmt.Sprintf("%dB", v.GetSize()), v.GetKeyId(), Time(v.GetCreatedAt()), v.GetCreatedBy())
	}
	return tw.Flush()
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// scope renders a secret's service globs.
func scope(globs []string) string {
	if len(globs) == 0 {
		return "no service (an admin allows some with update --service)"
	}
	return strings.Join(globs, ", ")
}
