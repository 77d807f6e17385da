package spec

import "testing"

// BenchmarkValidate measures validating the canary spec every Deploy pays.
func BenchmarkValidate(b *testing.B) {
	s := valid()
	b.ReportAllocs()
	for b.Loop() {
		if vs := Validate(s); vs != nil {
			b.Fatal(vs)
		}
	}
}

// BenchmarkNormalize measures filling in the defaults of the same spec.
func BenchmarkNormalize(b *testing.B) {
	s := valid()
	b.ReportAllocs()
	for b.Loop() {
		_ = Normalize(s)
	}
}
