package specrules

import (
	"strings"
	"testing"
)

func TestSecretScope(t *testing.T) {
	for _, tc := range []struct {
		globs   []string
		service string
		want    string // "" allowed, else a part of the description
	}{
		{[]string{"shop", "shop-*"}, "shop", ""},
		{[]string{"shop", "shop-*"}, "shop-eu", ""},
		{[]string{"*"}, "anything", ""},
		{[]string{"shop", "shop-*"}, "web", `it allows shop, shop-* (an admin allows it with 'slipctl secret update db --service shop --service 'shop-*' --service web')`},
		{nil, "web", "it allows no service"},
		{[]string{"[bad"}, "web", "it allows [bad"},
	} {
		got := SecretScope("secret", "db", tc.globs, tc.service)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("SecretScope(%v, %s) = %q, want %q", tc.globs, tc.service, got, tc.want)
		}
	}
	if got := ScopeText([]string{"web", "*"}); got != "every service (*)" {
		t.Errorf("ScopeText with * = %q", got)
	}
}
