package specrules

import (
	"fmt"
	"path"
	"strings"
)

// MatchServiceGlobs reports whether one of globs (path.Match syntax: "web",
// "web-*", "*") matches service. A malformed glob matches nothing. Token
// scopes and secret scopes are matched with it.
func MatchServiceGlobs(globs []string, service string) bool {
	for _, g := range globs {
		if ok, err := path.Match(g, service); err == nil && ok {
			return true
		}
	}
	return false
}

// ScopeText renders a secret's scope for messages: "no service", "every
// service (*)" or the globs.
func ScopeText(globs []string) string {
	switch {
	case len(globs) == 0:
		return "no service"
	case containsStar(globs):
		return "every service (*)"
	}
	return strings.Join(globs, ", ")
}

func containsStar(globs []string) bool {
	for _, g := range globs {
		if g == "*" {
			return true
		}
	}
	return false
}

// SecretScope describes why the secret or config (kind "secret" or
// "config") name, scoped to globs, may not be mounted by service, with
// the command that would allow it; "" when it may.
func SecretScope(kind, name string, globs []string, service string) string {
	if MatchServiceGlobs(globs, service) {
		return ""
	}
	var flags []string
	for _, g := range append(append([]string(nil), globs...), service) {
		if strings.ContainsAny(g, "*?[]\\") {
			g = "'" + g + "'"
		}
		flags = append(flags, "--service "+g)
	}
	return fmt.Sprintf("%s %q may not be mounted by service %q: it allows %s (an admin allows it with 'slipctl %s update %s %s')",
		kind, name, service, ScopeText(globs), kind, name, strings.Join(flags, " "))
}
