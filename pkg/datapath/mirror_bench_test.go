package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/internal/testenv"
)

// BenchmarkMirrorMechanisms measures, for issue 18 (mirroring and
// capture), what each kernel mechanism that could copy a sampled packet
// costs per packet, by BenchmarkPerPacket's method (one BPF_PROG_TEST_RUN
// per packet timed by the kernel, the cases interleaved round by round,
// medians and interquartile means, ratios to the hook's pass baseline in
// the same run), on a 1500-byte and a 64-byte TCP frame:
//
//   - clone (tc only): bpf_clone_redirect(skb, ifindex, 0) to a veth of
//     the fixture's private namespace whose peer receives the copy, and
//     clone-peer-down to one whose peer is down (see mirrorVeth). XDP has
//     no clone helper.
//   - perf: bpf_perf_event_output(ctx, perf array, BPF_F_CURRENT_CPU |
//     snap<<32, header, 8), a snap of min(128, frame) bytes copied from
//     the packet by the helper. On sched_cls and XDP programs this is the
//     helper that tracing programs call bpf_skb_output / bpf_xdp_output
//     (same kernel function); those two IDs are refused here.
//   - ring: bpf_ringbuf_reserve(8+128), bpf_skb_load_bytes or
//     bpf_xdp_load_bytes of the snap into it, bpf_ringbuf_submit; a failed
//     reserve counts a drop in an array map.
//
// The record header is 8 bytes (frame length, snap length): a real one
// would add a timestamp, whose price is BenchmarkPerPacket's clock-floor.
// Readers from cilium/ebpf's perf and ringbuf packages drain the buffers
// (1 MiB per CPU, 1 MiB) while the rounds run, woken per record or not
// (see newMirrorKit);
// delivered + lost must equal the runs, and every clone must have left
// the veth. A clone's time includes the veth peer's receive, which runs
// in the softirq of the same call (the peer drops the frame: not its MAC).
//
//	go test -run XXX -bench MirrorMechanisms -benchtime 20000x ./pkg/datapath
func BenchmarkMirrorMechanisms(b *testing.B) {
	testenv.RequirePrivileges(b)
	f := newFixture(b)
	// The fixture's namespace is private and unnamed, so no leftover of an
	// earlier run can be in it, and the veth goes with it on every exit.
	var ifs [2]int
	if err := f.inNS(func() error {
		ifs = [2]int{addMirrorVeth(b, mirrorVeth, true), addMirrorVeth(b, mirrorVethDown, false)}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, h := range hooks {
		b.Run(h.String(), func(b *testing.B) { benchMirror(b, f, h, ifs) })
	}
}

// addMirrorVeth adds, in the namespace it runs in, a veth pair the clones
// go out of, with IPv6 off (no router solicitation or MLD report mixes
// with the clones in its counters), its peer up or down, and returns the
// index of its end called name.
func addMirrorVeth(b testing.TB, name string, peerUp bool) int {
	const v6 = "/proc/sys/net/ipv6/conf/default/disable_ipv6"
	if err := os.WriteFile(v6, []byte("1"), 0o644); err != nil {
		b.Fatal(err)
	}
	i, _ := addVeth(b, name)
	if err := os.WriteFile(v6, []byte("0"), 0o644); err != nil {
		b.Fatal(err)
	}
	if !peerUp {
		if err := netlink.LinkSetDown(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name + "p"}}); err != nil {
			b.Fatal(err)
		}
	}
	return i
}

// The veths the clones go out of (their peers are name+"p"): mirrorVeth's
// peer is up and receives them (in the softirq of the sending call, which
// the kernel's time of a run includes); mirrorVethDown's is down, so veth
// drops them (tx_dropped) after the clone and dev_queue_xmit: the
// sender's share, closer to a NIC driver's.
const (
	mirrorVeth     = "glmir0"
	mirrorVethDown = "glmir1"
)

// Mirror record layout: an 8-byte header, then up to mirrorSnap bytes of
// the frame.
const (
	mirrorHdr  = 8
	mirrorSnap = 128
	mirrorBuf  = 1 << 20 // perf buffer per CPU, ring buffer
)

// mirrorSize is one frame size's cases, its pass baseline first.
type mirrorSize struct {
	label string
	cases []*perPacketCase
}

// mirrorKit is what one hook's cases share: their programs, and the maps
// they write with the readers draining them.
type mirrorKit struct {
	baseline, clone, cloneDown *ebpf.Program // clones: tc only
	buffers                    []mirrorBuffer
}

