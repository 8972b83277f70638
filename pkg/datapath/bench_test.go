package datapath

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
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
	fillFlowTable(b, f.dp.objs.Flows)
	fillFlowTable(b, untracked.objs.Flows)
	for _, h := range hooks {
		b.Run(h.String()+"-full-table", func(b *testing.B) { benchPerPacket(b, f, untracked, h, &flows, true) })
	}
}

// fillFlowTable fills a flow table (or a map shaped like one) to its size
// with flows that no benchmark frame has: IPv6 clients in 2001:db8::/32
// (the frames' clients are IPv4). They send nowhere; they take room.
func fillFlowTable(b *testing.B, m *ebpf.Map) {
	n := int(m.MaxEntries())
	keys := make([]bpf.SteerFlowKey, n)
	values := make([]bpf.SteerFlow, n)
	for i := range keys {
		src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		keys[i] = webFlowKey(netip.AddrPortFrom(src, 40000))
	}
	if _, err := m.BatchUpdate(keys, values, nil); err != nil {
		b.Fatalf("fill the flow table: %v", err)
	}
}

func benchPerPacket(b *testing.B, f *fixture, untracked *Datapath, h hook, flows *int, full bool) {
	objs := f.dp.Objects()
	prog := clientProgram(objs, h)
	untrackedProg := clientProgram(untracked.Objects(), h)
	baseline := passProgram(b, h)

	fr := newBenchFrames(h, flows)
	established, nonService := fr.established, fr.nonService
	// Create the established flow.
	if v, _ := f.run(b, h, false, f.cliIf, fr.syn); v != vRedirect {
		b.Fatalf("setup: verdict %s", v)
	}

	// The floors: bare programs doing only the flow table's share of a
	// path, on a map shaped and sized like the flow table. What a path
	// costs above its floor is what Graylane adds to the table operation
	// any sticky balancer pays.
	floorTable, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 40, ValueSize: 40, MaxEntries: objs.Flows.MaxEntries()})
	if err != nil {
		b.Fatal(err)
	}
	defer floorTable.Close()
	lookupFloor := floorProgram(b, f, h, floorTable, false)
	defer lookupFloor.Close()
	insertFloor := floorProgram(b, f, h, floorTable, true)
	defer insertFloor.Close()
	// The memory floor: one write of a key and a value at a random slot of
	// an array as large as the flow table, which is the least any flow
	// table stores for a new flow. The slot is a line the recent runs did not
	// touch, so this is the cost of a cache (and TLB) miss on this machine.
	memoryTable, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 80, MaxEntries: objs.Flows.MaxEntries()})
	if err != nil {
		b.Fatal(err)
	}
	defer memoryTable.Close()
	memoryFloor := memoryFloorProgram(b, f, h, memoryTable)
	defer memoryFloor.Close()
	// The clock floor: one read of the clock a tracked new flow starts its
	// connect (or request) timer with, the helper bpf_ktime_get_ns.
	clockFloor := clockFloorProgram(b, h)
	if full {
		fillFlowTable(b, floorTable)
	}
	if err := floorTable.Put(established[floorKeyOff:floorKeyOff+40], make([]byte, 40)); err != nil {
		b.Fatal(err)
	}

	// The last packet of a closing TCP flow: a bare ACK to a flow whose
	// ends have both sent a FIN, which deletes its entry.
	closing := closingFlows(b, objs, h)

	type benchCase struct {
		name  string
		prog  *ebpf.Program
		frame func(i int) []byte
		stat  string // path counter that must grow by one per run
		times []time.Duration
	}
	cases := []*benchCase{
		{name: "pass-baseline", prog: baseline, frame: func(int) []byte { return established }},
		{name: "non-service", prog: prog, frame: func(int) []byte { return nonService }, stat: "pass_not_service"},
		{name: "established", prog: prog, frame: func(int) []byte { return established }, stat: "flow_hit"},
		{name: "new-flow", prog: prog, frame: fr.newTCP, stat: "flow_new"},
		{name: "new-udp-flow", prog: prog, frame: fr.newUDP, stat: "flow_new"},
		{name: "new-flow-untracked", prog: untrackedProg, frame: fr.newTCP},
		{name: "closing-ack", prog: prog, frame: closing, stat: "flow_closed"},
		{name: "lookup-floor", prog: lookupFloor, frame: func(int) []byte { return established }},
		{name: "insert-floor", prog: insertFloor, frame: fr.newTCP},
		{name: "memory-floor", prog: memoryFloor, frame: fr.newTCP},
		{name: "clock-floor", prog: clockFloor, frame: func(int) []byte { return established }},
	}
	// Set the deadline wheel up, as the agent's sweeps keep it, so that new
	// flows file their connect deadlines as they do in service (until a
	// slot's share of the rounds' rate, above the wheel's, fills it: the
	// unfiled-share metric says how many did not).
	if _, err := f.dp.SweepTimeouts(); err != nil {
		b.Fatal(err)
	}
	before, err := f.dp.Stats()
	if err != nil {
		b.Fatal(err)
	}
	untrackedBefore, err := untracked.Stats()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	err = f.inNS(func() error {
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
	after, err := f.dp.Stats()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		if c.stat != "" && after[c.stat]-before[c.stat] < uint64(b.N) {
			b.Fatalf("%s: counter %s grew by %d over %d runs: not every run took the path", c.name, c.stat, after[c.stat]-before[c.stat], b.N)
		}
	}
	// Both new-flow cases count flow_new: together exactly 2 per round
	// (the insert floor's tuples are new too, but it counts nothing).
	if got := after["flow_new"] - before["flow_new"]; got != 2*uint64(b.N) {
		b.Fatalf("flow_new grew by %d over %d rounds of two new flows", got, b.N)
	}
	// Flow hits: the established runs' and the closing ACKs', exactly.
	if got := after["flow_hit"] - before["flow_hit"]; got != 2*uint64(b.N) {
		b.Fatalf("flow_hit grew by %d over %d rounds of an established packet and a closing ACK", got, b.N)
	}
	untrackedAfter, err := untracked.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if got := untrackedAfter["flow_new"] - untrackedBefore["flow_new"]; got != uint64(b.N) {
		b.Fatalf("new-flow-untracked: flow_new grew by %d over %d runs", got, b.N)
	}
	if got := untrackedAfter["wheel_unfiled"] - untrackedBefore["wheel_unfiled"]; got != 0 {
		b.Fatalf("new-flow-untracked: %d deadlines went to the wheel with tracking off", got)
	}
	if full {
		// Still full: the new flows evicted as many as they added.
		n, err := f.dp.FlowEntries()
		if max := int(objs.Flows.MaxEntries()); err != nil || n < max*9/10 {
			b.Fatalf("the full table holds %d of %d flows after the runs (%v)", n, max, err)
		}
	}
	b.ReportMetric(float64(after["wheel_unfiled"]-before["wheel_unfiled"])/float64(2*b.N), "unfiled-share")
	base := median(cases[0].times)
	for _, c := range cases {
		m := median(c.times)
		b.ReportMetric(float64(m.Nanoseconds()), c.name+"-ns")
		if c != cases[0] {
			b.ReportMetric(float64(m)/float64(base), c.name+"-x")
			b.ReportMetric(interquartileMean(c.times)/interquartileMean(cases[0].times), c.name+"-iqm-x")
		}
	}
}

