package netlab

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/internal/testenv"
)

var (
	testSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	testDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// forge returns n frames of spec, made the way Flood makes them: the
// buffers of a small batch are reused, so most frames are patched from an
// earlier one.
func forge(t *testing.T, spec FloodSpec, n int) [][]byte {
	t.Helper()
	spec, err := spec.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	gen := newFrameGen(spec, testSrcMAC, testDstMAC)
	mm := newMmsgBatch(gen, 3)
	var out [][]byte
	for len(out) < n {
		mm.forge(gen, min(3, n-len(out)))
		for _, b := range mm.bufs[:mm.n] {
			out = append(out, bytes.Clone(b))
		}
	}
	return out
}

// checkFrame decodes frame with gopacket and checks it against spec (with
// its defaults): addresses, ports, flags, lengths and every checksum. It
// returns the forged source.
func checkFrame(t *testing.T, spec FloodSpec, frame []byte) netip.AddrPort {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	// A random UDP payload may fail to decode as whatever gopacket guesses
	// from the ports (Geneve, DNS, ...): only the layers up to UDP matter.
	if el := pkt.ErrorLayer(); el != nil && pkt.TransportLayer() == nil {
		t.Fatalf("decode: %v", el.Error())
	}
	eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.SrcMAC, testSrcMAC) || !bytes.Equal(eth.DstMAC, testDstMAC) {
		t.Fatalf("MACs %v > %v", eth.SrcMAC, eth.DstMAC)
	}
	var src, dst netip.Addr
	var nl gopacket.NetworkLayer
	if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		if err, r := ip.VerifyChecksum(); err != nil || !r.Valid {
			t.Fatalf("IPv4 checksum %#x, want %#x (%v)", r.Actual, r.Correct, err)
		}
		if int(ip.Length) != len(frame)-ethHdrLen || ip.TTL != floodTTL {
			t.Fatalf("IPv4 length %d TTL %d for a frame of %d", ip.Length, ip.TTL, len(frame))
		}
		nl = ip
	} else if ip, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		if int(ip.Length) != len(frame)-ethHdrLen-ip6HdrLen || ip.HopLimit != floodTTL {
			t.Fatalf("IPv6 payload length %d hop limit %d for a frame of %d", ip.Length, ip.HopLimit, len(frame))
		}
		nl = ip
	} else {
		t.Fatalf("no IP layer: %v", pkt)
	}
	if dst != spec.Dst.Addr() || !spec.Src.Contains(src) {
		t.Fatalf("%v > %v; want a source in %v, destination %v", src, dst, spec.Src, spec.Dst.Addr())
	}
	var sport, dport uint16
	switch l4 := pkt.TransportLayer().(type) {
	case *layers.TCP:
		l4.SetNetworkLayerForChecksum(nl)
		if err, r := l4.VerifyChecksum(); err != nil || !r.Valid {
			t.Fatalf("TCP checksum %#x, want %#x (%v)", r.Actual, r.Correct, err)
		}
		wantSYN := spec.Kind == FloodSYN
		if l4.SYN != wantSYN || l4.ACK == wantSYN || l4.RST || l4.FIN || l4.PSH || len(l4.Payload) != 0 {
			t.Fatalf("%v: TCP flags SYN %v ACK %v RST %v FIN %v, payload %d", spec.Kind, l4.SYN, l4.ACK, l4.RST, l4.FIN, len(l4.Payload))
		}
		if wantSYN && l4.Ack != 0 {
			t.Fatalf("SYN with ack number %d", l4.Ack)
		}
		sport, dport = uint16(l4.SrcPort), uint16(l4.DstPort)
	case *layers.UDP:
		l4.SetNetworkLayerForChecksum(nl)
		if err, r := l4.VerifyChecksum(); err != nil || !r.Valid || r.Actual == 0 {
			t.Fatalf("UDP checksum %#x, want %#x (%v)", r.Actual, r.Correct, err)
		}
		if spec.Kind != FloodUDP || len(l4.Payload) != FloodUDPPayload || int(l4.Length) != udpHdrLen+FloodUDPPayload {
			t.Fatalf("%v: UDP length %d, payload %d", spec.Kind, l4.Length, len(l4.Payload))
		}
		sport, dport = uint16(l4.SrcPort), uint16(l4.DstPort)
	default:
		t.Fatalf("%v: transport layer %T", spec.Kind, l4)
	}
	if sport < 1024 || dport != spec.Dst.Port() {
		t.Fatalf("ports %d > %d; want a source port >= 1024, destination %d", sport, dport, spec.Dst.Port())
	}
	return netip.AddrPortFrom(src, sport)
}

