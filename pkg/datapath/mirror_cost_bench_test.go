package datapath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkMirrorCost measures, for issue 18's per-packet goals, what
// mirroring and capture (bpf/include/mirror.h) add to the programs' own
// paths, by BenchmarkPerPacket's method: one BPF_PROG_TEST_RUN per packet
// timed by the kernel, the cases interleaved round by round, medians and
// interquartile means, ratios within the one run. At each hook, two sets
// of b.N rounds:
//
//   - Unsampled (goal ≤ 1.02×): web (TCP 80) and dns (UDP 53) mirrored to
//     a veth and captured, each at 0.01 % of new flows. Three groups, which
//     take turns at running first, each led by a spacer (a packet to no
//     service, not reported, so that a group's first case always follows
//     the same path): off (their mirrors entries written empty before each
//     run, as for a service without spec.mirror or a capture), control (off
//     again: the method's own spread) and on (the entries as Apply and
//     SetCapture wrote them). In each, an established packet (one flow,
//     whose flags say it was not sampled), a new flow by a bare SYN and a
//     new UDP flow (a lookup miss and an insert), their tuples dealt in
//     turn to the three. Off, a new flow reads the mirrors entry; on, it
//     hashes its key for its bucket too. On runs whose new flow the 0.01 %
//     did sample (its entry's flags say so) are left out (new-flows-sampled).
//   - Sampled (goal ≤ 150 ns extra per mirrored packet): 1500-byte segments
//     of flows sampled at 100 %, against one of web's unsampled flows
//     (established-1500): cloned out of the veth whole (mirror-whole; tc
//     only, XDP cannot clone) or cut to 256 bytes by tc_mirror_out on its
//     egress (mirror-256), the veth's peer up and receiving the copy in the
//     softirq of the same call; written to the capture ring with a snap of
//     256 bytes (capture-256) or whole (capture-1500).
//
// A ringbuf.Reader drains the capture ring before every run, so that each
// record finds the reader caught up and takes bpf_ringbuf_output's wakeup
// branch (flags 0: an irq_work; no thread waits on the ring here, so none
// is woken); the -queued runs find a record waiting (8 bytes, put there
// with BPF_RB_NO_WAKEUP by a bare program) and wake nothing: a record's
// price while the reader lags behind a busy capture.
//
// The counters prove every path: flow_hit, flow_syn, flow_new and
// pass_not_service per case; mirror_sampled equal to the new flows left
// out; per service, every copy and record in mirror_counters, none failed
// or dropped; every copy sent by the veth and received by its peer;
// mirror_truncated for every mirror-256 copy; every record read, its snap
// as its capture says.
//
//	go test -run XXX -bench MirrorCost -benchtime 20000x ./pkg/datapath
func BenchmarkMirrorCost(b *testing.B) {
	f := newFixture(b)
	k := newMirrorCostKit(b, f)
	flows := 0 // new-flow tuples handed out: each is new to the table
	for _, h := range hooks {
		b.Run(h.String(), func(b *testing.B) { benchMirrorCost(b, k, h, &flows) })
	}
}

// The services of BenchmarkMirrorCost, all at vip4: web and dns with a low
// share, the others sampling every new flow (ports 82 to 85).
const (
	costWeb         = "web"
	costDNS         = "dns"
	costMirrorWhole = "mirror-whole"
	costMirror256   = "mirror-256"
	costCapture256  = "capture-256"
	costCapture1500 = "capture-1500"

	costFrame = 1500 // bytes of a sampled case's frame
)

// mirrorCostServices are web and dns mirrored to mirrorVeth at 0.01 %,
// mirror-whole and mirror-256 mirrored to it at 100 % (whole copies, cut
// to 256 bytes), and capture-256 and capture-1500, whose captures
// newMirrorCostKit sets; 50 % canary weight, as the per-packet services.
func mirrorCostServices() []service.Service {
	web := webService(costWeb, vip4, service.TCP, 5000)
	dns := webService(costDNS, vip4, service.UDP, 5000)
	dns.Port = 53
	web.Mirror, dns.Mirror = &service.Mirror{Percent: 1, To: mirrorVeth}, &service.Mirror{Percent: 1, To: mirrorVeth}
	out := []service.Service{web, dns}
	for i, name := range []string{costMirrorWhole, costMirror256, costCapture256, costCapture1500} {
		s := webService(name, vip4, service.TCP, 5000)
		s.Port = 82 + uint16(i)
		// The same hosts on a port of the service's own: an endpoint
		// serves one service.
		for _, pool := range [][]service.Backend{s.Stable, s.Canary} {
			for j := range pool {
				pool[j].Addr = netip.AddrPortFrom(pool[j].Addr.Addr(), 8000+s.Port)
			}
		}
		out = append(out, s)
	}
	out[2].Mirror = &service.Mirror{Percent: service.MaxWeight, To: mirrorVeth}
	out[3].Mirror = &service.Mirror{Percent: service.MaxWeight, To: mirrorVeth, Snaplen: 256}
	return out
}