// closingFlows returns the frame of round i of the closing-ack case: the
// bare ACK that closes flow i (a client in 198.19.0.0/16), whose entry it
// writes just before, a copy of hook h's established flow with both FIN
// bits set: the entry is as warm as the two FINs that passed a round trip
// earlier would have left it.
func closingFlows(b *testing.B, objs *bpf.SteerObjects, h hook) func(int) []byte {
	var est bpf.SteerFlow
	if err := objs.Flows.Lookup(webFlowKey(netip.AddrPortFrom(client4, 1+uint16(h))), &est); err != nil {
		b.Fatalf("the established flow: %v", err)
	}
	est.Flags |= uint8(bpf.SteerFlowFlagsFLOW_F_FIN_CLIENT | bpf.SteerFlowFlagsFLOW_F_FIN_BACKEND)
	est.State = uint8(bpf.SteerFlowStateFLOW_IDLE)
	vip := netip.AddrPortFrom(vip4, 80)
	return func(i int) []byte {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 2000+uint16(i>>16))
		if err := objs.Flows.Put(webFlowKey(src), est); err != nil {
			b.Fatalf("write a closing flow: %v", err)
		}
		return buildPacket(pktSpec{src: src, dst: vip, proto: protoTCP, tcpFlags: tcpACK})
	}
}

