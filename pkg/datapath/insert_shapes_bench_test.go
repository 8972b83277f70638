package datapath

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// BenchmarkInsertShapes (issue 21, point 4): does a new flow's insert get
// cheaper with another table shape? The insert floor (a bare program that
// inserts the frame's 40 bytes as a key) on tables of several sizes, value
// sizes and kinds — Katran's per-core LRU shape (131 072 entries, 16-byte
// values), the pending table's, a small table that evicts on every insert
// once full, a per-CPU-list LRU (BPF_F_NO_COMMON_LRU), a plain hash — all
// interleaved round by round, every round a new flow's frame, reported as
// interquartile means over the bare XDP program's in the same rounds.
//
//	taskset -c 1 go test -run XXX -bench InsertShapes -benchtime 20000x ./pkg/datapath
func BenchmarkInsertShapes(b *testing.B) {
	const noCommonLRU = 1 << 1 // BPF_F_NO_COMMON_LRU
	shapes := []struct {
		name string
		spec ebpf.MapSpec
	}{
		{"lru-256Ki-v40", ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 40, ValueSize: 40, MaxEntries: 1 << 18}},
		{"lru-64Ki-v40", ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 40, ValueSize: 40, MaxEntries: 1 << 16}},
		{"lru-128Ki-v16", ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 40, ValueSize: 16, MaxEntries: 1 << 17}},
		{"lru-4Ki-v40", ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 40, ValueSize: 40, MaxEntries: 1 << 12}},
		{"lru-64Ki-v40-percpu-lists", ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 40, ValueSize: 40, MaxEntries: 1 << 16, Flags: noCommonLRU}},
		{"hash-64Ki-v40", ebpf.MapSpec{Type: ebpf.Hash, KeySize: 40, ValueSize: 40, MaxEntries: 1 << 16}},
	}
	progs := []*ebpf.Program{passProgram(b, hookXDP)}
	for _, s := range shapes {
		spec := s.spec
		progs = append(progs, closedWith(b, floorProgram(b, nil, hookXDP, benchMap(b, &spec), true)))
	}
	flows := 0
	fr := newBenchFrames(hookXDP, &flows)
	times := make([][]time.Duration, len(progs))
	b.ResetTimer()
	for i := range b.N {
		frame := fr.newTCP(i)
		for j, p := range progs {
			_, d, err := p.Benchmark(frame, 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			times[j] = append(times[j], d)
		}
	}
	b.StopTimer()
	base := interquartileMean(times[0])
	b.ReportMetric(base, "pass-baseline-ns")
	for j, s := range shapes {
		b.ReportMetric(interquartileMean(times[j+1])/base, fmt.Sprintf("%s-iqm-x", s.name))
	}
}