// mirrorCostKit is what BenchmarkMirrorCost's hooks share.
type mirrorCostKit struct {
	f        *fixture
	ids      map[string]uint32          // kernel id by service
	on       map[uint32]bpf.SteerMirror // web's and dns's mirrors entries, mirroring on
	snaps    map[uint32]uint32          // capture snap by service id
	ring     *ringbuf.Reader
	rec      ringbuf.Record
	sentinel *ebpf.Program // puts an 8-byte record in the ring, waking nothing
	tally    ringTally
}

// ringTally counts what the reader took out of the capture ring.
type ringTally struct {
	bySvc     map[uint32]uint64 // capture records by service id
	sentinels uint64
	bad       error // the first record that was not as its service's capture says
}

// newMirrorCostKit adds mirrorVeth, installs mirrorCostServices, starts
// the captures (web and dns at 0.01 %, snap 256; capture-256 and
// capture-1500 at 100 %, snaps 256 and 1500) and opens the ring's reader.
func newMirrorCostKit(b *testing.B, f *fixture) *mirrorCostKit {
	k := &mirrorCostKit{f: f, ids: map[string]uint32{}, on: map[uint32]bpf.SteerMirror{}, snaps: map[uint32]uint32{}}
	err := f.inNS(func() error {
		addMirrorVeth(b, mirrorVeth, true)
		return f.dp.Apply(mirrorCostServices())
	})
	if err != nil {
		b.Fatal(err)
	}
	if p := f.dp.MirrorProblems(); len(p) > 0 {
		b.Fatalf("mirror problems: %v", p)
	}
	for _, s := range mirrorCostServices() {
		k.ids[s.Name], _ = f.dp.ServiceID(s.Name)
	}
	for name, c := range map[string]Capture{
		costWeb: {Share: 1, Snap: 256}, costDNS: {Share: 1, Snap: 256},
		costCapture256: {Share: service.MaxWeight, Snap: 256}, costCapture1500: {Share: service.MaxWeight, Snap: costFrame},
	} {
		if err := f.dp.SetCapture(name, c); err != nil {
			b.Fatal(err)
		}
		k.snaps[k.ids[name]] = c.Snap
	}
	f.dp.mu.Lock()
	for _, name := range []string{costWeb, costDNS} {
		k.on[f.dp.services[name].id] = f.dp.services[name].mirror
	}
	f.dp.mu.Unlock()
	for id, v := range k.on {
		if v.IfaceShare != 1 || v.CaptureShare != 1 || v.Ifindex == 0 || v.CaptureEpoch == 0 {
			b.Fatalf("service %d: mirrors entry %+v, want interface and capture shares of 0.01 %%", id, v)
		}
	}
	if k.ring, err = ringbuf.NewReader(f.dp.CaptureRing()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.ring.Close() })
	k.sentinel = bareProgram(b, hookXDP,
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
		asm.LoadMapPtr(asm.R1, f.dp.CaptureRing().FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.Mov.Imm(asm.R3, 8),
		asm.Mov.Imm(asm.R4, 1), // BPF_RB_NO_WAKEUP
		asm.FnRingbufOutput.Call())
	return k
}

// costCase is one case of BenchmarkMirrorCost.
type costCase struct {
	perPacketCase
	svc    string    // the service its packets go to
	off    bool      // run with web's and dns's mirrors entries empty
	queued bool      // a record waits in the capture ring at each run
	copies string    // "copy" or "capture": what each run adds to svc's mirror counters
	ref    *costCase // compared with: the off case (on/off), established-1500 (extra)
	spacer bool      // not reported (see spacerCase)

	newFlow func(i int) bpf.SteerFlowKey // new flows, on: run i's flow
}