// clientProgram is the client-side program of hook h.
func clientProgram(objs *bpf.SteerObjects, h hook) *ebpf.Program {
	if h == hookTC {
		return objs.TcClient
	}
	return objs.XdpClient
}

// passProgram builds the baseline of the per-packet benchmarks for hook h:
// a bare program that returns the pass verdict. It is closed with b.
func passProgram(b *testing.B, h hook) *ebpf.Program { return bareProgram(b, h) }

// clockFloorProgram builds a bare program for hook h that reads the clock
// (bpf_ktime_get_ns) once and returns the pass verdict. It is closed with b.
func clockFloorProgram(b *testing.B, h hook) *ebpf.Program {
	return bareProgram(b, h, asm.FnKtimeGetNs.Call())
}

// bareProgram builds a program for hook h that runs ins and returns the
// pass verdict. It is closed with b.
func bareProgram(b *testing.B, h hook, ins ...asm.Instruction) *ebpf.Program {
	progType, passRet := ebpf.XDP, int32(xdpPass)
	if h == hookTC {
		progType, passRet = ebpf.SchedCLS, -1
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         progType,
		License:      "GPL",
		Instructions: append(ins, asm.Mov.Imm(asm.R0, passRet), asm.Return()),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// benchFrames are the frames of the per-packet benchmarks' paths, on
// the fixture's services web (TCP, port 80) and dns (UDP, port 53) at vip4.
type benchFrames struct {
	syn         []byte // opens the established flow
	established []byte // a data segment of that flow
	nonService  []byte // to an address no service has
	// A tuple (client address and port) new to every flow table on each
	// call: a TCP SYN, a UDP datagram.
	newTCP, newUDP func(int) []byte
}

// newBenchFrames builds the frames for hook h (each hook's established
// flow has a port of its own); flows counts the new tuples handed out.
func newBenchFrames(h hook, flows *int) benchFrames {
	client := netip.AddrPortFrom(client4, 1+uint16(h))
	vip := netip.AddrPortFrom(vip4, 80)
	newSrc := func() (netip.AddrPort, int) {
		i := *flows
		*flows++
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2 + byte(i/60000%200), 1}), uint16(1024+i%60000)), i
	}
	return benchFrames{
		syn:         buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN}),
		established: buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)}),
		nonService:  buildPacket(pktSpec{src: client, dst: netip.MustParseAddrPort("198.18.100.99:80"), proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)}),
		newTCP: func(int) []byte {
			src, i := newSrc()
			return buildPacket(pktSpec{src: src, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: uint32(i), payload: make([]byte, 64)})
		},
		// New UDP flows also pay the flow-table lookup that a bare SYN skips.
		newUDP: func(int) []byte {
			src, _ := newSrc()
			return buildPacket(pktSpec{src: src, dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: make([]byte, 64)})
		},
	}
}

// benchServices are the services the per-packet benchmarks steer: web
// (TCP 80) and dns (UDP 53) at vip4, both at weight 50 %.
func benchServices() []service.Service {
	dns := webService("dns", vip4, service.UDP, 5000)
	dns.Port = 53
	return []service.Service{webService("web", vip4, service.TCP, 5000), dns}
}

// floorKeyOff is where the floor programs' 40-byte key starts in a frame:
// right after the Ethernet header (the IPv4 and TCP headers, which hold
// the tuple).
const floorKeyOff = 14

// floorProgram builds a bare program for hook h that takes the 40 bytes at
// floorKeyOff as a key and looks it up in m, or, with insert, inserts it
// (a new flow's table work). The key and value sizes are the flow table's.
func floorProgram(b *testing.B, f *fixture, h hook, m *ebpf.Map, insert bool) *ebpf.Program {
	progType, passRet, ins := floorPrologue(f, h)
	ins = append(ins, asm.Mov.Imm(asm.R6, 0))
	for i := int16(0); i < 5; i++ { // key at fp-40, a zero value at fp-80
		ins = append(ins,
			asm.LoadMem(asm.R5, asm.R2, floorKeyOff+8*i, asm.DWord),
			asm.StoreMem(asm.RFP, -40+8*i, asm.R5, asm.DWord),
			asm.StoreMem(asm.RFP, -80+8*i, asm.R6, asm.DWord))
	}
	ins = append(ins, asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -40))
	if insert {
		ins = append(ins, asm.Mov.Reg(asm.R3, asm.RFP), asm.Add.Imm(asm.R3, -80), asm.Mov.Imm(asm.R4, 0), asm.FnMapUpdateElem.Call())
	} else {
		ins = append(ins, asm.FnMapLookupElem.Call())
	}
	ins = append(ins, asm.Mov.Imm(asm.R0, passRet).WithSymbol("out"), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: progType, License: "GPL", Instructions: ins})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// floorPrologue starts a floor program for hook h: its type and pass
