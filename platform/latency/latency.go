// Package latency is a mergeable latency histogram with fixed logarithmic
// buckets, shared by the edges that fill it and the coordinator that merges
// and judges it.
//
// Bucket 0 holds latencies below Min; bucket i (1 <= i < Buckets-1) holds
// [Min*2^((i-1)/PerOctave), Min*2^(i/PerOctave)); the last bucket holds
// everything from Max on. With PerOctave 8 a bucket is about 9% wide, so a
// quantile read from the histogram is within about 4.5% of the true value
// between Min and Max. Two histograms merge by adding their counts, so
// summaries from any number of edges and windows combine exactly.
package latency

import (
	"fmt"
	"math"
	"time"
)

// Layout of the buckets. Schema names it on the wire; a histogram of another
// schema is refused rather than misread.
const (
	// Schema identifies this bucket layout.
	Schema = 1
	// Min is the lower edge of the first finite bucket.
	Min = 100 * time.Microsecond
	// PerOctave is the number of buckets per doubling.
	PerOctave = 8
	// Octaves is how many doublings the finite buckets span (100µs to
	// about 105s).
	Octaves = 20
	// Buckets is the number of buckets: underflow, finite, overflow.
	Buckets = PerOctave*Octaves + 2
)

// Max is the lower edge of the overflow bucket.
var Max = Upper(Buckets - 2)

// Index is the bucket of latency d.
func Index(d time.Duration) int {
	if d < Min {
		return 0
	}
	i := int(math.Floor(PerOctave*math.Log2(float64(d)/float64(Min)))) + 1
	// Guard against rounding at exact bucket edges.
	if i > 1 && d < Lower(i) {
		i--
	} else if i < Buckets-1 && d >= Upper(i) {
		i++
	}
	if i > Buckets-1 {
		return Buckets - 1
	}
	return i
}

// Lower is the lower edge of bucket i (0 for the underflow bucket).
func Lower(i int) time.Duration {
	if i <= 0 {
		return 0
	}
	return time.Duration(float64(Min) * math.Exp2(float64(i-1)/PerOctave))
}

// Upper is the upper edge of bucket i (for the overflow bucket, its lower
// edge doubled: a finite stand-in).
func Upper(i int) time.Duration {
	if i >= Buckets-1 {
		return 2 * Lower(Buckets-1)
	}
	return time.Duration(float64(Min) * math.Exp2(float64(i)/PerOctave))
}

// Histogram counts latencies per bucket. The zero value is empty and ready;
// it is a plain value (not safe for concurrent use: the edge counts into
// atomics and snapshots into a Histogram).
type Histogram struct {
	// Counts has Buckets entries, or none while empty.
	Counts []uint64
}

// Add counts one latency.
func (h *Histogram) Add(d time.Duration) { h.AddN(Index(d), 1) }

// AddN adds n to bucket i.
func (h *Histogram) AddN(i int, n uint64) {
	if n == 0 {
		return
	}
	if h.Counts == nil {
		h.Counts = make([]uint64, Buckets)
	}
	h.Counts[i] += n
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o Histogram) {
	for i, n := range o.Counts {
		h.AddN(i, n)
	}
}

// Total is the number of latencies counted.
func (h Histogram) Total() uint64 {
	var t uint64
	for _, n := range h.Counts {
		t += n
	}
	return t
}

// Quantile estimates the q-quantile (0 <= q <= 1), interpolating linearly
// inside the bucket it falls in; 0 for an empty histogram.
func (h Histogram) Quantile(q float64) time.Duration {
	total := h.Total()
	if total == 0 {
		return 0
	}
	q = math.Max(0, math.Min(1, q))
	rank := q * float64(total)
	var seen float64
	for i, n := range h.Counts {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo, hi := float64(Lower(i)), float64(Upper(i))
			frac := (rank - seen) / float64(n)
			return time.Duration(lo + frac*(hi-lo))
		}
		seen += float64(n)
	}
	return Upper(Buckets - 1)
}

// Encode returns the counts in the wire form: the index of the first
// non-empty bucket and the counts from there to the last non-empty one.
func (h Histogram) Encode() (offset uint32, counts []uint64) {
	first, last := -1, -1
	for i, n := range h.Counts {
		if n != 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return 0, nil
	}
	return uint32(first), append([]uint64(nil), h.Counts[first:last+1]...)
}

// Decode is the inverse of Encode; it refuses another schema and counts that
// run past the last bucket.
func Decode(schema, offset uint32, counts []uint64) (Histogram, error) {
	if len(counts) == 0 {
		return Histogram{}, nil
	}
	if schema != Schema {
		return Histogram{}, fmt.Errorf("latency: histogram schema %d, want %d", schema, Schema)
	}
	if int(offset)+len(counts) > Buckets {
		return Histogram{}, fmt.Errorf("latency: %d counts from bucket %d run past the last bucket (%d)", len(counts), offset, Buckets-1)
	}
	var h Histogram
	for i, n := range counts {
		h.AddN(int(offset)+i, n)
	}
	return h, nil
}
