package agent_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/replay"
	"github.com/graylane/graylane/pkg/service"
)

// replayPort is the UDP port of the replay tests' receivers.
const replayPort = 9970

// TestReplay (issue 19's acceptance): 2 000 UDP datagrams 1 ms apart,
// replayed by graylanectl out of the client's eth0 through the gateway's
// data plane to the VIP of a UDP service, arrive at a backend whole and
// on time by the backend's kernel receive timestamps: every datagram, in
// order, the total span within 0.1 % of the file's (no drift: every send
// is anchored to the start); tcpreplay replays the same file, measured the
// same way in the same run, and both inter-arrival error p99s are logged.
// They are timing figures, not asserted: under `make test`'s parallel
// packages even their ratio is noise (graylanectl 1.08 ms vs tcpreplay
// 143 µs seen in one CI run, the other way round in others);
// BenchmarkReplayRates measures them on a quiet machine.
func TestReplay(t *testing.T) {
	tcpreplay := testenv.RequireTool(t, "tcpreplay", "tcpreplay")
	e := setup(t, netlab.Config{VethXDPReady: true}, "auto")
	svc := web("replay", e.lab, netlab.VIP4, replayPort, replayPort, service.UDP, 0)
	if err := e.agent.Apply(e.ctx, []service.Service{svc}); err != nil {
		t.Fatal(err)
	}
	const n, gap = 2000, time.Millisecond
	file := writeReplayPcap(t, e.lab, netip.AddrPortFrom(netlab.VIP4, replayPort), n, gap)
	bin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	runs := []struct {
		tool string
		args []string
	}{
		{"graylanectl", []string{bin, "replay", file, "--iface", netlab.HostIf, "-o", "json"}},
		{"tcpreplay", []string{tcpreplay, "-q", "-i", netlab.HostIf, file}},
	}
	p99 := map[string]time.Duration{}
	for _, r := range runs {
		got := measureReplay(t, e.ctx, e.lab.Client, e.lab.Backends(), n, r.args)
		q, span := replay.QuantilesOf(got.gapErrors(gap)), got.span()
		want := time.Duration(n-1) * gap
		p99[r.tool] = time.Duration(q.P99)
		t.Logf("%s: %d/%d datagrams, inter-arrival error p50 %v p99 %v max %v, span %v (file %v, %+.4f%%)",
			r.tool, len(got.ts), n, time.Duration(q.P50), time.Duration(q.P99), time.Duration(q.Max), span, want,
			100*float64(span-want)/float64(want))
		if r.tool != "graylanectl" {
			continue
		}
		if len(got.ts) != n || !got.inOrder() {
			t.Errorf("%d of %d datagrams arrived (in order: %v)", len(got.ts), n, got.inOrder())
		}
		if d := span - want; d > want/1000 || d < -want/1000 {
			t.Errorf("span %v, want within 0.1%% of %v", span, want)
		}
	}
	// The p99s are logged, not compared: under make test's parallel load
	// they measure the machine more than the tools. BenchmarkReplayRates
	// compares them, alternating, on a quiet machine.
	t.Logf("inter-arrival error p99: graylanectl %v, tcpreplay %v", p99["graylanectl"], p99["tcpreplay"])
}

// BenchmarkReplayRates: the gap error of graylanectl replay and of
// tcpreplay, replaying the same files out of the client's eth0 over one
// veth to the gateway (no agent), measured by the gateway's kernel receive
// timestamps, at 10 000 and 100 000 packets/s and at 1 µs gaps (the top
// rate either reaches). Figures in docs/performance.md; run it once:
//
//	flock /tmp/graylane-lab.lock go test -run XXX -bench ReplayRates -benchtime 1x ./agent
func BenchmarkReplayRates(b *testing.B) {
	testenv.RequirePrivileges(b)
	tcpreplay := testenv.RequireTool(b, "tcpreplay", "tcpreplay")
	bin, err := ctl.Path()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, netlab.Config{Stable: -1, Canary: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	dst := netip.AddrPortFrom(netlab.GatewayClient4, replayPort)
	for _, rate := range []struct {
		name string
		n    int
		gap  time.Duration
	}{{"10kpps", 10000, 100 * time.Microsecond}, {"100kpps", 20000, 10 * time.Microsecond}, {"top", 20000, time.Microsecond}} {
		file := writeReplayPcap(b, lab, dst, rate.n, rate.gap)
		for _, tool := range []struct {
			name string
			args []string
		}{
			{"graylanectl", []string{bin, "replay", file, "--iface", netlab.HostIf, "-o", "json"}},
			{"tcpreplay", []string{tcpreplay, "-q", "-i", netlab.HostIf, file}},
		} {
			got := measureReplay(b, ctx, lab.Client, []*netlab.Host{lab.Gateway}, rate.n, tool.args)
			q := replay.QuantilesOf(got.gapErrors(rate.gap))
			rx := 0.0
			if s := got.span(); s > 0 {
				rx = float64(len(got.ts)-1) / s.Seconds()
			}
			b.Logf("%s %s: %d/%d arrived at %.0f/s; gap error p50 %v p99 %v max %v", rate.name, tool.name, len(got.ts), rate.n, rx,
				time.Duration(q.P50), time.Duration(q.P99), time.Duration(q.Max))
			b.ReportMetric(float64(q.P99)/1e3, rate.name+"-"+tool.name+"-p99-µs")
		}
	}
}

// writeReplayPcap writes n UDP datagrams gap apart from the client to dst,
// addressed on the wire from the client's eth0 to the gateway's cli0 (as
// tcpreplay, which rewrites nothing, must send them). Each payload starts
// with its sequence number.
func writeReplayPcap(tb testing.TB, lab *netlab.Lab, dst netip.AddrPort, n int, gap time.Duration) string {
	tb.Helper()
	src := mac(tb, lab.Client, netlab.HostIf)
	gw := mac(tb, lab.Gateway, netlab.GatewayClientIf)
	path := filepath.Join(tb.TempDir(), "replay.pcap")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		tb.Fatal(err)
	}
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: gw, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: lab.Client.Addr4.AsSlice(), DstIP: dst.Addr().AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dst.Port())}
	_ = udp.SetNetworkLayerForChecksum(ip)
	start := time.Unix(1_700_000_000, 0)
	for i := range n {
		payload := binary.BigEndian.AppendUint32(make([]byte, 0, 32), uint32(i))
		buf := gopacket.NewSerializeBuffer()
		ip.Id = uint16(i)
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, udp, gopacket.Payload(append(payload, make([]byte, 28)...))); err != nil {
			tb.Fatal(err)
		}
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * gap), CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}
		if err := w.WritePacket(ci, buf.Bytes()); err != nil {
			tb.Fatal(err)
		}
	}
	return path
}

