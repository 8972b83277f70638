package replay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

var (
	src4 = netip.MustParseAddrPort("10.1.0.2:40000")
	dst4 = netip.MustParseAddrPort("10.9.0.1:7000")
	src6 = netip.MustParseAddrPort("[fd00:1::2]:40000")
	dst6 = netip.MustParseAddrPort("[fd00:9::1]:7000")
)

// TestRewriteChecksums: after a rewrite of the destination (address, and
// port when given) every checksum equals a full recomputation, for IPv4
// and IPv6, UDP and TCP, payloads of odd and even length.
func TestRewriteChecksums(t *testing.T) {
	for _, proto := range []string{"udp", "tcp"} {
		for _, fam := range []struct{ src, dst, to netip.AddrPort }{
			{src4, dst4, netip.MustParseAddrPort("192.0.2.200:7353")},
			{src4, dst4, netip.AddrPortFrom(netip.MustParseAddr("255.255.0.0"), 0)},
			{src6, dst6, netip.MustParseAddrPort("[2001:db8::ffff:1]:65535")},
			{src6, dst6, netip.AddrPortFrom(netip.MustParseAddr("fd00:9::1"), 1)},
		} {
			for _, payload := range [][]byte{nil, []byte("x"), []byte("hello replay")} {
				name := fmt.Sprintf("%s/%s/%d", proto, fam.to, len(payload))
				t.Run(name, func(t *testing.T) {
					f := frameOf(t, proto, fam.src, fam.dst, payload)
					got, err := Rewrite{Dst: fam.to}.Apply(f)
					if err != nil {
						t.Fatal(err)
					}
					if got != fam.to.Addr() || dstOf(f) != fam.to.Addr() {
						t.Errorf("destination %s (frame %s), want %s", got, dstOf(f), fam.to.Addr())
					}
					wantPort := fam.to.Port()
					if wantPort == 0 {
						wantPort = fam.dst.Port()
					}
					want := frameOf(t, proto, fam.src, netip.AddrPortFrom(fam.to.Addr(), wantPort), payload)
					if !bytes.Equal(f, want) {
						t.Errorf("rewritten frame\n%x\nwant (built with that destination)\n%x", f, want)
					}
					if r := recomputed(t, f); !bytes.Equal(f, r) {
						t.Errorf("checksums differ from a recomputation:\n%x\n%x", f, r)
					}
				})
			}
		}
	}
}

// TestRewriteUDPZeroChecksum: an IPv4 UDP datagram sent without a checksum
// keeps none; a UDP checksum that comes out 0 is sent as 0xffff.
func TestRewriteUDPZeroChecksum(t *testing.T) {
	f := frameOf(t, "udp", src4, dst4, []byte("abc"))
	f[14+20+6], f[14+20+7] = 0, 0
	if _, err := (Rewrite{Dst: netip.MustParseAddrPort("10.2.3.4:99")}).Apply(f); err != nil {
		t.Fatal(err)
	}
	if ck := binary.BigEndian.Uint16(f[14+20+6:]); ck != 0 {
		t.Errorf("checksum %#x, want 0 (none)", ck)
	}
	// Find a destination port that makes the checksum exactly 0.
	for port := uint16(1); port != 0; port++ {
		f := frameOf(t, "udp", src4, dst4, []byte("abc"))
		if _, err := (Rewrite{Dst: netip.AddrPortFrom(dst4.Addr(), port)}).Apply(f); err != nil {
			t.Fatal(err)
		}
		want := frameOf(t, "udp", src4, netip.AddrPortFrom(dst4.Addr(), port), []byte("abc"))
		if binary.BigEndian.Uint16(want[14+20+6:]) == 0xffff {
			if !bytes.Equal(f, want) {
				t.Fatalf("port %d: checksum %x, want ffff", port, f[14+20+6:14+20+8])
			}
			return
		}
	}
	t.Fatal("no port gives the checksum 0xffff")
}

