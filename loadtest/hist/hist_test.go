package hist

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestIndexLowerRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 31, 32, 33, 63, 64, 100, 1000, 123456789, 1 << 40, 1<<62 + 12345} {
		i := index(v)
		if lo, hi := lower(i), lower(i+1); v < lo || v >= hi {
			t.Errorf("value %d in bucket %d = [%d,%d)", v, i, lo, hi)
		}
		if i >= buckets {
			t.Errorf("value %d: bucket %d out of range", v, i)
		}
	}
}

func TestQuantilesAgainstSorted(t *testing.T) {
	tests := []struct {
		name string
		gen  func(r *rand.Rand) time.Duration
	}{
		{"uniform 0-10ms", func(r *rand.Rand) time.Duration { return time.Duration(r.Int64N(int64(10 * time.Millisecond))) }},
		{"exponential 200us", func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * 200e3) }},
		{"bimodal", func(r *rand.Rand) time.Duration {
			if r.IntN(10) == 0 {
				return 50*time.Millisecond + time.Duration(r.Int64N(1e6))
			}
			return 100*time.Microsecond + time.Duration(r.Int64N(1e4))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var h Histogram
			vals := make([]time.Duration, 20000)
			for i := range vals {
				vals[i] = tt.gen(r)
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.5, 0.95, 0.99, 1} {
				want := vals[int(q*float64(len(vals)))-1]
				got := h.Quantile(q)
				if diff := float64(got-want) / float64(want); diff > 0.04 || diff < -0.04 {
					t.Errorf("q%.2f = %v, exact %v (%.1f%% off)", q, got, want, diff*100)
				}
			}
			if h.Max() != vals[len(vals)-1] {
				t.Errorf("max %v, want %v", h.Max(), vals[len(vals)-1])
			}
		})
	}
}

func TestMergeAndBuckets(t *testing.T) {
	var a, b Histogram
	for i := range 1000 {
		a.Record(time.Duration(i) * time.Microsecond)
		b.Record(time.Duration(i) * time.Millisecond)
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	if m.Count() != 2000 || m.Max() != 999*time.Millisecond {
		t.Fatalf("merged count %d max %v", m.Count(), m.Max())
	}
	rebuilt := FromBuckets(m.Buckets())
	if rebuilt.Count() != m.Count() {
		t.Fatalf("rebuilt count %d, want %d", rebuilt.Count(), m.Count())
	}
	for _, q := range []float64{0.25, 0.5, 0.9, 0.99} {
		if got, want := rebuilt.Quantile(q), m.Quantile(q); got != want {
			t.Errorf("rebuilt q%.2f = %v, want %v", q, got, want)
		}
	}
}

func TestEmpty(t *testing.T) {
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Max() != 0 || h.Mean() != 0 || len(h.Buckets()) != 0 {
		t.Fatal("empty histogram reports values")
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := range b.N {
		h.Record(time.Duration(i&0xfffff) * time.Nanosecond)
	}
}
