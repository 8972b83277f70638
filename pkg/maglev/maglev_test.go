package maglev

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// pool returns n backends of equal weight named "10.<set>.<i/256>.<i%256>:8080".
func pool(set, n int) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{Name: fmt.Sprintf("10.%d.%d.%d:8080", set, i/256, i%256)}
	}
	return bs
}

// build calls Build and fails the test on an error.
func build(t testing.TB, bs []Backend) [Size]uint8 {
	t.Helper()
	table, err := Build(bs)
	if err != nil {
		t.Fatalf("Build(%d backends): %v", len(bs), err)
	}
	return table
}

// owners returns, for every slot, the name of the backend that owns it.
func owners(t testing.TB, bs []Backend) []string {
	t.Helper()
	table := build(t, bs)
	names := make([]string, Size)
	for i, idx := range table {
		if int(idx) >= len(bs) {
			t.Fatalf("slot %d holds index %d; there are %d backends", i, idx, len(bs))
		}
		names[i] = bs[idx].Name
	}
	return names
}

// counts returns how many slots each backend owns, by input index.
func counts(t testing.TB, bs []Backend) []int {
	t.Helper()
	table := build(t, bs)
	c := make([]int, len(bs))
	for i, idx := range table {
		if int(idx) >= len(bs) {
			t.Fatalf("slot %d holds index %d; there are %d backends", i, idx, len(bs))
		}
		c[idx]++
	}
	return c
}

func TestSizeIsPrimeAndFitsEightKiB(t *testing.T) {
	for d := 2; d*d <= Size; d++ {
		if Size%d == 0 {
			t.Fatalf("Size %d is divisible by %d", Size, d)
		}
	}
	if Size > 8192 {
		t.Fatalf("Size %d: a table no longer fits in 8 KiB", Size)
	}
}

