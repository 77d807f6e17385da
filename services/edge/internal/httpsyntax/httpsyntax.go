// Package httpsyntax holds the HTTP/1.1 field syntax checks shared by the
// edge's lean client (h1client), lean server (h1server) and the proxy's
// header rewriting, written to give the same verdicts as net/http's.
// Field-name and field-value validity come from golang.org/x/net's httpguts,
// the code net/http itself uses.
package httpsyntax

import "golang.org/x/net/http/httpguts"

// ValidFieldName reports whether k is an RFC 9110 token (net/http's rule).
func ValidFieldName(k string) bool { return httpguts.ValidHeaderFieldName(k) }

// ValidFieldValue reports whether v has no control byte but HTAB (net/http's
// rule for received values).
func ValidFieldValue(v string) bool { return httpguts.ValidHeaderFieldValue(v) }

// HasCTL reports whether s has an ASCII control byte or DEL.
func HasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// EqualFoldASCII reports whether a and b are equal under ASCII case folding
// only (strings.EqualFold also folds Unicode, which HTTP does not).
func EqualFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// IsCanonicalKey reports whether k (a valid field name) is already in
// textproto.CanonicalMIMEHeaderKey's form, so it can be used as a map key
// without the allocation of canonicalising it.
func IsCanonicalKey(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}
