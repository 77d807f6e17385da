package docker

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestCredentials(t *testing.T) {
	file := `{"auths": {
		"https://index.docker.io/v1/": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("hub:pw:with:colons")) + `"},
		"127.0.0.1:5000": {"username": "ci", "password": "s3cret"},
		"https://Registry.Example:8443/v2/": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("r:x")) + `"}
	}}`
	c, err := ParseCredentials([]byte(file), "auth.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref, host, user, pass string
		ok                    bool
	}{
		{"nginx", "docker.io", "hub", "pw:with:colons", true},
		{"slipway/demo:v1", "docker.io", "hub", "pw:with:colons", true},
		{"127.0.0.1:5000/slipway/demo:v1", "127.0.0.1:5000", "ci", "s3cret", true},
		{"registry.example:8443/team/app@sha256:" + strings.Repeat("a", 64), "registry.example:8443", "r", "x", true},
		{"other.example/app:v1", "other.example", "", "", false},
	} {
		host, ac, ok := c.For(tc.ref)
		if host != tc.host || ok != tc.ok || ac.Username != tc.user || ac.Password != tc.pass {
			t.Errorf("For(%q) = %q %q:%q %v, want %q %q:%q %v", tc.ref, host, ac.Username, ac.Password, ok, tc.host, tc.user, tc.pass, tc.ok)
		}
	}
	var none *Credentials
	if host, _, ok := none.For("127.0.0.1:5000/a"); ok || host != "127.0.0.1:5000" {
		t.Errorf("nil credentials: %q %v", host, ok)
	}
	for _, bad := range []string{`[1]`, `{"auths": {"r": {"auth": "%%%"}}}`, `{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}`, `{"auths": {"r": {}}}`} {
		if _, err := ParseCredentials([]byte(bad), "auth.json"); err == nil || !strings.Contains(err.Error(), "auth.json") {
			t.Errorf("ParseCredentials(%s) = %v, want an error naming the file", bad, err)
		}
	}
}