func TestMaxBackendsMatchesService(t *testing.T) {
	if MaxBackends != service.MaxBackendsPerPool {
		t.Fatalf("MaxBackends = %d, service.MaxBackendsPerPool = %d", MaxBackends, service.MaxBackendsPerPool)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name     string
		backends []Backend
		want     string // a part of the error
	}{
		{"nil", nil, "no backends"},
		{"empty", []Backend{}, "no backends"},
		{"too many", pool(1, MaxBackends+1), "257 backends; a table holds at most 256"},
		{"duplicate adjacent", []Backend{{Name: "a"}, {Name: "a", Weight: 2}}, `"a" is listed twice (at indices 0 and 1)`},
		{"duplicate apart", []Backend{{Name: "b"}, {Name: "c"}, {Name: "a"}, {Name: "b"}}, `"b" is listed twice (at indices 0 and 3)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.backends)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build: error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// With equal weights every round of the fill gives every backend one slot,
// so each backend owns ⌊Size/N⌋ or ⌈Size/N⌉ slots: less than one slot from
// Size/N. Observed largest deviation from Size/N, relative to Size/N:
// N=1 0 %, N=2 0.012 %, N=3 0.024 %, N=7 0.073 %, N=16 0.18 %, N=64 0.77 %,
// N=256 3.1 % (31 or 32 slots against 31.996). A 1 % bound thus holds up to
// N=64; at N=256 one slot is 3 % of a share, so the bound there is the
// absolute one of ±1 slot, which is the best any table of Size slots can do.
func TestBalanceEqualWeights(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 16, 64, 256} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := counts(t, pool(1, n))
			ideal := float64(Size) / float64(n)
			lo, hi := Size/n, (Size+n-1)/n
			for i, got := range c {
				if got < lo || got > hi {
					t.Errorf("backend %d owns %d slots, want %d..%d (Size/N = %.3f)", i, got, lo, hi, ideal)
				}
				if dev := math.Abs(float64(got)-ideal) / ideal; n <= 64 && dev > 0.01 {
					t.Errorf("backend %d owns %d slots, %.2f %% from Size/N = %.3f", i, got, 100*dev, ideal)
				}
			}
		})
	}
}

// Weights that are all equal give the same table whatever their value, and
// weight 0 counts as 1.
func TestEqualWeightsOfAnyValue(t *testing.T) {
	want := build(t, pool(2, 10))
	for _, w := range []uint32{0, 1, 7, 1 << 31, ^uint32(0)} {
		bs := pool(2, 10)
		for i := range bs {
			bs[i].Weight = w
		}
		if build(t, bs) != want {
			t.Errorf("all weights %d: table differs from all weights 1", w)
		}
	}
}

// Scaling every weight by the same factor gives the same table.
func TestWeightScaleInvariance(t *testing.T) {
	bs := pool(3, 3)
	for i := range bs {
		bs[i].Weight = uint32(i + 1)
	}
	want := build(t, bs)
	for i := range bs {
		bs[i].Weight *= 1000
	}
	if build(t, bs) != want {
		t.Error("weights 1000:2000:3000 give another table than 1:2:3")
	}
}

// Observed for weights 1:2:3: 1366, 2730, 4095 slots against exact shares
// of 1365.17, 2730.33, 4095.50, i.e. within 0.83 slots or 0.01 % of the
// flows. The test asserts the bound of Build's doc comment (2 slots above,
// 2·N·w/Σw slots below), here 3 slots (0.04 % of the flows) at most.
func TestBalanceWeighted(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
	}{
		{"1:2:3", []uint32{1, 2, 3}},
		{"3:2:1", []uint32{3, 2, 1}},
		{"0:1 is 1:1", []uint32{0, 1}},
		{"1:1:2", []uint32{1, 1, 2}},
		{"1:3", []uint32{1, 3}},
		{"9:10", []uint32{9, 10}},
		{"1:2:3:4:5:6:7:8:9:10", []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"max:1", []uint32{^uint32(0), 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := pool(4, len(tt.weights))
			for i, w := range tt.weights {
				bs[i].Weight = w
			}
			checkWeighted(t, bs, counts(t, bs))
		})
	}
}

// The bound of Build's doc comment holds for random pools.
func TestBalanceWeightedRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 50 {
		n := 1 + rng.IntN(MaxBackends)
		bs := pool(5, n)
		maxWeight := uint32(1) << rng.IntN(32)
		for i := range bs {
			bs[i].Weight = rng.Uint32N(maxWeight) + 1
		}
		t.Run(fmt.Sprintf("%d/n=%d/w<=%d", run, n, maxWeight), func(t *testing.T) {
			checkWeighted(t, bs, counts(t, bs))
		})
	}
}

// checkWeighted checks that every backend owns at least one slot and that
// its count c is within -2·N·w/Σw ≤ c - Size·w/Σw < 2 of its exact share.
func checkWeighted(t *testing.T, bs []Backend, c []int) {
	t.Helper()
	weight := func(b Backend) float64 { return float64(max(b.Weight, 1)) }
	var sum float64
	for _, b := range bs {
		sum += weight(b)
	}
	for i, b := range bs {
		exact := Size * weight(b) / sum
		dev := float64(c[i]) - exact
		below := 2 * float64(len(bs)) * weight(b) / sum
		if c[i] < 1 || dev >= 2 || dev < -below-1e-9 {
			t.Errorf("backend %d (weight %d) owns %d slots; exact share %.2f, want within -%.2f..+2",
				i, b.Weight, c[i], exact, below)
		}
	}
}

// changed compares the owners of each slot before and after a pool change
// and returns the fraction of slots that changed owner although their old
// owner is still in the pool and their new owner was already in it: the
// churn that minimal disruption keeps small. gone is the removed backend
// and added the added one (either may be "").
func changed(before, after []string, gone, added string) float64 {
	n := 0
	for i := range before {
		if before[i] != after[i] && before[i] != gone && after[i] != added {
			n++
		}
	}
	return float64(n) / Size
}

// Removing one of N backends must move that backend's ~1/N of the slots and
// should move few others. Churn among the surviving backends, in % of the
// slots, as measured while writing this test:
//
//	N     pools  removals  median  worst  this test (mean, worst)
//	10    300    3000      0.75    3.54   0.74, 1.44
//	64    300    3000      1.58    2.73   1.64, 2.84
//	256   20     200       1.73    2.15   1.67, 2.01
//
// The worst cases at small N are the ~0.5 % of pools of 10 in which two
// backends get the same skip (probability ≈ C(N,2)/(Size-1)): their
// preference lists are then shifts of each other and they fight over the
// same slots, so any change in the fill cascades. A per-removal bound of
// 2 % at N=10 would hold for this test's pools but not for those. Churn
// grows with N/Size; at N=256, where Size is only 32·N, it stays under
// about 2.2 %. The test asserts the mean below meanMax and every
// removal below worstMax, with margin over the figures above.
func TestDisruptionRemove(t *testing.T) {
	tests := []struct {
		n                 int
		pools, step       int // pools to try; remove every step-th backend
		meanMax, worstMax float64
	}{
		{n: 3, pools: 20, step: 1, meanMax: 0.005, worstMax: 0.02},
		{n: 10, pools: 20, step: 1, meanMax: 0.01, worstMax: 0.04},
		{n: 64, pools: 20, step: 7, meanMax: 0.02, worstMax: 0.04},
		{n: 256, pools: 4, step: 32, meanMax: 0.02, worstMax: 0.03},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			var sum, worst float64
			removals := 0
			for set := range tt.pools {
				bs := pool(100+set, tt.n)
				before := owners(t, bs)
				for k := 0; k < tt.n; k += tt.step {
					rest := slices.Delete(slices.Clone(bs), k, k+1)
					f := changed(before, owners(t, rest), bs[k].Name, "")
					sum += f
					worst = max(worst, f)
					removals++
				}
			}
			mean := sum / float64(removals)
			t.Logf("N=%d: %d removals, churn among surviving backends mean %.2f %%, worst %.2f %% (1/N = %.2f %%)",
				tt.n, removals, 100*mean, 100*worst, 100/float64(tt.n))
			if mean > tt.meanMax || worst > tt.worstMax {
				t.Errorf("churn mean %.2f %%, worst %.2f %%; want at most %.2f %% and %.2f %%",
					100*mean, 100*worst, 100*tt.meanMax, 100*tt.worstMax)
			}
		})
	}
}

// Adding a backend to N must give it 1/(N+1) of the slots, which change
// owner, and should move few others. Measured over 300 pools of 10: slots
// changed in all, median 9.9 % (1/11 = 9.1 %), worst 11.8 %; churn among the
// old backends median 0.8 %, worst 2.7 %. Over 300 pools of 64: churn median
// 1.6 %, worst 2.1 %. This test's pools: churn mean 0.21 % and worst 0.44 %
// at N=3, 0.84 % and 1.31 % at N=10, 1.65 % and 1.93 % at N=64, 1.71 % and
// 1.72 % at N=255. Bounds are as in TestDisruptionRemove.
func TestDisruptionAdd(t *testing.T) {
	tests := []struct {
		n                 int
		pools             int
		meanMax, worstMax float64
	}{
		{n: 3, pools: 20, meanMax: 0.005, worstMax: 0.02},
		{n: 10, pools: 20, meanMax: 0.01, worstMax: 0.04},
		{n: 64, pools: 20, meanMax: 0.02, worstMax: 0.04},
		{n: 255, pools: 4, meanMax: 0.02, worstMax: 0.03},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			var sum, worst, total float64
			for set := range tt.pools {
				bs := pool(100+set, tt.n)
				before := owners(t, bs)
				added := Backend{Name: fmt.Sprintf("10.%d.9.9:8080", 100+set)}
				after := owners(t, append(slices.Clone(bs), added))
				// Balance already fixes the new backend's share; every slot
				// it owns has changed owner.
				f := changed(before, after, "", added.Name)
				sum += f
				worst = max(worst, f)
				total += changed(before, after, "", "")
			}
			mean := sum / float64(tt.pools)
			t.Logf("N=%d+1: slots changed mean %.2f %% (1/(N+1) = %.2f %%), churn among old backends mean %.2f %%, worst %.2f %%",
				tt.n, 100*total/float64(tt.pools), 100/float64(tt.n+1), 100*mean, 100*worst)
			if mean > tt.meanMax || worst > tt.worstMax {
				t.Errorf("churn mean %.2f %%, worst %.2f %%; want at most %.2f %% and %.2f %%",
					100*mean, 100*worst, 100*tt.meanMax, 100*tt.worstMax)
			}
		})
	}
}

// The table depends on the set of backends, not on their order: the same
// slot goes to the same name, whatever index the name has.
func TestInputOrderIndependence(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{2, 10, 256} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bs := pool(6, n)
			for i := range bs {
				bs[i].Weight = uint32(i%4 + 1)
			}
			want := owners(t, bs)
			reversed := slices.Clone(bs)
			slices.Reverse(reversed)
			sorted := slices.Clone(bs)
			slices.SortFunc(sorted, func(a, b Backend) int { return strings.Compare(a.Name, b.Name) })
			orders := map[string][]Backend{"reversed": reversed, "sorted": sorted}
			for i := range 5 {
				shuffled := slices.Clone(bs)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				orders[fmt.Sprint("shuffled ", i)] = shuffled
			}
			for name, order := range orders {
				if got := owners(t, order); !slices.Equal(got, want) {
					t.Errorf("%s: slots go to other backends", name)
				}
			}
		})
	}
}

// The hash is FNV-1a 64 as in hash/fnv, then the MurmurHash3 finalizer.
func TestHashIsFNV1a(t *testing.T) {
	for _, s := range []string{"", "a", "10.1.0.11:8080", "[2001:db8::1]:443"} {
		h := fnv.New64a()
		h.Write([]byte(offsetSalt + s))
		if got, want := fnv1a64(fnv1a64(fnvOffset64, offsetSalt), s), h.Sum64(); got != want {
			t.Errorf("fnv1a64(%q) = %#x, hash/fnv says %#x", s, got, want)
		}
	}
}

// Golden values: the table must not change across processes, machines or
// versions of Graylane or Go, since agents that build the same pool must
// send the same flow to the same backend. If one of these fails, the hash
// or the fill has changed; that is a change of the data path's behaviour,
// not a test to update in passing. The values were computed once and
// checked against an independent implementation of the same algorithm
// (Python, with the permutation as offset + j·skip mod Size and the claim
// rule in its closed form, 1 + ⌊r·w/W⌋ claims by the end of round r).
func TestGolden(t *testing.T) {
	for _, h := range []struct {
		salt, name string
		want       uint64
	}{
		{offsetSalt, "10.1.0.11:8080", 0x782de903013024ae},
		{skipSalt, "10.1.0.11:8080", 0x2a849fa7ddbd9e43},
	} {
		if got := hash(h.salt, h.name); got != h.want {
			t.Errorf("hash(%q, %q) = %#x, want %#x", h.salt, h.name, got, h.want)
		}
	}

	tests := []struct {
		name     string
		backends []Backend
		first16  [16]uint8
		sha256   string
	}{
		{
			name: "equal",
			backends: []Backend{
				{Name: "10.1.0.11:8080"}, {Name: "10.1.0.12:8080"}, {Name: "10.1.0.13:8080"},
				{Name: "10.1.0.14:8080"}, {Name: "10.1.0.15:8080"},
			},
			first16: [16]uint8{2, 2, 3, 0, 0, 2, 4, 0, 3, 2, 0, 1, 4, 2, 2, 1},
			sha256:  "ddc31ad520c7e10e1f2a14aa554bc72ab843f50174e4fd22c5c71a21ad3e9b03",
		},
		{
			name: "weighted",
			backends: []Backend{
				{Name: "10.1.0.11:8080", Weight: 1}, {Name: "10.1.0.12:8080", Weight: 2},
				{Name: "10.1.0.13:8080", Weight: 3},
			},
			first16: [16]uint8{2, 2, 2, 0, 1, 2, 2, 2, 1, 2, 2, 1, 1, 2, 2, 1},
			sha256:  "84a5c163d8fa752d5c986ffce6fd341575e3ccad3db87826e660884d4b5fc1b3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := build(t, tt.backends)
			if got := [16]uint8(table[:16]); got != tt.first16 {
				t.Errorf("first 16 entries = %v, want %v", got, tt.first16)
			}
			sum := sha256.Sum256(table[:])
			if got := hex.EncodeToString(sum[:]); got != tt.sha256 {
				t.Errorf("SHA-256 of the table = %s, want %s", got, tt.sha256)
			}
		})
	}
}

func BenchmarkBuild(b *testing.B) {
	skewed := pool(7, 256)
	for i := range skewed {
		skewed[i].Weight = 1
	}
	skewed[0].Weight = ^uint32(0)
	for _, bm := range []struct {
		name     string
		backends []Backend
	}{
		{"N=10", pool(7, 10)},
		{"N=256", pool(7, 256)},
		{"N=256/skewed", skewed},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(bm.backends); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