// benchMirrorCost times every case of hook h.
func benchMirrorCost(b *testing.B, k *mirrorCostKit, h hook, flows *int) {
	unsampled := unsampledCostCases(b, k, h, flows)
	copies := sampledCostCases(b, k, h)
	cases := slices.Concat(append(unsampled, copies)...)
	// New flows file their connect deadlines, as in BenchmarkPerPacket.
	if _, err := k.f.dp.SweepTimeouts(); err != nil {
		b.Fatal(err)
	}
	if err := k.drain(); err != nil { // the records of the setup's SYNs
		b.Fatal(err)
	}
	k.tally = ringTally{bySvc: map[uint32]uint64{}}
	before := k.read(b)
	b.ResetTimer()
	timeMirrorCostRounds(b, k, unsampled)
	timeMirrorCostRounds(b, k, [][]*costCase{copies})
	b.StopTimer()
	after := k.read(b)
	sampled := dropSampled(b, k, cases)
	checkCostStats(b, h, cases, before, after, sampled)
	checkCostCopies(b, k, h, cases, before, after, sampled)
	reportMirrorCost(b, cases, sampled)
}

// unsampledCostCases are hook h's groups on web and dns, each led by a
// spacer: mirroring off, off again (the control) and on.
func unsampledCostCases(b *testing.B, k *mirrorCostKit, h hook, flows *int) [][]*costCase {
	prog := clientProgram(k.f.dp.Objects(), h)
	est := k.establish(b, h, 80, 3000+100*uint16(h), 64, 0)
	groups := make([][]*costCase, 3)
	for g := range groups {
		groups[g] = []*costCase{spacerCase(prog, g < 2)}
	}
	add := func(name, svc, stat string, streams func(g int) (func(int) []byte, func(int) bpf.SteerFlowKey)) {
		var off *costCase
		for g, suffix := range []string{"-off", "-control", "-on"} {
			frame, key := streams(g)
			c := &costCase{perPacketCase: perPacketCase{name: name + suffix, prog: prog, frame: frame, stat: stat}, svc: svc, off: g < 2, ref: off}
			if g == 0 {
				off, c.ref = c, nil
			}
			if g == 2 && stat != "flow_hit" {
				c.newFlow = key
			}
			groups[g] = append(groups[g], c)
		}
	}
	add("established", costWeb, "flow_hit", func(int) (func(int) []byte, func(int) bpf.SteerFlowKey) {
		return func(int) []byte { return est }, nil
	})
	add("new-flow", costWeb, "flow_syn", newCostFlows(b.N, flows, protoTCP, 80))
	add("new-udp-flow", costDNS, "flow_new", newCostFlows(b.N, flows, protoUDP, 53))
	return groups
}

// spacerCase leads a group: a packet to no service, through prog, so that
// the group's first case follows the same path whatever ran before.
func spacerCase(prog *ebpf.Program, off bool) *costCase {
	frame := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 2999), dst: netip.MustParseAddrPort("198.18.100.99:80"), proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)})
	return &costCase{perPacketCase: perPacketCase{name: "spacer", prog: prog, frame: func(int) []byte { return frame }, stat: "pass_not_service"}, off: off, spacer: true}
}

// sampledCostCases are hook h's cases of 1500-byte segments: an unsampled
// flow of web, the reference, then the sampled flows' copies.
func sampledCostCases(b *testing.B, k *mirrorCostKit, h hook) []*costCase {
	prog := clientProgram(k.f.dp.Objects(), h)
	port := func(n uint16) uint16 { return 3001 + 100*uint16(h) + n }
	payload := costFrame - 54 // Ethernet, IPv4 and TCP headers
	base := &costCase{perPacketCase: perPacketCase{name: "established-1500", prog: prog, stat: "flow_hit"}, svc: costWeb}
	frame := k.establish(b, h, 80, port(0), payload, 0)
	base.frame = func(int) []byte { return frame }
	cases := []*costCase{spacerCase(prog, false), base}
	add := func(name, svc string, frame []byte, copies string, queued bool) {
		cases = append(cases, &costCase{
			perPacketCase: perPacketCase{name: name, prog: prog, frame: func(int) []byte { return frame }, stat: "flow_hit"},
			svc:           svc, queued: queued, copies: copies, ref: base,
		})
	}
	if h == hookTC {
		add(costMirrorWhole, costMirrorWhole, k.establish(b, h, 82, port(1), payload, flagMirror), "copy", false)
		add(costMirror256, costMirror256, k.establish(b, h, 83, port(2), payload, flagMirror), "copy", false)
	}
	c256 := k.establish(b, h, 84, port(3), payload, flagCapture)
	c1500 := k.establish(b, h, 85, port(4), payload, flagCapture)
	add(costCapture256, costCapture256, c256, "capture", false)
	add(costCapture1500, costCapture1500, c1500, "capture", false)
	add(costCapture256+"-queued", costCapture256, c256, "capture", true)
	add(costCapture1500+"-queued", costCapture1500, c1500, "capture", true)
	return cases
}

