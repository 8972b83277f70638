package stitch

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/graylane/graylane/internal/testenv"
)

// What the cost of stitch_tc is: it sits first at the TCX ingress of every
// client- and backend-facing interface, so every packet there, stitched or
// not, pays for its parse and its stitch_keys lookup. BPF_PROG_TEST_RUN
// times the program in the kernel; a program that only returns is the
// floor (the test run's own loop and dispatch), measured alternately with
// the subject in the same run so that both see the same machine state.
//
//	flock /tmp/graylane-lab.lock taskset -c 1 go test -run TestStitchCostVerdicts \
//		-bench StitchCost -benchtime 1x -count 1 ./pkg/stitch/

// Verdicts. stitch_tc passes what it leaves alone with TC_ACT_UNSPEC (-1,
// the next program and the stack decide), not TC_ACT_OK.
const (
	tcActOK     = uint32(0)
	tcActShot   = uint32(2)
	tcActUnspec = ^uint32(0)
)

const (
	costRounds = 5       // alternations of baseline and subject; medians taken
	costRepeat = 1000000 // runs a round: the kernel reports their mean, in whole ns
)

// The held pair: the client's connection to the gateway (Local is the VIP)
// and the gateway's to the backend.
var (
	costClient  = Ends{Local: netip.MustParseAddrPort("10.0.0.100:80"), Remote: netip.MustParseAddrPort("10.0.0.1:40000")}
	costBackend = Ends{Local: netip.MustParseAddrPort("10.0.1.1:50000"), Remote: netip.MustParseAddrPort("10.0.1.2:8080")}
)

// costFixture is the loaded program with one held pair, and the baseline.
type costFixture struct {
	k    *Kernel
	s    *Stitch
	base *ebpf.Program
}

func newCostFixture(tb testing.TB) *costFixture {
	tb.Helper()
	testenv.RequirePrivileges(tb)
	k, err := Open(Options{MaxPairs: 1024})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = k.Close() })
	s, err := k.Hold(costClient, costBackend)
	if err != nil {
		tb.Fatal(err)
	}
	base, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = base.Close() })
	return &costFixture{k: k, s: s, base: base}
}

// costCase is one kind of packet and what stitch_tc must answer to it.
type costCase struct {
	name  string
	frame []byte
	want  uint32
	base  bool // time the baseline itself (its noise against itself)
}

// The ACK number the held pure ACK carries: Acks must read it back after
// a run, the proof that the packet's tuple matched the held key (a miss
// answers TC_ACT_UNSPEC too, and would be timed as the common case).
const costHeldAck = 0x11223344

func costCases() []costCase {
	v6src, v6dst := netip.MustParseAddrPort("[2001:db8::1]:40000"), netip.MustParseAddrPort("[2001:db8::100]:80")
	unknown := netip.AddrPortFrom(costClient.Remote.Addr(), 40001) // the held client's host, another port
	const ack, psh = 0x10, 0x08
	return []costCase{
		{name: "baseline", frame: costFrame(unknown, costClient.Local, false, ack|psh, 1, 20), want: tcActOK, base: true},
		{name: "udp4", frame: costFrame(costClient.Remote, costClient.Local, true, 0, 0, 42), want: tcActUnspec},
		{name: "tcp4_unknown", frame: costFrame(unknown, costClient.Local, false, ack|psh, 1, 20), want: tcActUnspec},
		{name: "tcp6_unknown", frame: costFrame(v6src, v6dst, false, ack|psh, 1, 10), want: tcActUnspec},
		// The client key is (client.Remote -> client.Local): the client's packets.
		{name: "held_ack4", frame: costFrame(costClient.Remote, costClient.Local, false, ack, costHeldAck, 0), want: tcActUnspec},
	}
}