func TestFloodFrames(t *testing.T) {
	for _, kind := range []FloodKind{FloodSYN, FloodACK, FloodUDP} {
		for _, c := range []struct {
			dst     netip.AddrPort
			src     netip.Prefix
			minSrcs int // distinct sources expected in 1000 frames
		}{
			{netip.AddrPortFrom(VIP4, 80), netip.Prefix{}, 950},
			{netip.AddrPortFrom(VIP6, 443), netip.Prefix{}, 1000},
			{netip.AddrPortFrom(VIP4, 53), netip.MustParsePrefix("198.18.200.0/30"), 4},
			{netip.AddrPortFrom(VIP6, 8080), netip.MustParsePrefix("fd00:6c61:ff:1::7/128"), 1},
		} {
			spec := FloodSpec{Kind: kind, Dst: c.dst, Src: c.src, Count: 1000, Seed: 7}
			full, _ := spec.withDefaults()
			srcs := map[netip.Addr]bool{}
			ports := map[uint16]bool{}
			for _, f := range forge(t, spec, 1000) {
				src := checkFrame(t, full, f)
				srcs[src.Addr()] = true
				ports[src.Port()] = true
			}
			if len(srcs) < c.minSrcs || len(srcs) > 1000 || len(ports) < 950 {
				t.Errorf("%v to %v from %v: %d distinct sources, %d distinct ports in 1000 frames; want >= %d, >= 950",
					kind, c.dst, full.Src, len(srcs), len(ports), c.minSrcs)
			}
		}
	}
}

func TestFloodFramesSeed(t *testing.T) {
	spec := FloodSpec{Kind: FloodUDP, Dst: netip.AddrPortFrom(VIP6, 2152), Count: 10}
	a, b := forge(t, spec, 50), forge(t, spec, 50)
	spec.Seed = 1
	c := forge(t, spec, 50)
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("frame %d differs with the same seed:\n%x\n%x", i, a[i], b[i])
		}
		if bytes.Equal(a[i], c[i]) {
			t.Fatalf("frame %d is the same with seeds 0 and 1", i)
		}
	}
}

// badFloodSpecs are refused by Flood, each with an error that says why.
var badFloodSpecs = []struct {
	name string
	spec FloodSpec
	want string
}{
	{"count 0", FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80)}, "count 0"},
	{"count too big", FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80), Count: MaxFloodCount + 1}, "count"},
	{"no kind", FloodSpec{Dst: netip.AddrPortFrom(VIP4, 80), Count: 1000}, "unknown kind"},
	{"no destination", FloodSpec{Kind: FloodSYN, Count: 1000}, "invalid destination"},
	{"port 0", FloodSpec{Kind: FloodUDP, Dst: netip.AddrPortFrom(VIP4, 0), Count: 1000}, "port 0"},
	{"outside the lab", FloodSpec{Kind: FloodSYN, Dst: netip.MustParseAddrPort("192.0.2.1:80"), Count: 1000}, "outside the lab"},
	{"v6 source for v4", FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80), Src: SpoofNet6, Count: 1000}, "not of the family"},
	{"v4 source for v6", FloodSpec{Kind: FloodACK, Dst: netip.AddrPortFrom(VIP6, 80), Src: SpoofNet4, Count: 1000}, "not of the family"},
	{"source outside the lab", FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80), Src: netip.MustParsePrefix("10.0.0.0/8"), Count: 1000}, "source prefix 10.0.0.0/8 is outside"},
	{"source wider than the lab", FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80), Src: netip.MustParsePrefix("198.0.0.0/8"), Count: 1000}, "outside the lab"},
	{"negative duration", FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80), Count: 1000, MaxDuration: -1}, "max duration"},
	{"duration too long", FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80), Count: 1000, MaxDuration: time.Hour}, "max duration"},
	{"negative rate", FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80), Count: 1000, Rate: -5}, "negative rate"},
}