// verdict, and instructions that leave the frame's start in R2 and jump to
// "out" when the frame is shorter than floorKeyOff + 40 bytes.
func floorPrologue(f *fixture, h hook) (ebpf.ProgramType, int32, asm.Instructions) {
	progType, dataOff, endOff, passRet := ebpf.XDP, int16(0), int16(4), int32(xdpPass)
	if h == hookTC {
		progType, passRet = ebpf.SchedCLS, -1
		dataOff, endOff = f.skbDataOffs[0], f.skbDataOffs[1]
	}
	return progType, passRet, asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, dataOff, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, endOff, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, floorKeyOff+40),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
	}
}

// memoryFloorProgram builds a bare program for hook h that writes the 40
// bytes at floorKeyOff twice (as a key and a value) into the element of m
// (an array of 80-byte values whose size is a power of two) that a
// multiplicative hash of the frame's source address and ports picks.
func memoryFloorProgram(b *testing.B, f *fixture, h hook, m *ebpf.Map) *ebpf.Program {
	n := m.MaxEntries()
	if n&(n-1) != 0 || m.ValueSize() != 80 {
		b.Fatalf("memory floor: %d entries of %d bytes, want a power of two of 80", n, m.ValueSize())
	}
	bits := int32(bits.Len32(n) - 1)
	progType, passRet, ins := floorPrologue(f, h)
	ins = append(ins,
		asm.Mov.Reg(asm.R7, asm.R2),
		// slot = ((src address ^ ports) * 2^32/phi) >> (32 - bits)
		asm.LoadMem(asm.R5, asm.R2, floorKeyOff+12, asm.Word),
		asm.LoadMem(asm.R6, asm.R2, floorKeyOff+20, asm.Word),
		asm.Xor.Reg32(asm.R5, asm.R6),
		asm.Mul.Imm32(asm.R5, -0x61C88647), // 0x9E3779B9
		asm.RSh.Imm32(asm.R5, 32-bits),
		asm.StoreMem(asm.RFP, -4, asm.R5, asm.Word),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
	)
	for i := int16(0); i < 5; i++ {
		ins = append(ins,
			asm.LoadMem(asm.R5, asm.R7, floorKeyOff+8*i, asm.DWord),
			asm.StoreMem(asm.R0, 8*i, asm.R5, asm.DWord),
			asm.StoreMem(asm.R0, 40+8*i, asm.R5, asm.DWord))
	}
	ins = append(ins, asm.Mov.Imm(asm.R0, passRet).WithSymbol("out"), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: progType, License: "GPL", Instructions: ins})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// interquartileMean is the mean of the middle half of d, in ns.
