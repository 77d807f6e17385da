package httpsyntax

import (
	"net/textproto"
	"strings"
	"testing"
)

// FuzzSyntax holds the helpers to the standard library's answers: a valid
// name is canonical exactly when textproto would leave it unchanged, and
// ASCII folding agrees with strings.EqualFold on ASCII input.
func FuzzSyntax(f *testing.F) {
	for _, s := range []string{"Content-Length", "content-length", "X-A", "x-a", "A-", "-a", "Www-Authenticate", "K\u212a"} {
		f.Add(s, strings.ToUpper(s))
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if ValidFieldName(a) {
			if got, want := IsCanonicalKey(a), textproto.CanonicalMIMEHeaderKey(a) == a; got != want {
				t.Fatalf("IsCanonicalKey(%q) = %v, textproto says %v", a, got, want)
			}
		}
		ascii := func(s string) bool {
			for i := 0; i < len(s); i++ {
				if s[i] >= 0x80 {
					return false
				}
			}
			return true
		}
		if ascii(a) && ascii(b) {
			if got, want := EqualFoldASCII(a, b), strings.EqualFold(a, b); got != want {
				t.Fatalf("EqualFoldASCII(%q, %q) = %v, strings.EqualFold %v", a, b, got, want)
			}
		}
		if HasCTL(a) == ValidFieldValue(a) && !strings.Contains(a, "\t") {
			t.Fatalf("HasCTL(%q) = %v but ValidFieldValue = %v", a, HasCTL(a), ValidFieldValue(a))
		}
	})
}