// costFrame builds an Ethernet frame from src to dst, IPv4 or IPv6 by the
// addresses, carrying UDP or TCP (with flags, ack and a timestamps option,
// as Linux peers send: the header is 32 bytes) and payload zero bytes.
// Lengths are right; checksums are not computed (stitch_tc never checks
// them). Ports go in network order, as parse() reads them into the key
// that tuple() writes with htons.
func costFrame(src, dst netip.AddrPort, udp bool, flags uint8, ack uint32, payload int) []byte {
	l4, proto := make([]byte, 32), byte(6)
	if udp {
		l4, proto = make([]byte, 8), 17
		binary.BigEndian.PutUint16(l4[4:], uint16(8+payload))
	} else {
		binary.BigEndian.PutUint32(l4[4:], 1000) // seq
		binary.BigEndian.PutUint32(l4[8:], ack)
		l4[12], l4[13] = 8<<4, flags // data offset: 8 words
		binary.BigEndian.PutUint16(l4[14:], 0xffff)
		copy(l4[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}) // NOP NOP TS
	}
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	l4 = append(l4, make([]byte, payload)...)

	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0, 0}
	var ip []byte
	if src.Addr().Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[6], ip[8], ip[9] = 0x40, 64, proto // DF, TTL
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6], ip[7] = proto, 64
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	return slices.Concat(eth, ip, l4)
}

// TestStitchCostVerdicts checks, one run each, that the benchmark's
// packets take the paths they are meant to time, and that a held pair's
// data segment on the same tuple is dropped (the key really matches).
func TestStitchCostVerdicts(t *testing.T) {
	f := newCostFixture(t)
	for _, c := range costCases() {
		p := f.k.objs.StitchTc
		if c.base {
			p = f.base
		}
		if ret, _, err := p.Benchmark(c.frame, 1, nil); err != nil || ret != c.want {
			t.Errorf("%s (%d bytes): verdict %d, %v; want %d", c.name, len(c.frame), int32(ret), err, int32(c.want))
		}
	}
	f.checkHeldAck(t, costHeldAck)

	data := costFrame(costClient.Remote, costClient.Local, false, 0x18, 7, 20)
	if ret, _, err := f.k.objs.StitchTc.Benchmark(data, 1, nil); err != nil || ret != tcActShot {
		t.Errorf("held data: verdict %d, %v; want TC_ACT_SHOT", int32(ret), err)
	}
	f.checkHeldAck(t, 7)
}

// checkHeldAck fails tb unless the held pair recorded ack from the client.
func (f *costFixture) checkHeldAck(tb testing.TB, ack uint32) {
	tb.Helper()
	a, err := f.k.Acks(f.s)
	if err != nil {
		tb.Fatal(err)
	}
	if !a.ClientAcked || a.FromClient != ack {
		tb.Fatalf("held pair's client ack: %#x (seen %v), want %#x: the packet missed the key", a.FromClient, a.ClientAcked, ack)
	}
}

// BenchmarkStitchCost reports, for each kind of packet, stitch_tc's
// ns/pkt and its ratio to the baseline timed in the same run.
func BenchmarkStitchCost(b *testing.B) {
	f := newCostFixture(b)
	for _, c := range costCases() {
		b.Run(c.name, func(b *testing.B) {
			subject := f.k.objs.StitchTc
			if c.base {
				subject = f.base
			}
			var base, subj []time.Duration
			for range b.N {
				for range costRounds {
					base = append(base, costRun(b, f.base, c.frame, tcActOK))
					subj = append(subj, costRun(b, subject, c.frame, c.want))
				}
			}
			if c.name == "held_ack4" {
				f.checkHeldAck(b, costHeldAck)
			}
			mb, ms := costMedian(base), costMedian(subj)
			b.ReportMetric(0, "ns/op") // the wall time of all rounds: meaningless here
			b.ReportMetric(ms, "ns/pkt")
			b.ReportMetric(mb, "base-ns/pkt")
			b.ReportMetric(ms/mb, "x-baseline")
		})
	}
}

// costRun times costRepeat runs of p on frame, failing b on a wrong verdict.
func costRun(b *testing.B, p *ebpf.Program, frame []byte, want uint32) time.Duration {
	ret, d, err := p.Benchmark(frame, costRepeat, nil)
	if err != nil {
		b.Fatal(err)
	}
	if ret != want {
		b.Fatalf("verdict %d, want %d", int32(ret), int32(want))
	}
	return d
}

// costMedian is the median of ds in ns: rounds a disturbance hit do not move it.
func costMedian(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return float64(s[n/2-1]+s[n/2]) / 2
	}
	return float64(s[len(s)/2])
}
