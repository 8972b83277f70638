package datapath

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// BenchmarkPerPacket measures the kernel's time for one program run on each
// path, against a bare program that only returns the pass verdict.
//
// Method: every measurement is one BPF_PROG_TEST_RUN with repeat=1, timed
// by the kernel, so every packet starts from the original bytes (with a
// larger repeat the kernel reruns the already-rewritten frame, which takes
// another path). The cases run interleaved, round by round, so machine
// noise hits them alike; the reported figures are medians and their ratios
// to the baseline within this one run (-x), and the same ratios of
// interquartile means (-iqm-x). The kernel's times come in steps of about
// 10 ns here, so a median jumps by a step (a tenth of the baseline) when
// the mass near it shifts a little; the mean of the middle half does not,
// and is as blind to outliers. The path counters are checked to prove
// that every run took the path it is named after.
//
// In the xdp and tc runs new flows go into a flow table that holds few
// flows, as in Katran's reference figures (where the kernel's LRU hands
// out its preallocated entries in order). The xdp-full-table and
// tc-full-table runs repeat every case after the flow table, and the
// floors' LRU map, were filled to their size, so that every insert evicts
// the least recently used flow: what a gateway whose table has filled
// pays for a new flow.
//
// The floors are bare programs doing one piece of a path alone: a lookup or
// an insert in an LRU map shaped like the flow table, a write at a random
// slot of an array as large, a clock read. With new-flow-untracked (the
// programs loaded with request tracking off) they say what a new flow
// cannot do without.
//
//	go test -run XXX -bench PerPacket -benchtime 20000x ./pkg/datapath
func BenchmarkPerPacket(b *testing.B) {
	f := newFixture(b)
	if err := f.dp.Apply(benchServices()); err != nil {
		b.Fatal(err)
	}
	// The same programs loaded with request tracking off, for what the
	// tracking (a clock read and a deadline filed) adds to a new flow.
	untracked := comparedDatapath(b, f, Options{NoTracking: true, FlowTable: f.dp.objs.Flows.MaxEntries()}, benchServices()...)
	flows := 0 // new-flow tuples used so far: each must be new to the table
	for _, h := range hooks {
		b.Run(h.String(), func(b *testing.B) { benchPerPacket(b, f, untracked, h, &flows, false) })
	}
	web, stamp := f.dp.services["web"].id, f.dp.sweeper.idle.value
	fillFlowTable(b, f.dp.objs.Flows, web, stamp)
	fillFlowTable(b, untracked.objs.Flows, web, stamp)
	// The pending table full too, as a flood of spoofed SYNs keeps it:
	// the full-table new flow is a SYN under flood.
	fillPending(b, f.dp.objs.Pending, web, stamp)
	fillPending(b, untracked.objs.Pending, web, stamp)
	for _, h := range hooks {
		b.Run(h.String()+"-full-table", func(b *testing.B) { benchPerPacket(b, f, untracked, h, &flows, true) })
	}
}

// benchPerPacket times every case of BenchmarkPerPacket on hook h; full
// says the flow table was filled to its size.
func benchPerPacket(b *testing.B, f *fixture, untracked *Datapath, h hook, flows *int, full bool) {
	objs := f.dp.Objects()
	prog := clientProgram(objs, h)
	untrackedProg := clientProgram(untracked.Objects(), h)
	baseline := passProgram(b, h)

	fr := newBenchFrames(h, flows)
	// Create the established flow (a handshake confirms it), unless an
	// earlier run of the hook did.
	client := netip.AddrPortFrom(client4, 1+uint16(h))
	if _, err := lookupFlow(f.dp, webFlowKey(client)); err != nil {
		f.establish(b, h, client, netip.AddrPortFrom(vip4, 80))
	}
	fl := newBenchFloors(b, f, h, objs.Flows.MaxEntries(), full, fr.established)
	// The last packet of a closing TCP flow: a bare ACK to a flow whose
	// ends have both sent a FIN, which deletes its entry.
	closing := closingFlows(b, objs, h)
	confirming := confirmingFlows(b, objs, h, flows)
	cases := perPacketCases(prog, untrackedProg, baseline, fr, fl, closing, confirming)

	// Set the deadline wheel up, as the agent's sweeps keep it, so that new
	// flows file their connect deadlines as they do in service (until a
	// slot's share of the rounds' rate, above the wheel's, fills it: the
	// unfiled-share metric says how many did not).
	if _, err := f.dp.SweepTimeouts(); err != nil {
		b.Fatal(err)
	}
	before := readPerPacketCounters(b, f.dp, untracked)
	timePerPacketRounds(b, f, cases)
	after := readPerPacketCounters(b, f.dp, untracked)
	checkPerPacketPaths(b, cases, before, after)
	if full {
		// Still full: the new flows evicted as many as they added.
		n, err := f.dp.FlowEntries()
		if max := int(objs.Flows.MaxEntries()); err != nil || n < max*9/10 {
			b.Fatalf("the full table holds %d of %d flows after the runs (%v)", n, max, err)
		}
	}
	reportPerPacket(b, cases, after.tracked["wheel_unfiled"]-before.tracked["wheel_unfiled"])
}

