// Package histogram defines the latency histograms the data path keeps:
// buckets that are exactly those of a Prometheus native histogram of schema
// 3 (eight buckets per power of two, relative error at most 2^(1/16)-1 ≈
// 4.4 %), so the kernel's counts are exposed as native buckets without
// re-binning, and merge across nodes by adding.
//
// The kernel measures durations in integer nanoseconds. Native bucket i
// holds durations in (2^((i-1)/8), 2^(i/8)] seconds. A boundary in
// nanoseconds, 1e9·2^(i/8), is irrational, but for an integer duration d,
// d ≤ 1e9·2^(i/8) exactly when d ≤ floor(1e9·2^(i/8)); the data path compares
// against those floors (Bounds), computed here to 256 bits, so every
// duration lands in exactly the bucket Prometheus would put it in.
package histogram

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"sync"
	"time"
)

const (
	// Schema is the Prometheus native histogram schema of the buckets.
	Schema = 3
	// MinIndex is the lowest native bucket kept: (2^(-161/8), 2^(-160/8)]
	// seconds, about (0.92 µs, 0.95 µs]. Shorter durations go to the zero
	// bucket (ZeroThreshold).
	MinIndex = -160
	// MaxIndex is the highest native bucket kept: up to 2^(64/8) = 256 s.
	// Longer durations are counted in it (the data path clamps).
	MaxIndex = 64
	// Buckets is the number of native buckets kept, MinIndex..MaxIndex.
	Buckets = MaxIndex - MinIndex + 1
)

// ZeroThreshold is the upper bound of the zero bucket, in seconds: the
// lower bound of bucket MinIndex.
var ZeroThreshold = math.Exp2(float64(MinIndex-1) / (1 << Schema))

// UpperBound returns the upper bound of native bucket i in seconds.
func UpperBound(i int) float64 { return math.Exp2(float64(i) / (1 << Schema)) }

// boundNs returns floor(1e9 · 2^(i/8)) exactly.
func boundNs(i int) uint64 {
	const prec = 256
	// 2^(i/8) = 2^q · 2^(r/8) with 0 <= r < 8.
	q, r := i>>Schema, i&(1<<Schema-1)
	root := new(big.Float).SetPrec(prec).SetInt64(2)
	for range Schema {
		root.Sqrt(root) // 2^(1/8) after three square roots
	}
	x := new(big.Float).SetPrec(prec).SetInt64(1_000_000_000)
	for range r {
		x.Mul(x, root)
	}
	x.SetMantExp(x, q)
	n, _ := x.Int(nil) // truncates toward zero: the floor, x > 0
	return n.Uint64()
}

// Bounds returns the comparison thresholds the data path uses, in
// nanoseconds: Bounds()[0] is the zero bucket's upper bound (bucket
// MinIndex-1's), then one per bucket MinIndex..MaxIndex. A duration d goes
// to the first bucket whose bound is >= d.
func Bounds() []uint64 {
	out := make([]uint64, 0, Buckets+1)
	for i := MinIndex - 1; i <= MaxIndex; i++ {
		out = append(out, boundNs(i))
	}
	return out
}

// Histogram is one latency histogram as the kernel keeps it.
type Histogram struct {
	// Zero counts durations at or below ZeroThreshold.
	Zero uint64
	// Counts[k] counts durations in native bucket MinIndex+k.
	Counts [Buckets]uint64
	// Sum is the sum of all durations.
	Sum time.Duration
}

// Count is the number of durations, the sum of all buckets.
func (h *Histogram) Count() uint64 {
	n := h.Zero
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Add adds o's counts to h: histograms of nodes or windows merge this way.
func (h *Histogram) Add(o *Histogram) {
	h.Zero += o.Zero
	for k := range h.Counts {
		h.Counts[k] += o.Counts[k]
	}
	h.Sum += o.Sum
}

// Sub returns h - o, the counts of a window between two cumulative reads.
func (h *Histogram) Sub(o *Histogram) Histogram {
	d := Histogram{Zero: h.Zero - o.Zero, Sum: h.Sum - o.Sum}
	for k := range h.Counts {
		d.Counts[k] = h.Counts[k] - o.Counts[k]
	}
	return d
}

// Quantile estimates the q-quantile (0 < q <= 1) as the geometric middle of
// the bucket that holds it: within 2^(1/16)-1 ≈ 4.4 % of the true value,
// the schema's relative error bound. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	i, ok := h.quantileBucket(q)
	if !ok {
		return 0
	}
	if i < MinIndex {
		return secondsToDuration(ZeroThreshold / 2)
	}
	return secondsToDuration(UpperBound(i) * math.Exp2(-1.0/(2<<Schema)))
}