func TestFloodSpecErrors(t *testing.T) {
	for _, c := range badFloodSpecs {
		if _, err := c.spec.withDefaults(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v; want one with %q", c.name, err, c.want)
		}
	}
	good := FloodSpec{Kind: FloodSYN, Dst: netip.MustParseAddrPort("[::ffff:198.18.100.1]:80"), Count: 1}
	got, err := good.withDefaults()
	if err != nil || got.Dst != netip.AddrPortFrom(VIP4, 80) || got.Src != SpoofNet4 || got.MaxDuration != DefaultFloodDuration {
		t.Errorf("defaults: %+v, %v", got, err)
	}
}

// linkStats reads the counters of h's interface ifname.
func linkStats(t *testing.T, h *Host, ifname string) netlink.LinkStatistics {
	t.Helper()
	var st netlink.LinkStatistics
	err := h.withNL(func(nlh *netlink.Handle) error {
		link, err := nlh.LinkByName(ifname)
		if err == nil {
			st = *link.Attrs().Statistics
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestFloodBadSpecSendsNothing(t *testing.T) {
	testenv.RequirePrivileges(t)
	l := NewT(t, Config{Stable: 1, Canary: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := linkStats(t, l.Gateway, GatewayClientIf).RxPackets
	for _, c := range badFloodSpecs {
		res, err := l.Client.Flood(ctx, c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) || res.Sent != 0 {
			t.Errorf("%s: %v, %v; want no packet and an error with %q", c.name, res, err, c.want)
		}
	}
	// Each bad spec asks for 1000 packets: a few more than none can only
	// be the kernel's own (neighbour discovery).
	if d := linkStats(t, l.Gateway, GatewayClientIf).RxPackets - before; d > 10 {
		t.Errorf("gateway received %d packets during bad floods", d)
	}
}

func TestFloodSYN(t *testing.T) {
	testenv.RequirePrivileges(t)
	l := NewT(t, Config{Stable: 1, Canary: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n, bound = 200_000, 10 * time.Second
	before := linkStats(t, l.Gateway, GatewayClientIf)
	res, err := l.Client.Flood(ctx, FloodSpec{
		Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP4, 80), Count: n, MaxDuration: bound, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SYN flood to %v: %v", VIP4, res)
	if res.Sent != n || res.TimedOut || res.Elapsed > bound {
		t.Errorf("flood: %v; want %d sent within %v", res, n, bound)
	}
	after := linkStats(t, l.Gateway, GatewayClientIf)
	if d := after.RxPackets - before.RxPackets; d < n {
		t.Errorf("gateway's %s received %d packets (dropped %d); want >= %d", GatewayClientIf, d, after.RxDropped-before.RxDropped, n)
	}
}

func TestFloodKinds(t *testing.T) {
	testenv.RequirePrivileges(t)
	l := NewT(t, Config{Stable: 1, Canary: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 20_000
	for _, spec := range []FloodSpec{
		{Kind: FloodSYN, Dst: netip.AddrPortFrom(VIP6, 80)},
		{Kind: FloodACK, Dst: netip.AddrPortFrom(VIP4, 80)},
		{Kind: FloodACK, Dst: netip.AddrPortFrom(VIP6, 80)},
		{Kind: FloodUDP, Dst: netip.AddrPortFrom(VIP4, 2152)},
		{Kind: FloodUDP, Dst: netip.AddrPortFrom(VIP6, 2152), Src: netip.MustParsePrefix("fd00:6c61:ff:7::/64")},
	} {
		spec.Count, spec.MaxDuration = n, 10*time.Second
		before := linkStats(t, l.Gateway, GatewayClientIf).RxPackets
		res, err := l.Client.Flood(ctx, spec)
		d := linkStats(t, l.Gateway, GatewayClientIf).RxPackets - before
		t.Logf("%v to %v: %v; gateway received %d", spec.Kind, spec.Dst, res, d)
		if err != nil || res.Sent != n || d < n {
			t.Errorf("%v to %v: %v, %v; gateway received %d; want %d", spec.Kind, spec.Dst, res, err, d, n)
		}
	}
}

func TestFloodBounds(t *testing.T) {
	testenv.RequirePrivileges(t)
	l := NewT(t, Config{Stable: 1, Canary: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := netip.AddrPortFrom(VIP4, 80)
	// Rate: 5000 packets at 10 000/s take about half a second.
	res, err := l.Client.Flood(ctx, FloodSpec{Kind: FloodSYN, Dst: dst, Count: 5000, Rate: 10_000})
	if err != nil || res.Sent != 5000 || res.Elapsed < 400*time.Millisecond || res.Elapsed > 2*time.Second {
		t.Errorf("paced flood: %v, %v; want 5000 sent in about 500ms", res, err)
	}
	// MaxDuration stops a long flood.
	res, err = l.Client.Flood(ctx, FloodSpec{Kind: FloodSYN, Dst: dst, Count: MaxFloodCount, Rate: 100_000, MaxDuration: 300 * time.Millisecond})
	if err != nil || !res.TimedOut || res.Sent >= MaxFloodCount || res.Elapsed > time.Second {
		t.Errorf("bounded flood: %v, %v; want it timed out after 300ms", res, err)
	}
	// So does ctx, with an error.
	cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer ccancel()
	res, err = l.Client.Flood(cctx, FloodSpec{Kind: FloodACK, Dst: dst, Count: MaxFloodCount, Rate: 100_000})
	if err == nil || res.TimedOut || res.Elapsed > time.Second {
		t.Errorf("cancelled flood: %v, %v; want an error after 200ms", res, err)
	}
}

// TestFloodAnswersStayInLab floods a backend's own listening port: its
// SYN-ACKs to the forged sources go back to the client, which drops them
// instead of forwarding them.
func TestFloodAnswersStayInLab(t *testing.T) {
	l, ctx := oneBackendLab(t)
	for _, key := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if v, err := l.Client.ReadSysctl(key); err != nil || v != "0" {
			t.Errorf("client %s = %q, %v; want 0", key, v, err)
		}
	}
	const n = 2000
	for _, a := range []netip.Addr{l.Stable[0].Addr4, l.Stable[0].Addr6} {
		before := linkStats(t, l.Gateway, GatewayClientIf)
		res, err := l.Client.Flood(ctx, FloodSpec{Kind: FloodSYN, Dst: netip.AddrPortFrom(a, HelloPort), Count: n, Rate: 20_000})
		if err != nil || res.Sent != n {
			t.Fatalf("flood %v: %v, %v", a, res, err)
		}
		time.Sleep(200 * time.Millisecond) // the last SYN-ACKs
		after := linkStats(t, l.Gateway, GatewayClientIf)
		rx, tx := after.RxPackets-before.RxPackets, after.TxPackets-before.TxPackets
		t.Logf("SYNs to %v: gateway's %s received %d, sent %d back", a, GatewayClientIf, rx, tx)
		if tx < n*9/10 {
			t.Errorf("SYNs to %v: %d answers routed to the client; want about %d", a, tx, n)
		}
		if rx > n+n/10 {
			t.Errorf("SYNs to %v: gateway received %d packets for %d sent: the client bounces answers", a, rx, n)
		}
	}
}
