package latency

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestIndexBucketsContainTheirLatency(t *testing.T) {
	for _, d := range []time.Duration{0, 99 * time.Microsecond, Min, Min + 1, time.Millisecond, 12345 * time.Microsecond, time.Second, 7 * time.Second, Max - 1, Max, time.Hour} {
		i := Index(d)
		if i < 0 || i >= Buckets {
			t.Fatalf("Index(%s) = %d, out of range", d, i)
		}
		if i < Buckets-1 && !(Lower(i) <= d && d < Upper(i)) {
			t.Errorf("Index(%s) = %d, bucket [%s, %s) does not hold it", d, i, Lower(i), Upper(i))
		}
		if i == Buckets-1 && d < Max {
			t.Errorf("Index(%s) is the overflow bucket, below Max %s", d, Max)
		}
	}
	for i := 1; i < Buckets-1; i++ {
		if Index(Lower(i)) != i {
			t.Errorf("Index(Lower(%d)=%s) = %d", i, Lower(i), Index(Lower(i)))
		}
	}
}

func TestQuantileWithinBucketWidth(t *testing.T) {
	// 10,000 latencies uniform in 1ms..101ms: p50 51ms, p99 100ms.
	var h Histogram
	for i := 0; i < 10000; i++ {
		h.Add(time.Millisecond + time.Duration(i)*10*time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 51 * time.Millisecond}, {0.99, 100 * time.Millisecond}, {0.1, 11 * time.Millisecond}} {
		got := h.Quantile(c.q)
		if rel := math.Abs(float64(got-c.want)) / float64(c.want); rel > 0.05 {
			t.Errorf("Quantile(%v) = %s, want %s within 5%% (off %.1f%%)", c.q, got, c.want, 100*rel)
		}
	}
	if (Histogram{}).Quantile(0.99) != 0 {
		t.Error("an empty histogram's quantile is not 0")
	}
}

func TestMergeAddsAndEncodeRoundTrips(t *testing.T) {
	var a, b Histogram
	a.Add(2 * time.Millisecond)
	a.Add(3 * time.Millisecond)
	b.Add(2 * time.Millisecond)
	b.Add(time.Second)
	a.Merge(b)
	if a.Total() != 4 || a.Counts[Index(2*time.Millisecond)] != 2 {
		t.Fatalf("merged: total %d, 2ms bucket %d; want 4 and 2", a.Total(), a.Counts[Index(2*time.Millisecond)])
	}
	off, counts := a.Encode()
	if int(off) != Index(2*time.Millisecond) || len(counts) != Index(time.Second)-int(off)+1 {
		t.Fatalf("Encode: offset %d, %d counts", off, len(counts))
	}
	back, err := Decode(Schema, off, counts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, back); diff != "" {
		t.Errorf("Decode(Encode) differs (-want +got):\n%s", diff)
	}
	if _, err := Decode(Schema+1, off, counts); err == nil {
		t.Error("Decode accepted another schema")
	}
	if _, err := Decode(Schema, Buckets-1, []uint64{1, 2}); err == nil {
		t.Error("Decode accepted counts past the last bucket")
	}
	if h, err := Decode(0, 0, nil); err != nil || h.Total() != 0 {
		t.Errorf("Decode of nothing: %v, %v", h, err)
	}
}
