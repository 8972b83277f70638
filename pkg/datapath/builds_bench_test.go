package datapath

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// BenchmarkBuilds compares, in one run, the per-packet cost of this
// binary's programs (a) with another build of steer.c (b), loaded from the
// object file that GRAYLANE_BENCH_OBJECT names: an earlier revision, or
// the same source with a change under test (`make bench-builds REV=...`
// builds one). A change of 20-30 ns a packet, a fifth of the bare
// program's cost, shows only this way on a shared machine: measured in
// separate runs it drowns in the machine's drift. The other build must
// keep this one's map layouts, since this binary fills its maps.
//
// For each path the figures are the interquartile means of both builds
// (a-ns, b-ns), their ratio (b/a), the interquartile mean of the paired
// differences of the runs of one round (b-a-ns), and each build's ratio
// to the bare pass program of BenchmarkPerPacket (a-x, b-x). Method as there; the
// builds run interleaved, in turns, and both builds' path counters must show every
// run took its path.
//
//	GRAYLANE_BENCH_OBJECT=steer.o go test -run XXX -bench Builds -benchtime 20000x ./pkg/datapath
func BenchmarkBuilds(b *testing.B) {
	path := os.Getenv("GRAYLANE_BENCH_OBJECT")
	if path == "" {
		b.Skip("GRAYLANE_BENCH_OBJECT names no object file to compare with (make bench-builds REV=<revision>)")
	}
	other, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		b.Fatalf("load the build to compare with: %v", err)
	}
	f := newFixture(b)
	// One flow table for both: in tables of their own the builds' new
	// flows differed by up to ±50 ns between two loads of one object (a
	// table's memory is where it happens to be), more than most changes.
	bdp := comparedDatapath(b, f, Options{FlowTable: f.dp.opts.FlowTable, program: other, flows: f.dp.objs.Flows}, benchServices()...)
	flows := 0
	for _, h := range hooks {
		b.Run(h.String(), func(b *testing.B) { benchBuilds(b, f, bdp, h, &flows) })
	}
}

// benchBuilds times both builds' paths of hook h, round by round.
func benchBuilds(b *testing.B, f *fixture, bdp *Datapath, h hook, flows *int) {
	fr := newBenchFrames(h, flows)
	baseline := passProgram(b, h)
	builds := []*Datapath{f.dp, bdp}
	paths := []*buildPath{
		{name: "non-service", frame: func(int) []byte { return fr.nonService }, stat: "pass_not_service"},
		{name: "established", frame: func(int) []byte { return fr.established }, stat: "flow_hit"},
		{name: "new-flow", frame: fr.newTCP, stat: "flow_syn"},
		{name: "new-udp-flow", frame: fr.newUDP, stat: "flow_new"},
	}
	before, err := openBuildFlows(b, f, builds, h)
	if err != nil {
		b.Fatal(err)
	}
	var base []time.Duration
	err = f.inNS(func() error {
		var err error
		b.ResetTimer()
		base, err = timeBuildRounds(b, builds, h, baseline, fr.established, paths)
		b.StopTimer()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	checkBuildPaths(b, builds, paths, before)
	reportBuilds(b, base, paths)
}

// buildPath is one path of BenchmarkBuilds: the frame of each round, the
// path counter that must grow by one a run, and the runs' times by build.
type buildPath struct {
	name  string
	frame func(int) []byte
	stat  string
	times [2][]time.Duration // by build
}

// openBuildFlows confirms hook h's established flow by a handshake
// through this build, unless an earlier run did (the builds share the
// flow table, so both find it), and returns each build's counters.
func openBuildFlows(b *testing.B, f *fixture, builds []*Datapath, h hook) ([]map[string]uint64, error) {
	client := netip.AddrPortFrom(client4, 1+uint16(h))
	if _, err := lookupFlow(f.dp, webFlowKey(client)); err != nil {
		f.establish(b, h, client, netip.AddrPortFrom(vip4, 80))
	}
	before := make([]map[string]uint64, len(builds))
	for i, dp := range builds {
		st, err := buildStats(dp)
		if err != nil {
			return nil, err
		}
		before[i] = st
	}
	return before, nil
}

// buildStats reads a build's path counters: those of this tree's names
// that the build's stats map holds (an older build may have fewer).
func buildStats(dp *Datapath) (map[string]uint64, error) {
	out := map[string]uint64{}
	for i, name := range dp.statNames {
		if uint32(i) >= dp.objs.Stats.MaxEntries() {
			break
		}
		var perCPU []uint64
		if err := dp.objs.Stats.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read stat %s: %w", name, err)
		}
		for _, v := range perCPU {
			out[name] += v
		}
	}
	return out, nil
}

// timeBuildRounds runs b.N rounds of the baseline (on the established
// frame) and of every path in both builds, and returns the baseline's
// times; the paths' go to their times.
func timeBuildRounds(b *testing.B, builds []*Datapath, h hook, baseline *ebpf.Program, established []byte, paths []*buildPath) ([]time.Duration, error) {
	var base []time.Duration
	for i := 0; i < b.N; i++ {
		_, d, err := baseline.Benchmark(established, 1, nil)
		if err != nil {
			return base, err
		}
		base = append(base, d)
		for _, p := range paths {
			for k := range builds {
				// Each build goes first every other round: the second
				// run of a path finds the kernel's code and data the
				// first ran through warm (same object: b/a 0.94-0.98
				// in a fixed order).
				j := (k + i) % len(builds)
				dp := builds[j]
				if _, d, err = clientProgram(dp.Objects(), h).Benchmark(p.frame(i), 1, nil); err != nil {
					return base, fmt.Errorf("%s, build %c: %w", p.name, 'a'+j, err)
				}
				p.times[j] = append(p.times[j], d)
			}
		}
	}
	return base, nil
}

// checkBuildPaths proves from both builds' counters that every run took
// its path.
func checkBuildPaths(b *testing.B, builds []*Datapath, paths []*buildPath, before []map[string]uint64) {
	for i, dp := range builds {
		after, err := buildStats(dp)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range paths {
			// Both new-flow paths count flow_new; each its own as well.
			want := uint64(b.N)
			if got := after[p.stat] - before[i][p.stat]; got < want {
				b.Fatalf("build %c, %s: %s grew by %d over %d runs: not every run took the path", 'a'+i, p.name, p.stat, got, b.N)
			}
		}
		if got := after["flow_new"] - before[i]["flow_new"]; got != 2*uint64(b.N) {
			b.Fatalf("build %c: flow_new grew by %d over %d rounds of two new flows", 'a'+i, got, b.N)
		}
	}
}

// reportBuilds reports BenchmarkBuilds' figures, as its doc says.
func reportBuilds(b *testing.B, base []time.Duration, paths []*buildPath) {
	baseIQM := interquartileMean(base)
	b.ReportMetric(baseIQM, "pass-baseline-ns")
	for _, p := range paths {
		a, z := interquartileMean(p.times[0]), interquartileMean(p.times[1])
		b.ReportMetric(a, p.name+"-a-ns")
		b.ReportMetric(z, p.name+"-b-ns")
		b.ReportMetric(a/baseIQM, p.name+"-a-x")
		b.ReportMetric(z/baseIQM, p.name+"-b-x")
		b.ReportMetric(z/a, p.name+"-b/a")
		// The same round's runs of both builds, paired: what drifts
		// over the run cancels out of each difference.
		diff := make([]time.Duration, len(p.times[0]))
		for i := range diff {
			diff[i] = p.times[1][i] - p.times[0][i]
		}
		b.ReportMetric(interquartileMean(diff), p.name+"-b-a-ns")
	}
}