// mirrorBuffer is a mechanism that copies a snap to a buffer a reader
// drains: its program, that reader, and (ring) the drops counted by the
// program at key 0.
type mirrorBuffer struct {
	name  string
	prog  *ebpf.Program
	drain *mirrorDrain
	drops *ebpf.Map
}

// benchMirror times every mechanism of hook h; ifs are the indexes of
// mirrorVeth and mirrorVethDown.
func benchMirror(b *testing.B, f *fixture, h hook, ifs [2]int) {
	k := newMirrorKit(b, h, ifs)
	sizes := mirrorSizes(k)
	var all []*perPacketCase
	for _, s := range sizes {
		all = append(all, s.cases...)
	}
	runs := uint64(len(sizes) * b.N) // of each mechanism
	before := [2]vethCount{vethTx(b, f, mirrorVeth), vethTx(b, f, mirrorVethDown)}
	timePerPacketRounds(b, f, all)
	after := [2]vethCount{vethTx(b, f, mirrorVeth), vethTx(b, f, mirrorVethDown)}
	for _, m := range k.buffers {
		got, lost := m.drain.finish(b, runs)
		if m.drops != nil {
			if err := m.drops.Lookup(uint32(0), &lost); err != nil {
				b.Fatal(err)
			}
		}
		if got+lost != runs {
			b.Fatalf("%s: %d delivered + %d lost of %d runs", m.name, got, lost, runs)
		}
		b.ReportMetric(float64(got), m.name+"-delivered")
		b.ReportMetric(float64(lost), m.name+"-lost")
	}
	if k.clone != nil {
		checkClones(b, runs, before, after)
	}
	for _, s := range sizes {
		reportMirror(b, s)
	}
}

// checkClones proves from the veths' counters, before and after the
// rounds, that each of the runs of clone sent one copy out of mirrorVeth
// (and its peer received it), and each of clone-peer-down one that
// mirrorVethDown dropped; it reports the runs and the counts.
func checkClones(b *testing.B, runs uint64, before, after [2]vethCount) {
	sent, dropped := after[0].txPackets-before[0].txPackets, after[0].txDropped-before[0].txDropped
	received := after[0].peerRx - before[0].peerRx
	downSent, downDropped := after[1].txPackets-before[1].txPackets, after[1].txDropped-before[1].txDropped
	b.Logf("clone: %d runs, %s sent %d (tx dropped %d), its peer received %d; clone-peer-down: %d runs, %s sent %d, dropped %d",
		runs, mirrorVeth, sent, dropped, received, runs, mirrorVethDown, downSent, downDropped)
	if sent != runs || dropped != 0 || received != runs {
		b.Fatalf("clone: %d runs, but %s sent %d, dropped %d, its peer received %d", runs, mirrorVeth, sent, dropped, received)
	}
	if downSent != 0 || downDropped != runs {
		b.Fatalf("clone-peer-down: %d runs, but %s sent %d and dropped %d", runs, mirrorVethDown, downSent, downDropped)
	}
	b.ReportMetric(float64(runs), "clone-runs")
	b.ReportMetric(float64(sent), "clones-sent")
	b.ReportMetric(float64(received), "clones-received")
	b.ReportMetric(float64(downDropped), "clones-peer-down-dropped")
}

// newMirrorKit builds hook h's programs, maps and readers, closed with b;
// ifs are the veths the tc clones go out of. Each buffered mechanism runs
// twice: with the readers' default wakeups (perf: one per event; ring:
// one whenever the reader has caught up, which a fast reader always has),
// and without a wakeup per packet (perf: a watermark of half the buffer;
// ring: BPF_RB_NO_WAKEUP), the reader polling every millisecond.
func newMirrorKit(b *testing.B, h hook, ifs [2]int) *mirrorKit {
	k := &mirrorKit{baseline: passProgram(b, h)}
	if h == hookTC {
		k.clone, k.cloneDown = cloneProgram(b, ifs[0]), cloneProgram(b, ifs[1])
	}
	k.buffers = []mirrorBuffer{
		newPerfBuffer(b, h, "perf", perf.ReaderOptions{}),
		newPerfBuffer(b, h, "perf-watermark", perf.ReaderOptions{Watermark: mirrorBuf / 2}),
		newRingBuffer(b, h, "ring", 0),
		newRingBuffer(b, h, "ring-nowakeup", 1), // BPF_RB_NO_WAKEUP
	}
	return k
}

// cloneProgram builds a tc program that sends a clone of the packet out of
// ifindex (bpf_clone_redirect, egress) and returns the pass verdict.
func cloneProgram(b *testing.B, ifindex int) *ebpf.Program {
	return bareProgram(b, hookTC,
		asm.Mov.Imm(asm.R2, int32(ifindex)),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnCloneRedirect.Call())
}