// UpperQuantile returns the upper bound of the bucket holding the
// q-quantile: never below the true value, at most 2^(1/8) (9 %) above.
func (h *Histogram) UpperQuantile(q float64) time.Duration {
	i, ok := h.quantileBucket(q)
	if !ok {
		return 0
	}
	if i < MinIndex {
		return secondsToDuration(ZeroThreshold)
	}
	return secondsToDuration(UpperBound(i))
}

// quantileBucket returns the native index of the bucket holding the
// q-quantile (MinIndex-1 for the zero bucket).
func (h *Histogram) quantileBucket(q float64) (int, bool) {
	total := h.Count()
	if total == 0 {
		return 0, false
	}
	rank := uint64(math.Ceil(q * float64(total)))
	if rank == 0 {
		rank = 1
	}
	seen := h.Zero
	if seen >= rank {
		return MinIndex - 1, true
	}
	for k, c := range h.Counts {
		seen += c
		if seen >= rank {
			return MinIndex + k, true
		}
	}
	return MaxIndex, true
}

// NativeBuckets returns the non-empty buckets keyed by native bucket index,
// as client_golang's constant native histograms take them.
func (h *Histogram) NativeBuckets() map[int]int64 {
	out := make(map[int]int64)
	for k, c := range h.Counts {
		if c > 0 {
			out[MinIndex+k] = int64(c)
		}
	}
	return out
}

// CountAtOrBelow returns how many durations are at or below the upper bound
// of native bucket i (exact: a classic bucket with le = UpperBound(i)).
func (h *Histogram) CountAtOrBelow(i int) uint64 {
	n := h.Zero
	for k := 0; k < Buckets && MinIndex+k <= i; k++ {
		n += h.Counts[k]
	}
	return n
}

func secondsToDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// CHeader returns the C header with the bounds, for bpf/include. The array
// is padded to a power of two with bounds no duration reaches, so the data
// path's binary search needs no bounds checks.
func CHeader() string {
	b := Bounds()
	size := 1
	for size < len(b) {
		size <<= 1
	}
	s := "/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */\n" +
		"/* Code generated by pkg/histogram/cmd/genbounds; DO NOT EDIT. */\n" +
		"/*\n * Latency histogram bucket bounds, in nanoseconds: floor(1e9 * 2^(i/8)) for\n" +
		fmt.Sprintf(" * native schema-%d bucket i = %d..%d; the first is the zero bucket's.\n", Schema, MinIndex-1, MaxIndex) +
		" * A duration d belongs to the first bucket whose bound is >= d.\n */\n#pragma once\n\n#include <linux/types.h>\n\n" +
		fmt.Sprintf("#define HIST_MIN_INDEX %d /* native index of bucket 1; bucket 0 is the zero bucket */\n", MinIndex) +
		fmt.Sprintf("#define HIST_BOUNDS %d /* zero bucket + %d native buckets */\n", len(b), Buckets) +
		fmt.Sprintf("#define HIST_BOUNDS_PADDED %d /* a power of two: the search's range */\n\n", size) +
		"static const __u64 hist_bounds[HIST_BOUNDS_PADDED] = {\n"
	for i := range size {
		v := uint64(1) << 62 // padding: above any duration measured
		if i < len(b) {
			v = b[i]
		}
		if i%4 == 0 {
			s += "\t"
		}
		s += fmt.Sprintf("%dULL,", v)
		if i%4 == 3 || i == size-1 {
			s += "\n"
		} else {
			s += " "
		}
	}
	return s + "};\n"
}

// bounds are Bounds, computed once: Observe searches them.
var bounds = sync.OnceValue(Bounds)

// Observe adds duration d as the data path adds one: to the first bucket
// whose bound is at least d (the zero bucket for the shortest), the
// highest for any longer than it (clamped, as the data path clamps), and
// d to the sum. Negative durations count as 0. For latencies measured in
// user space (the agent's L7 proxy) that must merge with the kernel's.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	b := bounds()
	ns := uint64(d)
	i, _ := slices.BinarySearch(b, ns)
	switch {
	case i == 0:
		h.Zero++
	case i >= len(b):
		h.Counts[Buckets-1]++
	default:
		h.Counts[i-1]++
	}
	h.Sum += d
}