// perPacketCase is one path of BenchmarkPerPacket: the program that runs
// it, the frame of each round, and the kernel's time of every run.
type perPacketCase struct {
	name  string
	prog  *ebpf.Program
	frame func(i int) []byte
	stat  string // path counter that must grow by one per run
	times []time.Duration
}

// perPacketCases are the cases of one hook, the pass baseline first:
// prog and untrackedProg are its client programs with request tracking
// on and off, closing the frames of the closing-ack case.
func perPacketCases(prog, untrackedProg, baseline *ebpf.Program, fr benchFrames, fl benchFloors, closing, confirming func(int) []byte) []*perPacketCase {
	established, nonService := fr.established, fr.nonService
	return []*perPacketCase{
		{name: "pass-baseline", prog: baseline, frame: func(int) []byte { return established }},
		{name: "non-service", prog: prog, frame: func(int) []byte { return nonService }, stat: "pass_not_service"},
		{name: "established", prog: prog, frame: func(int) []byte { return established }, stat: "flow_hit"},
		{name: "new-flow", prog: prog, frame: fr.newTCP, stat: "flow_new"},
		{name: "confirm-ack", prog: prog, frame: confirming, stat: "flow_confirmed"},
		{name: "new-udp-flow", prog: prog, frame: fr.newUDP, stat: "flow_new"},
		{name: "new-flow-untracked", prog: untrackedProg, frame: fr.newTCP},
		{name: "closing-ack", prog: prog, frame: closing, stat: "flow_closed"},
		{name: "lookup-floor", prog: fl.lookup, frame: func(int) []byte { return established }},
		{name: "insert-floor", prog: fl.insert, frame: fr.newTCP},
		{name: "memory-floor", prog: fl.memory, frame: fr.newTCP},
		{name: "clock-floor", prog: fl.clock, frame: func(int) []byte { return established }},
	}
}

// timePerPacketRounds runs b.N rounds of every case, each run one
// BPF_PROG_TEST_RUN timed by the kernel, with b's timer on.
func timePerPacketRounds(b *testing.B, f *fixture, cases []*perPacketCase) {
	b.ResetTimer()
	err := f.inNS(func() error {
		for i := 0; i < b.N; i++ {
			for _, c := range cases {
				_, d, err := c.prog.Benchmark(c.frame(i), 1, nil)
				if err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				c.times = append(c.times, d)
			}
		}
		return nil
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
}

// perPacketCounters are the counters of the data path with request
// tracking on and of the one with it off, read at one moment.
type perPacketCounters struct {
	tracked, untracked map[string]uint64
}

func readPerPacketCounters(b *testing.B, tracked, untracked *Datapath) perPacketCounters {
	var c perPacketCounters
	var err error
	if c.tracked, err = tracked.Stats(); err != nil {
		b.Fatal(err)
	}
	if c.untracked, err = untracked.Stats(); err != nil {
		b.Fatal(err)
	}
	return c
}

// checkPerPacketPaths proves from the counters that every run of b.N
// rounds took the path its case is named after.
func checkPerPacketPaths(b *testing.B, cases []*perPacketCase, before, after perPacketCounters) {
	for _, c := range cases {
		if c.stat != "" && after.tracked[c.stat]-before.tracked[c.stat] < uint64(b.N) {
			b.Fatalf("%s: counter %s grew by %d over %d runs: not every run took the path", c.name, c.stat, after.tracked[c.stat]-before.tracked[c.stat], b.N)
		}
	}
	// Both new-flow cases count flow_new: together exactly 2 per round
	// (the insert floor's tuples are new too, but it counts nothing).
	if got := after.tracked["flow_new"] - before.tracked["flow_new"]; got != 2*uint64(b.N) {
		b.Fatalf("flow_new grew by %d over %d rounds of two new flows", got, b.N)
	}
	// Flow hits: the established runs', the closing ACKs' and the
	// confirming ACKs' (a confirmed flow is forwarded as a hit), exactly.
	if got := after.tracked["flow_hit"] - before.tracked["flow_hit"]; got != 3*uint64(b.N) {
		b.Fatalf("flow_hit grew by %d over %d rounds of an established packet, a closing ACK and a confirming ACK", got, b.N)
	}
	if got := after.untracked["flow_new"] - before.untracked["flow_new"]; got != uint64(b.N) {
		b.Fatalf("new-flow-untracked: flow_new grew by %d over %d runs", got, b.N)
	}
	if got := after.untracked["wheel_unfiled"] - before.untracked["wheel_unfiled"]; got != 0 {
		b.Fatalf("new-flow-untracked: %d deadlines went to the wheel with tracking off", got)
	}
}
