package datapath

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

func contains(addrs []netip.Addr, a netip.Addr) bool { return slices.Contains(addrs, a) }

// TestDNATAndReply checks the whole round trip byte by byte: a client's
// packet to the VIP leaves towards a backend with only the destination,
// TTL and MACs changed and every checksum valid; the backend's reply leaves
// towards the client with the VIP as its source.
func TestDNATAndReply(t *testing.T) {
	f := newFixture(t)
	cases := []dnatCase{
		{name: "v4/tcp", vip: vip4, client: client4, proto: service.TCP, stable: stable4},
		{name: "v4/udp", vip: vip4, client: client4, proto: service.UDP, stable: stable4},
		{name: "v4/udp-no-checksum", vip: vip4, client: client4, proto: service.UDP, udpNoCsum: true, stable: stable4},
		{name: "v4/tcp-ip-options", vip: vip4, client: client4, proto: service.TCP, options: true, stable: stable4},
		{name: "v6/tcp", vip: vip6, client: client6, proto: service.TCP, stable: stable6},
		{name: "v6/udp", vip: vip6, client: client6, proto: service.UDP, stable: stable6},
		{name: "v6/tcp-hop-by-hop", vip: vip6, client: client6, proto: service.TCP, hbh: true, stable: stable6},
	}
	// The tc programs fix checksums themselves where they can read the
	// skb's checksum state (a test run's skb is CHECKSUM_NONE), and leave
	// them to the kernel's helpers where they cannot: both are checked.
	helpers, err := New(Options{FlowTable: 1 << 12, MaxServices: 64, ChecksumHelpers: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helpers.Close() })
	own := f.dp
	_, canRead, why := findIPSummed(mustKernelBTF(t))
	variants := []struct {
		name    string
		hook    hook
		dp      *Datapath
		helpers bool // every tc rewrite goes through the helpers
	}{
		{"xdp", hookXDP, own, false},
		{"tc", hookTC, own, !canRead},
		{"tc-helpers", hookTC, helpers, true},
	}
	if !canRead {
		t.Logf("the tc programs cannot read the checksum state here (%s): both tc variants use the helpers", why)
	}
	for vi, vr := range variants {
		for i, c := range cases {
			t.Run(vr.name+"/"+c.name, func(t *testing.T) {
				f.dp = vr.dp
				defer func() { f.dp = own }()
				testDNATAndReply(t, f, vr.hook, c, uint16(40000+i+10*vi), vr.helpers)
			})
		}
	}
}

// dnatCase is a packet of TestDNATAndReply: its family, protocol and
// shape, and the stable backends its service has.
type dnatCase struct {
	name         string
	vip, client  netip.Addr
	proto        service.Protocol
	udpNoCsum    bool
	options, hbh bool
	stable       []netip.Addr
}

// testDNATAndReply sends case c's packet from client port sport through
// hook h and the backend's reply back, and checks both; with helpers,
// both rewrites must have gone through the kernel's checksum helpers.
func testDNATAndReply(t *testing.T, f *fixture, h hook, c dnatCase, sport uint16, helpers bool) {
	if err := f.dp.Apply([]service.Service{webService("web", c.vip, c.proto, 0)}); err != nil {
		t.Fatal(err)
	}
	before, err := f.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	spec := pktSpec{
		src:          netip.AddrPortFrom(c.client, sport),
		dst:          netip.AddrPortFrom(c.vip, 80),
		proto:        uint8(c.proto),
		tcpFlags:     tcpSYN,
		seq:          1000,
		payload:      []byte("hello graylane"),
		udpNoCsum:    c.udpNoCsum,
		ipv6HopByHop: c.hbh,
	}
	if c.options {
		spec.ipv4Options = []byte{1, 1, 1, 0} // NOP NOP NOP EOL
	}
	backend := checkDNAT(t, f, h, c, spec)
	checkDNATReply(t, f, h, c, spec, backend)
	after, err := f.dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(0)
	if helpers {
		want = 2 // the request and the reply
	}
	if got := after["csum_helper"] - before["csum_helper"]; got != want {
		t.Fatalf("csum_helper grew by %d, want %d", got, want)
	}
}