// newPerfBuffer builds hook h's perf mechanism on a perf event array of
// its own, drained by a reader with opts.
func newPerfBuffer(b *testing.B, h hook, name string, opts perf.ReaderOptions) mirrorBuffer {
	events := benchMap(b, &ebpf.MapSpec{Type: ebpf.PerfEventArray}) // one entry per CPU
	rd, err := perf.NewReaderWithOptions(events, mirrorBuf, opts)
	if err != nil {
		b.Fatal(err)
	}
	drain := startMirrorDrain(b, rd.Close, func() (bool, uint64, error) {
		rd.SetDeadline(time.Now().Add(time.Millisecond))
		rec, err := rd.Read()
		return err == nil && rec.LostSamples == 0, rec.LostSamples, err
	})
	return mirrorBuffer{name: name, prog: bareProgram(b, h, perfOutputInstructions(h, events)...), drain: drain}
}

// newRingBuffer builds hook h's ring mechanism, submitting with flags, on
// a ring buffer of its own and a drop counter.
func newRingBuffer(b *testing.B, h hook, name string, flags int32) mirrorBuffer {
	ring := benchMap(b, &ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: mirrorBuf})
	drops := benchMap(b, &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		b.Fatal(err)
	}
	drain := startMirrorDrain(b, rd.Close, func() (bool, uint64, error) {
		rd.SetDeadline(time.Now().Add(time.Millisecond))
		_, err := rd.Read()
		return err == nil, 0, err
	})
	return mirrorBuffer{name: name, prog: bareProgram(b, h, ringInstructions(h, ring, drops, flags)...), drain: drain, drops: drops}
}

// mirrorSizes are the cases of kit k on a 1500-byte and a 64-byte TCP
// frame (Ethernet, IPv4 and TCP headers, 54 bytes, and a payload).
func mirrorSizes(k *mirrorKit) []mirrorSize {
	var sizes []mirrorSize
	for _, n := range []int{1500, 64} {
		frame := buildPacket(pktSpec{
			src: netip.AddrPortFrom(client4, 40000), dst: netip.AddrPortFrom(vip4, 80),
			proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, n-54),
		})
		same := func(int) []byte { return frame }
		s := mirrorSize{label: fmt.Sprintf("%dB", n)}
		add := func(name string, p *ebpf.Program) {
			if p != nil {
				s.cases = append(s.cases, &perPacketCase{name: s.label + "-" + name, prog: p, frame: same})
			}
		}
		add("pass-baseline", k.baseline)
		add("clone", k.clone)
		add("clone-peer-down", k.cloneDown)
		for _, m := range k.buffers {
			add(m.name, m.prog)
		}
		sizes = append(sizes, s)
	}
	return sizes
}

// snapInstructions start a mirror program of hook h: they leave the
// context in R6, the frame's length in R8 and the snap length,
// min(mirrorSnap, length), in R7, and jump to "out" on an empty frame
// (the copy helpers take 1 byte at least).
func snapInstructions(h hook) asm.Instructions {
	ins := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	if h == hookTC {
		// struct __sk_buff starts with len (uapi, fixed).
		ins = append(ins, asm.LoadMem(asm.R8, asm.R1, 0, asm.Word))
	} else {
		// XDP's context has no length, and the verifier refuses
		// data_end - data as a number: ask the helper.
		ins = append(ins, asm.FnXdpGetBuffLen.Call(), asm.Mov.Reg(asm.R8, asm.R0))
	}
	return append(ins,
		asm.Mov.Reg(asm.R7, asm.R8),
		asm.JLE.Imm(asm.R7, mirrorSnap, "snapped"),
		asm.Mov.Imm(asm.R7, mirrorSnap),
		asm.JLT.Imm(asm.R7, 1, "out").WithSymbol("snapped"),
	)
}

// perfOutputInstructions copy the header and the snap of the frame to the
// perf event array events, on the current CPU's buffer.
func perfOutputInstructions(h hook, events *ebpf.Map) asm.Instructions {
	return append(snapInstructions(h),
		asm.StoreMem(asm.RFP, -8, asm.R8, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, events.FD()),
		// flags: the bytes of the packet to append in the upper 32 bits,
		// BPF_F_CURRENT_CPU (0xffffffff) in the lower.
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.LSh.Imm(asm.R3, 32),
		asm.Mov.Imm32(asm.R4, -1),
		asm.Or.Reg(asm.R3, asm.R4),
		asm.Mov.Reg(asm.R4, asm.RFP),
		asm.Add.Imm(asm.R4, -8),
		asm.Mov.Imm(asm.R5, mirrorHdr),
		asm.FnPerfEventOutput.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), // bareProgram returns the pass verdict
	)
}

