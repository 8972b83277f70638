package datapath

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkPerPacket measures the kernel's time for one program run on each
// path, against a bare program that only returns the pass verdict.
//
// Method: every measurement is one BPF_PROG_TEST_RUN with repeat=1, timed
// by the kernel, so every packet starts from the original bytes (with a
// larger repeat the kernel reruns the already-rewritten frame, which takes
// another path). The four cases run interleaved, round by round, so machine
// noise hits them alike; the reported figures are medians and their ratios
// to the baseline within this one run. The path counters are checked to
// prove that every run took the path it is named after.
//
//	go test -run XXX -bench PerPacket -benchtime 20000x ./pkg/datapath
func BenchmarkPerPacket(b *testing.B) {
	f := newFixture(b)
	dns := webService("dns", vip4, service.UDP, 5000)
	dns.Port = 53
	if err := f.dp.Apply([]service.Service{webService("web", vip4, service.TCP, 5000), dns}); err != nil {
		b.Fatal(err)
	}
	flows := 0 // new-flow tuples used so far: each must be new to the table
	for _, h := range hooks {
		b.Run(h.String(), func(b *testing.B) { benchPerPacket(b, f, h, &flows) })
	}
}

func benchPerPacket(b *testing.B, f *fixture, h hook, flows *int) {
	objs := f.dp.Objects()
	prog, progType, passRet := objs.XdpClient, ebpf.XDP, int32(xdpPass)
	if h == hookTC {
		prog, progType, passRet = objs.TcClient, ebpf.SchedCLS, -1
	}
	baseline, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    progType,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, passRet),
			asm.Return(),
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer baseline.Close()

	client := netip.AddrPortFrom(client4, 1+uint16(h))
	established := buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)})
	nonService := buildPacket(pktSpec{src: client, dst: netip.MustParseAddrPort("198.18.100.99:80"), proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)})
	// Create the established flow.
	if v, _ := f.run(b, h, false, f.cliIf, buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN})); v != vRedirect {
		b.Fatalf("setup: verdict %s", v)
	}
	// New flows: a distinct tuple per round (port and client address).
	newFlow := func(int) []byte {
		i := *flows
		*flows++
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2 + byte(i/60000%200), 1}), uint16(1024+i%60000))
		return buildPacket(pktSpec{src: src, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN, seq: uint32(i), payload: make([]byte, 64)})
	}

	// New UDP flows also pay the flow-table lookup that a bare SYN skips.
	newUDPFlow := func(int) []byte {
		i := *flows
		*flows++
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2 + byte(i/60000%200), 1}), uint16(1024+i%60000))
		return buildPacket(pktSpec{src: src, dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: make([]byte, 64)})
	}

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
		{name: "new-flow", prog: prog, frame: newFlow, stat: "flow_new"},
		{name: "new-udp-flow", prog: prog, frame: newUDPFlow, stat: "flow_new"},
	}
	before, err := f.dp.Stats()
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
	// Both new-flow cases count flow_new: together exactly 2 per round.
	if got := after["flow_new"] - before["flow_new"]; got != 2*uint64(b.N) {
		b.Fatalf("flow_new grew by %d over %d rounds of two new flows", got, b.N)
	}
	for _, c := range cases {
		if c.stat == "flow_hit" && after[c.stat]-before[c.stat] != uint64(b.N) {
			b.Fatalf("%s: flow_hit grew by %d over %d runs", c.name, after[c.stat]-before[c.stat], b.N)
		}
	}
	base := median(cases[0].times)
	for _, c := range cases {
		m := median(c.times)
		b.ReportMetric(float64(m.Nanoseconds()), c.name+"-ns")
		if c != cases[0] {
			b.ReportMetric(float64(m)/float64(base), c.name+"-x")
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