// establish opens a TCP flow of client4:clientPort to vip4:vipPort at hook
// h with a SYN, checks that it was sampled as want says (FLOW_F_MIRROR,
// FLOW_F_CAPTURE, or 0: not at all), and returns a segment of it with
// payload bytes.
func (k *mirrorCostKit) establish(b *testing.B, h hook, vipPort, clientPort uint16, payload int, want uint8) []byte {
	client, vip := netip.AddrPortFrom(client4, clientPort), netip.AddrPortFrom(vip4, vipPort)
	k.f.establish(b, h, client, vip)
	got := k.flags(b, costFlowKey(client, vip, protoTCP))
	for _, m := range []uint8{flagMirror, flagCapture} {
		if (got&m != 0) != (want&m != 0) {
			b.Fatalf("%v: flow to port %d has flags %#x, want the sample bits %#x", h, vipPort, got, want)
		}
	}
	return buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, payload)})
}

// newCostFlows hands out 3n tuples new to the flow table, from
// 198.19.0.0/16, to vip4:vipPort, in turn to three streams (so that the
// three cases of a path draw from one population): for stream s, the frame
// of run i (a SYN or a UDP datagram, with 64 bytes of payload) and its
// flow's key.
func newCostFlows(n int, flows *int, proto uint8, vipPort uint16) func(s int) (func(int) []byte, func(int) bpf.SteerFlowKey) {
	first := *flows
	*flows += 3 * n
	vip := netip.AddrPortFrom(vip4, vipPort)
	src := func(j int) netip.AddrPort {
		j += first
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(j >> 8), byte(j)}), 1024+uint16(j>>16))
	}
	return func(s int) (func(int) []byte, func(int) bpf.SteerFlowKey) {
		frame := func(i int) []byte {
			p := pktSpec{src: src(3*i + s), dst: vip, proto: proto, payload: make([]byte, 64)}
			if proto == protoTCP {
				p.tcpFlags, p.seq = tcpSYN, uint32(i)
			}
			return buildPacket(p)
		}
		return frame, func(i int) bpf.SteerFlowKey { return costFlowKey(src(3*i+s), vip, proto) }
	}
}

func costFlowKey(client, vip netip.AddrPort, proto uint8) bpf.SteerFlowKey {
	return bpf.SteerFlowKey{Src: addr16(client.Addr()), Dst: addr16(vip.Addr()), Sport: htons(client.Port()), Dport: htons(vip.Port()), Proto: proto}
}

// flags are the flags of the flow with key fk.
func (k *mirrorCostKit) flags(b *testing.B, fk bpf.SteerFlowKey) uint8 {
	v, err := lookupFlow(k.f.dp, fk)
	if err != nil {
		b.Fatalf("flow %+v: %v", fk, err)
	}
	return v.Flags
}

