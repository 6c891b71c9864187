// Package hist is a log-linear latency histogram: constant memory, no allocation
// per record, about 3% relative precision, mergeable. Each goroutine of the load
// generator records into its own Histogram and the results are merged at the end,
// so recording needs no lock.
package hist

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the precision: 2^subBits linear sub-buckets per power of two.
const subBits = 5

const subCount = 1 << subBits

// buckets covers 0 .. 2^63 ns.
const buckets = (64 - subBits + 1) * subCount

// Histogram counts durations. The zero value is ready to use.
type Histogram struct {
	counts [buckets]uint64
	n      uint64
	sum    float64
	min    time.Duration
	max    time.Duration
}

// index maps a non-negative value to its bucket.
func index(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*subCount + int(v>>uint(shift)) - subCount
}

// lower is the smallest value that falls in bucket i.
func lower(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	return uint64(i%subCount+subCount) << uint(shift)
}

// Record adds one duration (negative durations count as zero).
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[index(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += float64(d)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value (exact).
func (h *Histogram) Max() time.Duration { return h.max }

// Mean is the average recorded value (exact).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value below which a fraction q of the records fall: the
// midpoint of the bucket holding that rank, clamped to the exact min and max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := lower(i), lower(i+1)
			v := time.Duration(lo + (hi-lo)/2)
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Bucket is one non-empty histogram bucket: values in [Lower, Upper) nanoseconds.
type Bucket struct {
	Lower uint64 `json:"lower_ns"`
	Upper uint64 `json:"upper_ns"`
	Count uint64 `json:"count"`
}

// Buckets lists the non-empty buckets in ascending order (for reports).
func (h *Histogram) Buckets() []Bucket {
	var out []Bucket
	for i, c := range h.counts {
		if c > 0 {
			out = append(out, Bucket{Lower: lower(i), Upper: lower(i + 1), Count: c})
		}
	}
	return out
}

// FromBuckets rebuilds a histogram from its bucket list (min and max become the
// bucket bounds).
func FromBuckets(bs []Bucket) *Histogram {
	h := new(Histogram)
	for _, b := range bs {
		if b.Count == 0 {
			continue
		}
		i := index(b.Lower)
		h.counts[i] += b.Count
		lo, hi := time.Duration(b.Lower), time.Duration(b.Upper-1)
		if h.n == 0 || lo < h.min {
			h.min = lo
		}
		h.max = max(h.max, hi)
		h.n += b.Count
		h.sum += float64(b.Count) * float64(b.Lower+(b.Upper-b.Lower)/2)
	}
	return h
}
