package analysis

import (
	"fmt"
	"net/url"
	"strings"
)

// Allowlist bounds the URLs a spec's analysis gates (webhooks, Prometheus
// servers) and update hooks may reach, so that a deploy token cannot make the leader send requests
// anywhere it can reach: each entry is an http(s) URL prefix whose scheme
// and host (with port) must match exactly and whose path must be a prefix
// of the gate's path ("https://ci.example.com/gates/" allows
// https://ci.example.com/gates/canary, not https://ci.example.com.evil/ or
// https://ci.example.com/admin). The empty list allows every URL.
type Allowlist []string

// ParseAllowlist reads a comma-separated list of URL prefixes (the
// coordinator's -analysis-gate-allow), refusing one that is not an absolute
// http or https URL.
func ParseAllowlist(s string) (Allowlist, error) {
	var out Allowlist
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("%q is not an http or https URL prefix (scheme://host[:port][/path])", e)
		}
		out = append(out, e)
	}
	return out, nil
}

// Allows reports whether raw may be asked.
func (l Allowlist) Allows(raw string) bool {
	if len(l) == 0 {
		return true
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil {
		return false
	}
	for _, e := range l {
		p, err := url.Parse(e)
		if err != nil {
			continue
		}
		if strings.EqualFold(p.Scheme, u.Scheme) && strings.EqualFold(p.Host, u.Host) && strings.HasPrefix(u.EscapedPath(), p.EscapedPath()) {
			if path := p.EscapedPath(); path == "" || strings.HasSuffix(path, "/") || len(u.EscapedPath()) == len(path) || u.EscapedPath()[len(path)] == '/' {
				return true
			}
		}
	}
	return false
}

// Refused is the gate a URL outside the allowlist answers with: failed,
// never asked.
func Refused(kind, name string) Gate {
	return Gate{Kind: kind, Name: name, Passed: false, Detail: "not asked: its URL is outside the coordinator's -analysis-gate-allow"}
}