// mac is the Ethernet address of interface name in h's namespace.
func mac(tb testing.TB, h *netlab.Host, name string) net.HardwareAddr {
	tb.Helper()
	var hw net.HardwareAddr
	if err := h.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err == nil {
			hw = l.Attrs().HardwareAddr
		}
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return hw
}

// arrivals are datagrams' sequence numbers and kernel receive times.
type arrivals struct {
	seq []uint32
	ts  []time.Duration // from the first
}

func (a arrivals) span() time.Duration {
	if len(a.ts) == 0 {
		return 0
	}
	return a.ts[len(a.ts)-1]
}

func (a arrivals) inOrder() bool {
	for i := range a.seq {
		if a.seq[i] != uint32(i) {
			return false
		}
	}
	return true
}

// gapErrors is each inter-arrival time minus the file's gap (times the
// sequence numbers skipped, for a lost datagram).
func (a arrivals) gapErrors(gap time.Duration) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(a.ts); i++ {
		want := time.Duration(a.seq[i]-a.seq[i-1]) * gap
		out = append(out, a.ts[i]-a.ts[i-1]-want)
	}
	return out
}

// measureReplay listens on replayPort of every receiver host with kernel
// receive timestamps, runs the replay command in from's namespace, and
// returns what arrived (at most n, waiting a second after the command).
func measureReplay(tb testing.TB, ctx context.Context, from *netlab.Host, receivers []*netlab.Host, n int, args []string) arrivals {
	tb.Helper()
	var mu sync.Mutex
	var got []arrival
	var conns []*net.UDPConn
	for _, h := range receivers {
		c, err := h.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), replayPort).String())
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, c)
		go receive(tb, c, &mu, &got)
	}
	out, err := from.Command(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%v: %v\n%s", args, err, out)
	}
	if len(args) > 1 && args[1] == "replay" {
		var sum replay.Summary
		if json.Unmarshal(out, &sum) == nil {
			tb.Logf("graylanectl's own view: sent %d, late %d, gap error p50 %dns p99 %dns max %dns, %s, %s, launch time: %s",
				sum.Sent, sum.Late, sum.GapErrorNs.P50, sum.GapErrorNs.P99, sum.GapErrorNs.Max, sum.Mode, sum.Timing, sum.LaunchTime)
		}
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := len(got) >= n
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range conns {
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	var a arrivals
	for _, g := range got {
		a.seq = append(a.seq, g.seq)
		a.ts = append(a.ts, g.at.Sub(got[0].at))
	}
	return a
}

type arrival struct {
	seq uint32
	at  time.Time
}

// receive reads datagrams from c with their SO_TIMESTAMPNS receive times
// until c is closed.
func receive(tb testing.TB, c *net.UDPConn, mu *sync.Mutex, got *[]arrival) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	})
	buf, oob := make([]byte, 2048), make([]byte, 128)
	for {
		nb, noob, _, _, err := c.ReadMsgUDP(buf, oob)
		if err != nil {
			return
		}
		at, ok := rxTime(oob[:noob])
		if nb < 4 || !ok {
			continue
		}
		mu.Lock()
		*got = append(*got, arrival{binary.BigEndian.Uint32(buf), at})
		mu.Unlock()
	}
}

// rxTime is the SCM_TIMESTAMPNS in a datagram's control messages.
func rxTime(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}