// checkDNAT sends spec's packet through hook h's client program, checks
// that it leaves towards a stable backend of case c with nothing else
// changed but the TTL, MACs and checksums, and returns that backend.
func checkDNAT(t *testing.T, f *fixture, h hook, c dnatCase, spec pktSpec) netip.AddrPort {
	in := buildPacket(spec)
	v, out := f.run(t, h, false, f.cliIf, in)
	if v != vRedirect {
		t.Fatalf("verdict %s, want redirect", v)
	}
	d, err := decode(out)
	if err != nil {
		t.Fatalf("forwarded frame: %v", err)
	}
	if !contains(c.stable, d.dst.Addr()) || d.dst.Port() != 8080 {
		t.Fatalf("forwarded to %s, want a stable backend on 8080", d.dst)
	}
	if d.src != spec.src || d.ttl != 63 || !bytes.Equal(d.payload, spec.payload) {
		t.Fatalf("forwarded frame changed more than the destination: %+v", d)
	}
	if !bytes.Equal(d.dstMAC, macBackend) || !bytes.Equal(d.srcMAC, f.bckMAC) {
		t.Fatalf("MACs %s -> %s, want %s -> %s", d.srcMAC, d.dstMAC, f.bckMAC, macBackend)
	}
	if c.udpNoCsum && d.l4Check != 0 {
		t.Fatalf("a UDP datagram without checksum got checksum %#x", d.l4Check)
	}
	assertOnlyChanged(t, in, out, c.vip.Is6())
	return d.dst
}

// checkDNATReply sends backend's reply to spec's packet through hook h's
// backend program and checks that it leaves towards the client from the
// VIP.
func checkDNATReply(t *testing.T, f *fixture, h hook, c dnatCase, spec pktSpec, backend netip.AddrPort) {
	reply := buildPacket(pktSpec{
		src: backend, dst: spec.src, proto: spec.proto, tcpFlags: tcpSYN | tcpACK,
		payload: []byte("answer"), udpNoCsum: c.udpNoCsum,
	})
	v, out := f.run(t, h, true, f.bckIf, reply)
	if v != vRedirect {
		t.Fatalf("reply verdict %s, want redirect", v)
	}
	r, err := decode(out)
	if err != nil {
		t.Fatalf("reply frame: %v", err)
	}
	if r.src != netip.AddrPortFrom(c.vip, 80) || r.dst != spec.src || r.ttl != 63 {
		t.Fatalf("reply %s -> %s ttl %d, want %s:80 -> %s ttl 63", r.src, r.dst, r.ttl, c.vip, spec.src)
	}
	if !bytes.Equal(r.dstMAC, macClient) || !bytes.Equal(r.srcMAC, f.cliMAC) {
		t.Fatalf("reply MACs %s -> %s", r.srcMAC, r.dstMAC)
	}
}

// assertOnlyChanged checks that between in and out only the MACs, the
// destination address and port, TTL and checksums differ.
func assertOnlyChanged(t *testing.T, in, out []byte, v6 bool) {
	t.Helper()
	if len(in) != len(out) {
		t.Fatalf("length %d -> %d", len(in), len(out))
	}
	allowed := map[int]bool{}
	for i := 0; i < 12; i++ {
		allowed[i] = true
	}
	ip := 14
	var l4 int
	if v6 {
		allowed[ip+7] = true
		for i := ip + 24; i < ip+40; i++ {
			allowed[i] = true
		}
		l4 = ip + 40
		if in[ip+6] == 0 {
			l4 += 8
		}
	} else {
		for _, i := range []int{ip + 8, ip + 10, ip + 11, ip + 16, ip + 17, ip + 18, ip + 19} {
			allowed[i] = true
		}
		l4 = ip + int(in[ip]&0x0f)*4
	}
	for _, i := range []int{l4 + 2, l4 + 3, l4 + 6, l4 + 7, l4 + 16, l4 + 17} {
		allowed[i] = true // port and either checksum position
	}
	for i := range in {
		if in[i] != out[i] && !allowed[i] {
			t.Fatalf("byte %d changed (%#x -> %#x)", i, in[i], out[i])
		}
	}
}
