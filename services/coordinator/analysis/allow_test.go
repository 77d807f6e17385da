package analysis

import "testing"

func TestAllowlist(t *testing.T) {
	l, err := ParseAllowlist(" https://ci.example.com/gates/, http://127.0.0.1:9090 ,")
	if err != nil || len(l) != 2 {
		t.Fatalf("ParseAllowlist: %v %v", l, err)
	}
	for url, want := range map[string]bool{
		"https://ci.example.com/gates/canary":     true,
		"https://CI.example.com/gates/x?y=1":      true,
		"https://ci.example.com/admin":            false,
		"http://ci.example.com/gates/canary":      false, // scheme
		"https://ci.example.com.evil/gates/":      false, // host
		"https://ci.example.com:8443/gates/":      false, // port
		"https://user@ci.example.com/gates/":      false,
		"http://127.0.0.1:9090":                   true,
		"http://127.0.0.1:9090/api/v1/query":      true,
		"http://127.0.0.1:90900/":                 false,
		"http://127.0.0.1/":                       false,
		"http://169.254.169.254/latest/meta-data": false,
	} {
		if got := l.Allows(url); got != want {
			t.Errorf("Allows(%q) = %v, want %v", url, got, want)
		}
	}
	prefix, _ := ParseAllowlist("https://ci.example.com/gate")
	if !prefix.Allows("https://ci.example.com/gate/a") || prefix.Allows("https://ci.example.com/gatekeeper") {
		t.Error("a path prefix without a trailing slash must end at a segment")
	}
	if !(Allowlist{}).Allows("http://anything/") {
		t.Error("the empty list allows every URL")
	}
	for _, bad := range []string{"ftp://x/", "ci.example.com", "https://x/?q=1", "https://u@x/"} {
		if _, err := ParseAllowlist(bad); err == nil {
			t.Errorf("ParseAllowlist(%q) accepted", bad)
		}
	}
}