// ringInstructions reserve a record of the header and mirrorSnap bytes in
// ring, copy the snap of the frame into it with the hook's load helper and
// submit it with flags; a failed reserve adds one to drops[0].
func ringInstructions(h hook, ring, drops *ebpf.Map, flags int32) asm.Instructions {
	load := asm.FnSkbLoadBytes
	if h == hookXDP {
		load = asm.FnXdpLoadBytes
	}
	return append(snapInstructions(h),
		asm.LoadMapPtr(asm.R1, ring.FD()),
		asm.Mov.Imm(asm.R2, mirrorHdr+mirrorSnap),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "full"),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.StoreMem(asm.R9, 0, asm.R8, asm.Word),
		asm.StoreMem(asm.R9, 4, asm.R7, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.R9),
		asm.Add.Imm(asm.R3, mirrorHdr),
		asm.Mov.Reg(asm.R4, asm.R7),
		load.Call(),
		asm.Mov.Reg(asm.R1, asm.R9),
		asm.Mov.Imm(asm.R2, flags),
		asm.FnRingbufSubmit.Call(),
		asm.Ja.Label("out"),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word).WithSymbol("full"),
		asm.LoadMapPtr(asm.R1, drops.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), // bareProgram returns the pass verdict
	)
}

// mirrorDrain counts what a reader goroutine takes out of a perf or ring
// buffer while the rounds run: records delivered, and records the kernel
// reports lost (perf only).
type mirrorDrain struct {
	delivered, lost atomic.Uint64
	close           func() error
	done            chan error
}

// startMirrorDrain starts a goroutine calling read until it fails; read
// returns whether it got a record, and how many the kernel reported lost.
// The reader is closed with b at the latest.
func startMirrorDrain(b *testing.B, closeReader func() error, read func() (bool, uint64, error)) *mirrorDrain {
	d := &mirrorDrain{close: closeReader, done: make(chan error, 1)}
	go func() {
		for {
			got, lost, err := read()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if err != nil {
				d.done <- err
				return
			}
			if got {
				d.delivered.Add(1)
			}
			d.lost.Add(lost)
		}
	}()
	b.Cleanup(func() { d.close() })
	return d
}

// finish waits (2 s at most) until the reader has accounted for want
// records, closes it and returns what it counted.
func (d *mirrorDrain) finish(b *testing.B, want uint64) (delivered, lost uint64) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if d.delivered.Load()+d.lost.Load() >= want {
			break
		}
	}
	if err := d.close(); err != nil {
		b.Fatal(err)
	}
	if err := <-d.done; !errors.Is(err, perf.ErrClosed) && !errors.Is(err, ringbuf.ErrClosed) {
		b.Fatalf("drain: %v", err)
	}
	return d.delivered.Load(), d.lost.Load()
}

// vethCount is the mirror veth's transmit counters and its peer's
// received packets (what `ip -s link` shows), read at one moment.
type vethCount struct {
	txPackets, txDropped, peerRx uint64
}

func vethTx(b *testing.B, f *fixture, name string) vethCount {
	var c vethCount
	err := f.inNS(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		p, err := netlink.LinkByName(name + "p")
		if err != nil {
			return err
		}
		s := l.Attrs().Statistics
		c = vethCount{txPackets: s.TxPackets, txDropped: s.TxDropped, peerRx: p.Attrs().Statistics.RxPackets}
		return nil
	})
	if err != nil {
		b.Fatalf("veth counters: %v", err)
	}
	return c
}

// reportMirror reports one frame size's cases: each one's median (-ns)
// and interquartile mean (-iqm-ns), and for all but the baseline,
// s.cases[0], the ratios to it of the medians (-x) and of the
// interquartile means (-iqm-x).
func reportMirror(b *testing.B, s mirrorSize) {
	base := s.cases[0]
	for _, c := range s.cases {
		m := median(c.times)
		b.ReportMetric(float64(m.Nanoseconds()), c.name+"-ns")
		b.ReportMetric(interquartileMean(c.times), c.name+"-iqm-ns")
		if c != base {
			b.ReportMetric(float64(m)/float64(median(base.times)), c.name+"-x")
			b.ReportMetric(interquartileMean(c.times)/interquartileMean(base.times), c.name+"-iqm-x")
		}
	}
}