func interquartileMean(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	mid := s[len(s)/4 : len(s)-len(s)/4]
	var sum time.Duration
	for _, v := range mid {
		sum += v
	}
	return float64(sum.Nanoseconds()) / float64(len(mid))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkTrackingCost compares, in one run, the per-packet cost of the
// established-flow paths with request tracking (latency histograms, error
// signals) on and off: a bare ACK, a client segment that starts a request,
// and the backend's first response segment. Method as BenchmarkPerPacket.
//
//	go test -run XXX -bench TrackingCost -benchtime 20000x ./pkg/datapath
func BenchmarkTrackingCost(b *testing.B) {
	f := newFixture(b)
	s := oneBackendWeb()
	s.App, s.LatencyThresholds = service.AppHTTP, []time.Duration{100 * time.Millisecond, 800 * time.Millisecond}
	off := comparedDatapath(b, f, Options{NoTracking: true}, s)
	client := netip.AddrPortFrom(client4, 2000)
	vip := netip.AddrPortFrom(vip4, 80)
	backend := s.Stable[0].Addr
	payload := make([]byte, 64)
	syn := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: 999})
	synack := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpSYN | tcpACK})
	ack := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: 1000})
	request := func(i int) []byte {
		return buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK | tcpPSH, seq: 1000 + uint32(i)*64, payload: payload})
	}
	response := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpACK | tcpPSH, payload: []byte("HTTP/1.1 200 OK\r\n\r\n")})

	type variant struct {
		name           string
		objs           *bpf.SteerObjects
		ack, req, resp []time.Duration
	}
	variants := []*variant{{name: "on", objs: f.dp.Objects()}, {name: "off", objs: off.Objects()}}
	err := f.inNS(func() error {
		for _, v := range variants {
			for _, c := range []struct {
				p     *ebpf.Program
				frame []byte
			}{{v.objs.XdpClient, syn}, {v.objs.XdpBackend, synack}} {
				if _, _, err := c.p.Benchmark(c.frame, 1, nil); err != nil {
					return err
				}
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, v := range variants {
				for _, c := range []struct {
					p     *ebpf.Program
					frame []byte
					out   *[]time.Duration
				}{{v.objs.XdpClient, ack, &v.ack}, {v.objs.XdpClient, request(i), &v.req}, {v.objs.XdpBackend, response, &v.resp}} {
					_, d, err := c.p.Benchmark(c.frame, 1, nil)
					if err != nil {
						return err
					}
					*c.out = append(*c.out, d)
				}
			}
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Every request was timed with tracking on.
	lat, err := f.dp.View().PoolLatency(0)
	if err != nil {
		b.Fatal(err)
	}
	if got := lat[service.Stable].Response.Count(); got < uint64(b.N) {
		b.Fatalf("%d responses timed over %d rounds", got, b.N)
	}
	on, offv := variants[0], variants[1]
	for _, m := range []struct {
		name    string
		on, off []time.Duration
	}{{"ack", on.ack, offv.ack}, {"request", on.req, offv.req}, {"response", on.resp, offv.resp}} {
		a, z := median(m.on), median(m.off)
		b.ReportMetric(float64(a.Nanoseconds()), m.name+"-on-ns")
		b.ReportMetric(float64(z.Nanoseconds()), m.name+"-off-ns")
		b.ReportMetric(float64(a)/float64(z), m.name+"-on/off")
	}
}

// BenchmarkSweep measures the timeout sweep over a table holding 30 000
// idle flows (as most in a busy table are): a walk of the whole table
// (full-ns/flow: what every sweep cost before the deadline wheel, and what
// one still costs every fullSweepEvery or after an overflow) against a
// sweep of the wheel (wheel-us), the steady state; then a walk of the
// table filled to its size (full-table-walk-ms).
//
//	go test -run XXX -bench Sweep -benchtime 200x ./pkg/datapath
func BenchmarkSweep(b *testing.B) {
	const flows = 30000
	f := newFixture(b)
	if err := f.dp.Apply([]service.Service{webService("web", vip4, service.TCP, 5000)}); err != nil {
		b.Fatal(err)
	}
	err := f.inNS(func() error {
		for i := range flows {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2 + byte(i/60000), 1}), uint16(1024+i%60000))
			// A bare ACK opens a flow with nothing outstanding.
			pkt := buildPacket(pktSpec{src: src, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpACK})
			if _, _, err := f.dp.Objects().XdpClient.Benchmark(pkt, 1, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if n, err := f.dp.SweepTimeouts(); err != nil || n != flows { // sets the wheel up
		b.Fatalf("first sweep: %d flows, %v; want %d", n, err, flows)
	}
	var full, wheel time.Duration
	b.ResetTimer()
	for range b.N {
		d, n, err := walkTable(f.dp)
		full += d
		if err != nil || n != flows {
			b.Fatalf("full sweep: %d flows, %v; want %d", n, err, flows)
		}
		start := time.Now()
		if _, err := f.dp.SweepTimeouts(); err != nil {
			b.Fatal(err)
		}
		wheel += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(full.Nanoseconds())/float64(b.N)/flows, "full-ns/flow")
	b.ReportMetric(float64(full.Microseconds())/float64(b.N), "full-us")
	b.ReportMetric(float64(wheel.Microseconds())/float64(b.N), "wheel-us")

	// A walk of the table filled to its size (the default flowTable's),
	// the median of five: what spaces the walks (walkSpacing times it).
	fillFlowTable(b, f.dp.objs.Flows)
	walks := make([]time.Duration, 5)
	for i := range walks {
		var n int
		var err error
		walks[i], n, err = walkTable(f.dp)
		if max := int(f.dp.objs.Flows.MaxEntries()); err != nil || n < max*9/10 {
			b.Fatalf("walk of the full table: %d of %d flows, %v", n, max, err)
		}
	}
	b.ReportMetric(float64(median(walks).Microseconds())/1000, "full-table-walk-ms")
}

// walkTable walks d's whole flow table once, as the timeout sweep does,
// and returns how long the walk took and the flows it counted.
func walkTable(d *Datapath) (time.Duration, int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.sweeper.fullSweep(0, false)
	return d.sweeper.lastWalk, d.sweeper.flowCount, err
}

// BenchmarkTCChecksum compares, in one run, the tc programs' established
// paths (a client's data segment, the backend's reply) when they fix the
// L4 checksum themselves (own: they read the skb's checksum state) and
// when the kernel's helpers do (helpers: as where they cannot read it).
// A test run's skb is CHECKSUM_NONE. Method as BenchmarkPerPacket.
//
//	go test -run XXX -bench TCChecksum -benchtime 20000x ./pkg/datapath
func BenchmarkTCChecksum(b *testing.B) {
	f := newFixture(b)
	if _, canRead, why := findIPSummed(mustKernelBTF(b)); !canRead {
		b.Skipf("the tc programs cannot read the checksum state here: %s", why)
	}
	s := oneBackendWeb()
	helpers := comparedDatapath(b, f, Options{ChecksumHelpers: true}, s)
	client := netip.AddrPortFrom(client4, 2100)
	vip := netip.AddrPortFrom(vip4, 80)
	backend := s.Stable[0].Addr
	syn := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: 999})
	data := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: 1000, payload: make([]byte, 64)})
	reply := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)})

	type variant struct {
		name        string
		dp          *Datapath
		data, reply []time.Duration
	}
	variants := []*variant{{name: "own", dp: f.dp}, {name: "helpers", dp: helpers}}
	before := map[string]map[string]uint64{}
	err := f.inNS(func() error {
		for _, v := range variants {
			if _, _, err := v.dp.Objects().TcClient.Benchmark(syn, 1, nil); err != nil {
				return err
			}
			st, err := v.dp.Stats()
			if err != nil {
				return err
			}
			before[v.name] = st
		}
		b.ResetTimer()
		for range b.N {
			for _, v := range variants {
				objs := v.dp.Objects()
				_, d, err := objs.TcClient.Benchmark(data, 1, nil)
				if err != nil {
					return err
				}
				v.data = append(v.data, d)
				if _, d, err = objs.TcBackend.Benchmark(reply, 1, nil); err != nil {
					return err
				}
				v.reply = append(v.reply, d)
			}
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Every run took the forwarding path, through the helpers or not.
	for _, v := range variants {
		after, err := v.dp.Stats()
		if err != nil {
			b.Fatal(err)
		}
		want := uint64(0)
		if v.dp == helpers {
			want = 2 * uint64(b.N)
		}
		hits, replies := after["flow_hit"]-before[v.name]["flow_hit"], after["reply_hit"]-before[v.name]["reply_hit"]
		if got := after["csum_helper"] - before[v.name]["csum_helper"]; got != want || hits != uint64(b.N) || replies != uint64(b.N) {
			b.Fatalf("%s: csum_helper +%d (want %d), flow_hit +%d, reply_hit +%d over %d rounds", v.name, got, want, hits, replies, b.N)
		}
	}
	own, hv := variants[0], variants[1]
	for _, m := range []struct {
		name      string
		own, help []time.Duration
	}{{"data", own.data, hv.data}, {"reply", own.reply, hv.reply}} {
		b.ReportMetric(interquartileMean(m.own), m.name+"-own-ns")
		b.ReportMetric(interquartileMean(m.help), m.name+"-helpers-ns")
		b.ReportMetric(interquartileMean(m.own)/interquartileMean(m.help), m.name+"-own/helpers")
	}
}

// comparedDatapath loads a second data path, as opts say otherwise like the
// fixture's (its flow table 1<<16 unless opts size it), for a comparison in
// one run, and installs services in both.
func comparedDatapath(b *testing.B, f *fixture, opts Options, services ...service.Service) *Datapath {
	if opts.FlowTable == 0 {
		opts.FlowTable = 1 << 16
	}
	opts.MaxServices = 64
	dp, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dp.Close() })
	for _, d := range []*Datapath{f.dp, dp} {
		if err := d.Apply(services); err != nil {
			b.Fatal(err)
		}
	}
	return dp
}