// TestRewriteGTPUInner: --rewrite-inner-dst changes the inner packet of a
// G-PDU, and --rewrite-dst the outer, each with its checksums (inner IP
// and UDP/TCP, outer UDP when it has one) equal to a recomputation.
func TestRewriteGTPUInner(t *testing.T) {
	outerSrc, outerDst := netip.MustParseAddrPort("10.0.0.1:2152"), netip.MustParseAddrPort("10.0.0.2:2152")
	for _, tc := range []struct {
		name              string
		inner             []byte
		innerTo, outerTo  netip.AddrPort
		outerCsum, outer6 bool
	}{
		{name: "v4-in-v4-udp", inner: packet(t, "udp", src4, dst4, []byte("dns?")), innerTo: netip.MustParseAddrPort("192.0.2.53:7353")},
		{name: "v4-in-v4-udp-outer-csum", inner: packet(t, "udp", src4, dst4, []byte("dns")), innerTo: netip.MustParseAddrPort("192.0.2.53:7000"), outerCsum: true,
			outerTo: netip.MustParseAddrPort("10.0.0.3:2152")},
		{name: "v6-in-v4-tcp", inner: packet(t, "tcp", src6, dst6, []byte("GET /")), innerTo: netip.MustParseAddrPort("[2001:db8::5]:8080"), outerCsum: true},
		{name: "v4-in-v6-udp", inner: packet(t, "udp", src4, dst4, []byte("q")), innerTo: netip.MustParseAddrPort("192.0.2.1:0"), outer6: true,
			outerTo: netip.MustParseAddrPort("[fd00::3]:2152")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os, od := outerSrc, outerDst
			if tc.outer6 {
				os, od = netip.MustParseAddrPort("[fd00::1]:2152"), netip.MustParseAddrPort("[fd00::2]:2152")
			}
			f := gtpFrame(t, os, od, tc.inner, tc.outerCsum)
			got, err := Rewrite{Dst: tc.outerTo, InnerDst: tc.innerTo}.Apply(f)
			if err != nil {
				t.Fatal(err)
			}
			wantOuter := od.Addr()
			if tc.outerTo.IsValid() {
				wantOuter = tc.outerTo.Addr()
			}
			if got != wantOuter {
				t.Errorf("outer destination %s, want %s", got, wantOuter)
			}
			ip, _ := ipOffset(f)
			p, _ := parseIP(f, ip)
			innerAt := p.l4 + 8 + 8
			if d := dstOf(append(make([]byte, 12), append([]byte{0x08, 0}, f[innerAt:]...)...)); d != tc.innerTo.Addr() && tc.inner[0]>>4 == 4 {
				t.Errorf("inner destination %s, want %s", d, tc.innerTo.Addr())
			}
			if r := recomputed(t, f); !bytes.Equal(f, r) {
				t.Errorf("checksums differ from a recomputation:\n%x\n%x", f, r)
			}
		})
	}
}

// TestRewriteErrors: a packet of the other family than --rewrite-dst, and
// frames cut inside their headers, are errors; frames without IP are left
// alone.
func TestRewriteErrors(t *testing.T) {
	f := frameOf(t, "udp", src6, dst6, nil)
	if _, err := (Rewrite{Dst: dst4}).Apply(f); err == nil {
		t.Error("an IPv6 packet rewritten to an IPv4 address")
	}
	full := frameOf(t, "tcp", src4, dst4, []byte("abc"))
	for n := 15; n < 14+20+20; n++ {
		if _, err := (Rewrite{Dst: dst4}).Apply(append([]byte(nil), full[:n]...)); err == nil {
			t.Errorf("a frame cut at %d bytes was rewritten", n)
		}
	}
	arp := append(append(append([]byte(nil), macB...), macA...), 0x08, 0x06, 0, 1)
	if dst, err := (Rewrite{Dst: dst4}).Apply(arp); err != nil || dst.IsValid() {
		t.Errorf("ARP: %v, %v; want no address and no error", dst, err)
	}
}