// timeMirrorCostRounds runs b.N rounds of every case of groups, each run
// one BPF_PROG_TEST_RUN timed by the kernel after its prelude (untimed);
// the groups take turns at running first.
func timeMirrorCostRounds(b *testing.B, k *mirrorCostKit, groups [][]*costCase) {
	orders := make([][]*costCase, len(groups))
	for r := range orders {
		orders[r] = slices.Concat(append(slices.Clone(groups[r:]), groups[:r]...)...)
	}
	err := k.f.inNS(func() error {
		for i := 0; i < b.N; i++ {
			for _, c := range orders[i%len(orders)] {
				frame := c.frame(i)
				if err := k.prelude(c, frame); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				_, d, err := c.prog.Benchmark(frame, 1, nil)
				if err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				c.times = append(c.times, d)
			}
		}
		// Drain the last records, and leave web and dns mirrored.
		return k.prelude(&costCase{}, nil)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// prelude sets web's and dns's mirrors entries as case c runs them,
// drains the capture ring and, for a queued case, puts a record in it.
func (k *mirrorCostKit) prelude(c *costCase, frame []byte) error {
	for id, v := range k.on {
		if c.off {
			v = bpf.SteerMirror{}
		}
		if err := k.f.dp.objs.SteerMaps.Mirrors.Update(id, &v, ebpf.UpdateAny); err != nil {
			return err
		}
	}
	if err := k.drain(); err != nil {
		return err
	}
	if c.queued {
		if _, _, err := k.sentinel.Benchmark(frame, 1, nil); err != nil {
			return fmt.Errorf("queue a record: %w", err)
		}
	}
	return nil
}

var captureHdrSize = binary.Size(bpf.SteerCaptureHdr{})

// drain reads every record in the capture ring into the tally.
func (k *mirrorCostKit) drain() error {
	k.ring.SetDeadline(time.Now())
	for {
		err := k.ring.ReadInto(&k.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
		raw := k.rec.RawSample
		if len(raw) == 8 {
			k.tally.sentinels++
			continue
		}
		var h bpf.SteerCaptureHdr
		if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, &h); err != nil {
			return fmt.Errorf("a %d-byte record: %w", len(raw), err)
		}
		want := min(k.snaps[h.SvcId], h.Len, CaptureSnapMax)
		if k.tally.bad == nil && (uint32(h.Snap) != want || len(raw) != captureHdrSize+int(h.Snap)) {
			k.tally.bad = fmt.Errorf("a record of service %d: snap %d of a %d-byte packet in %d bytes, want snap %d",
				h.SvcId, h.Snap, h.Len, len(raw), want)
		}
		if k.tally.bySvc != nil {
			k.tally.bySvc[h.SvcId]++
		}
	}
}

// dropSampled leaves out of each on new-flow case's times the runs whose
// new flow was sampled, and returns how many there were.
func dropSampled(b *testing.B, k *mirrorCostKit, cases []*costCase) uint64 {
	var sampled uint64
	for _, c := range cases {
		if c.newFlow == nil {
			continue
		}
		kept := c.times[:0]
		for i, d := range c.times {
			if k.flags(b, c.newFlow(i))&(flagMirror|flagCapture) != 0 {
				sampled++
				continue
			}
			kept = append(kept, d)
		}
		c.times = kept
	}
	return sampled
}

// costCounters are the counters BenchmarkMirrorCost checks, read at one
// moment: the path counters, each service's mirror counters (pools
// summed) and mirrorVeth's.
type costCounters struct {
	stats  map[string]uint64
	mirror map[string]MirrorStats
	veth   vethCount
}

func (k *mirrorCostKit) read(b *testing.B) costCounters {
	c := costCounters{mirror: map[string]MirrorStats{}, veth: vethTx(b, k.f, mirrorVeth)}
	var err error
	if c.stats, err = k.f.dp.Stats(); err != nil {
		b.Fatal(err)
	}
	for name := range k.ids {
		pools, err := k.f.dp.MirrorStats(name)
		if err != nil {
			b.Fatal(err)
		}
		c.mirror[name] = addMirrorStats(pools[0], pools[1], 1)
	}
	return c
}

// addMirrorStats is s + sign·o, field by field (sign -1: the difference).
func addMirrorStats(s, o MirrorStats, sign int) MirrorStats {
	f := func(a, b uint64) uint64 { return a + uint64(sign)*b }
	return MirrorStats{
		Copies: f(s.Copies, o.Copies), CopyBytes: f(s.CopyBytes, o.CopyBytes),
		CopyFailed: f(s.CopyFailed, o.CopyFailed), CopyGSO: f(s.CopyGSO, o.CopyGSO),
		Captured: f(s.Captured, o.Captured), CapturedBytes: f(s.CapturedBytes, o.CapturedBytes),
		CaptureDropped: f(s.CaptureDropped, o.CaptureDropped),
	}
}

// checkCostStats proves from the path counters that every run of hook h
// took its path: sampled is the number of new flows the 0.01 % sampled.
func checkCostStats(b *testing.B, h hook, cases []*costCase, before, after costCounters, sampled uint64) {
	n := uint64(b.N)
	want := map[string]uint64{"mirror_sampled": sampled, "mirror_truncated": 0, "mirror_xdp": 0}
	for _, c := range cases {
		want[c.stat] += n
		if c.svc == costMirror256 {
			want["mirror_truncated"] += n // cut on the veth's egress
		}
	}
	want["flow_new"] += want["flow_syn"] // a SYN counts both
	if h == hookXDP {
		want["mirror_xdp"] = sampled // marked for the veth, counted, not copied
	}
	for stat, w := range want {
		if got := after.stats[stat] - before.stats[stat]; got != w {
			b.Fatalf("%v: %s grew by %d over %d rounds, want %d", h, stat, got, b.N, w)
		}
	}
}

// checkCostCopies proves from the mirror counters, the veth's and the
// reader's tally that every copy and record was made, sent and read.
func checkCostCopies(b *testing.B, k *mirrorCostKit, h hook, cases []*costCase, before, after costCounters, sampled uint64) {
	n := uint64(b.N)
	want := map[string]MirrorStats{}
	var queued uint64
	for _, c := range cases {
		w := want[c.svc]
		switch c.copies {
		case "copy":
			w.Copies, w.CopyBytes = w.Copies+n, w.CopyBytes+n*costFrame
		case "capture":
			w.Captured, w.CapturedBytes = w.Captured+n, w.CapturedBytes+n*costFrame
		}
		want[c.svc] = w
		if c.queued {
			queued += n
		}
	}
	var copies uint64
	got := map[string]MirrorStats{}
	for name := range k.ids {
		d := addMirrorStats(after.mirror[name], before.mirror[name], -1)
		copies += d.Copies
		if d.CopyFailed != 0 || d.CaptureDropped != 0 {
			b.Fatalf("%v: %s: %d copies failed, %d records dropped", h, name, d.CopyFailed, d.CaptureDropped)
		}
		if k.tally.bySvc[k.ids[name]] != d.Captured {
			b.Fatalf("%v: %s: %d records read, %d captured", h, name, k.tally.bySvc[k.ids[name]], d.Captured)
		}
		got[name] = d
	}
	low := addMirrorStats(got[costWeb], got[costDNS], 1) // their sampled new flows only
	if wantCopies := map[hook]uint64{hookXDP: 0, hookTC: sampled}[h]; low.Copies != wantCopies || low.Captured != sampled {
		b.Fatalf("%v: web and dns: %d copies, %d captured; want %d, %d (their sampled new flows)", h, low.Copies, low.Captured, wantCopies, sampled)
	}
	delete(got, costWeb)
	delete(got, costDNS)
	for name, d := range got {
		if d != want[name] {
			b.Fatalf("%v: %s: mirror counters grew by %+v, want %+v", h, name, d, want[name])
		}
	}
	sent, received := after.veth.txPackets-before.veth.txPackets, after.veth.peerRx-before.veth.peerRx
	if sent != copies || received != copies || after.veth.txDropped != before.veth.txDropped {
		b.Fatalf("%v: %d copies, but %s sent %d, its peer received %d", h, copies, mirrorVeth, sent, received)
	}
	if k.tally.sentinels != queued || k.tally.bad != nil {
		b.Fatalf("%v: %d queued records read, want %d; %v", h, k.tally.sentinels, queued, k.tally.bad)
	}
}

// reportMirrorCost reports each case's median (-ns) and interquartile mean
// (-iqm-ns); for an on case, its ratios to the off one (-on/off,
// -iqm-on/off); for a copy, what it adds to established-1500 (-extra-ns,
// -iqm-extra-ns) and its ratios to it (-x, -iqm-x); and the new flows left
// out, sampled.
func reportMirrorCost(b *testing.B, cases []*costCase, sampled uint64) {
	b.ReportMetric(float64(sampled), "new-flows-sampled")
	for _, c := range cases {
		if c.spacer {
			continue
		}
		if len(c.times) == 0 {
			b.Fatalf("%s: every run was left out", c.name)
		}
		m, q := float64(median(c.times).Nanoseconds()), interquartileMean(c.times)
		b.ReportMetric(m, c.name+"-ns")
		b.ReportMetric(q, c.name+"-iqm-ns")
		if c.ref == nil {
			continue
		}
		rm, rq := float64(median(c.ref.times).Nanoseconds()), interquartileMean(c.ref.times)
		if c.copies == "" {
			cut := strings.LastIndex(c.name, "-") // stem-on, stem-control
			stem, kind := c.name[:cut], c.name[cut+1:]
			b.ReportMetric(m/rm, stem+"-"+kind+"/off")
			b.ReportMetric(q/rq, stem+"-iqm-"+kind+"/off")
			continue
		}
		b.ReportMetric(m-rm, c.name+"-extra-ns")
		b.ReportMetric(q-rq, c.name+"-iqm-extra-ns")
		b.ReportMetric(m/rm, c.name+"-x")
		b.ReportMetric(q/rq, c.name+"-iqm-x")
	}
}
