package redact

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

var (
	vip4, vip6     = netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8:ffff::10")
	gnb, upf       = netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	gnb6, upf6     = netip.MustParseAddr("2001:db8:100::1"), netip.MustParseAddr("2001:db8:100::2")
	ue4, ue6       = netip.MustParseAddr("10.45.3.7"), netip.MustParseAddr("2001:db8:45::7")
	client4        = netip.MustParseAddr("100.64.9.33")
	client6        = netip.MustParseAddr("2001:db8:77::33")
	server4        = netip.MustParseAddr("203.0.113.5")
	router6        = netip.MustParseAddr("2001:db8:1::1")
	keptAddrs      = []netip.Addr{vip4, vip6, gnb, upf, gnb6, upf6}
	payloadBytes   = []byte("GET / HTTP/1.1\r\nHost: subscriber.example\r\n\r\n")
	errNotRedacted = errors.New("unexpected")
)

// keep is the agent's rule: VIPs and the GTP-U endpoints stay, the rest
// (clients, UEs, the servers UEs talk to) is pseudonymised.
func keep(a netip.Addr) bool {
	for _, k := range keptAddrs {
		if a == k {
			return true
		}
	}
	return false
}

// frameCase builds one frame with the addresses passed through m: the
// identity gives the captured frame, the redaction map the expected one.
type frameCase struct {
	name  string
	build func(m func(netip.Addr) netip.Addr) []byte
}

func frameCases() []frameCase {
	return []frameCase{
		{"IPv4/TCP", func(m func(netip.Addr) netip.Addr) []byte {
			return ether(nil, etherTypeIPv4, ip4(m(client4), m(vip4), protoTCP, 0x4000, tcp(m(client4), m(vip4), payloadBytes)))
		}},
		{"IPv6/UDP behind hop-by-hop and destination options", func(m func(netip.Addr) netip.Addr) []byte {
			return ether(nil, etherTypeIPv6, ip6(m(vip6), m(client6), 0, cat(ext6(60), ext6(protoUDP), udp(m(vip6), m(client6), 53, 40002, false, payloadBytes))))
		}},
		{"QinQ IPv4/UDP", func(m func(netip.Addr) netip.Addr) []byte {
			return ether([]uint16{0x88a8, 0x8100}, etherTypeIPv4, ip4(m(client4), m(vip4), protoUDP, 0, udp(m(client4), m(vip4), 40003, 53, false, payloadBytes)))
		}},
		{"VLAN IPv4/UDP checksum 0 stays 0", func(m func(netip.Addr) netip.Addr) []byte {
			return ether([]uint16{0x8100}, etherTypeIPv4, ip4(m(client4), m(vip4), protoUDP, 0, udp(m(client4), m(vip4), 40003, 53, true, payloadBytes)))
		}},
		{"GTP-U IPv4 with inner IPv4/TCP", func(m func(netip.Addr) netip.Addr) []byte {
			inner := ip4(m(ue4), m(server4), protoTCP, 0x4000, tcp(m(ue4), m(server4), payloadBytes))
			return ether(nil, etherTypeIPv4, ip4(m(gnb), m(upf), protoUDP, 0, udp(m(gnb), m(upf), 2152, 2152, false, gpdu(false, inner))))
		}},
		{"GTP-U IPv6 with extension header, inner IPv6/UDP", func(m func(netip.Addr) netip.Addr) []byte {
			inner := ip6(m(ue6), m(client6), protoUDP, udp(m(ue6), m(client6), 40004, 443, false, payloadBytes))
			return ether(nil, etherTypeIPv6, ip6(m(gnb6), m(upf6), protoUDP, udp(m(gnb6), m(upf6), 2152, 2152, false, gpdu(true, inner))))
		}},
		{"GTP-U outer UDP checksum 0, inner IPv4/UDP", func(m func(netip.Addr) netip.Addr) []byte {
			inner := ip4(m(ue4), m(server4), protoUDP, 0, udp(m(ue4), m(server4), 40005, 53, false, payloadBytes))
			return ether(nil, etherTypeIPv4, ip4(m(gnb), m(upf), protoUDP, 0, udp(m(gnb), m(upf), 2152, 2152, true, gpdu(true, inner))))
		}},
		{"ICMPv6 echo", func(m func(netip.Addr) netip.Addr) []byte {
			return ether(nil, etherTypeIPv6, ip6(m(client6), m(vip6), protoICMPv6, icmp6(m(client6), m(vip6), 128, payloadBytes)))
		}},
		{"ICMPv6 packet too big quoting IPv6/TCP", func(m func(netip.Addr) netip.Addr) []byte {
			quoted := ip6(m(vip6), m(client6), protoTCP, tcp(m(vip6), m(client6), payloadBytes))
			return ether(nil, etherTypeIPv6, ip6(m(router6), m(vip6), protoICMPv6, icmp6(m(router6), m(vip6), 2, quoted)))
		}},
		{"ICMP unreachable quoting IPv4/UDP", func(m func(netip.Addr) netip.Addr) []byte {
			quoted := ip4(m(vip4), m(client4), protoUDP, 0, udp(m(vip4), m(client4), 53, 40006, false, payloadBytes))
			return ether(nil, etherTypeIPv4, ip4(m(client4), m(vip4), protoICMP, 0, icmp4(3, quoted)))
		}},
		{"IPv4 later fragment", func(m func(netip.Addr) netip.Addr) []byte {
			return ether(nil, etherTypeIPv4, ip4(m(client4), m(vip4), protoUDP, 0x00b9, payloadBytes))
		}},
		{"IPv4/UDP whose redacted checksum computes to 0", udpZeroAfter},
	}
}

// udpZeroAfter chooses two payload bytes so that, once redacted, the UDP
// sum is 0xffff: the checksum computes to 0 and must be sent as 0xffff.
func udpZeroAfter(m func(netip.Addr) netip.Addr) []byte {
	r, err := New(referenceKey)
	if err != nil {
		panic(err)
	}
	red := func(a netip.Addr) netip.Addr { return redactAddr(r, a) }
	data := []byte{0, 0, 'x', 'y'}
	d := udp(red(client4), red(vip4), 40007, 53, true, data)
	s := ^sum(pseudoHeader(red(client4), red(vip4), protoUDP, len(d)), d) // the folded sum
	data[0], data[1] = byte(^s>>8), byte(^s)
	return ether(nil, etherTypeIPv4, ip4(m(client4), m(vip4), protoUDP, 0, udp(m(client4), m(vip4), 40007, 53, false, data)))
}

func redactAddr(r *Redactor, a netip.Addr) netip.Addr {
	if keep(a) {
		return a
	}
	return r.Addr(a)
}

func identity(a netip.Addr) netip.Addr { return a }

// TestFrameMatchesFromScratch: each redacted frame equals the frame built
// from scratch with the pseudonyms, so every checksum in it is the one a
// sender would compute, kept addresses are unchanged and the others are
// their Crypto-PAn pseudonyms.
func TestFrameMatchesFromScratch(t *testing.T) {
	r := mustNew(t, referenceKey)
	for _, c := range frameCases() {
		t.Run(c.name, func(t *testing.T) {
			got := c.build(identity)
			want := c.build(func(a netip.Addr) netip.Addr { return redactAddr(r, a) })
			if bytes.Equal(got, want) {
				t.Fatal("the case redacts nothing")
			}
			if err := r.Frame(got, keep); err != nil {
				t.Fatalf("Frame: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("redacted frame differs from the from-scratch one at byte %d:\n got %x\nwant %x", firstDiff(got, want), got, want)
			}
		})
	}
}

func TestUDPZeroBecomesFFFF(t *testing.T) {
	r := mustNew(t, referenceKey)
	f := udpZeroAfter(identity)
	if err := r.Frame(f, keep); err != nil {
		t.Fatal(err)
	}
	if ck := f[14+20+6 : 14+20+8]; ck[0] != 0xff || ck[1] != 0xff {
		t.Fatalf("UDP checksum %x, want ffff (a computed 0 is sent as all ones)", ck)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestFrameTruncatedEverywhere cuts every case at every length, as a
// snaplen would. Either Frame refuses with ErrShort and leaves the bytes as
// they were, or no address it must hide is left in clear; and once every
// header is present (a snaplen that cuts only payload) the result is the
// from-scratch redacted frame cut at the same length, except that a
// checksum cut in half keeps its one byte. (Shorter cuts may lack bytes an
// outer checksum also covers, so they are held to privacy only.)
func TestFrameTruncatedEverywhere(t *testing.T) {
	r := mustNew(t, referenceKey)
	for _, c := range frameCases() {
		var secret [][]byte
		orig := c.build(func(a netip.Addr) netip.Addr {
			if !keep(a) {
				secret = append(secret, a.AsSlice())
			}
			return a
		})
		want := c.build(func(a netip.Addr) netip.Addr { return redactAddr(r, a) })
		headers := len(orig)
		if bytes.HasSuffix(orig, payloadBytes) {
			headers -= len(payloadBytes)
		}
		accepted := 0
		for n := range len(orig) {
			got := bytes.Clone(orig[:n])
			err := r.Frame(got, keep)
			if err != nil {
				if !errors.Is(err, ErrShort) || !bytes.Equal(got, orig[:n]) {
					t.Fatalf("%s cut at %d: %v (frame changed: %t)", c.name, n, err, !bytes.Equal(got, orig[:n]))
				}
				continue
			}
			accepted++
			for _, a := range secret {
				if bytes.Contains(got, a) {
					t.Fatalf("%s cut at %d: address %x left in clear", c.name, n, a)
				}
			}
			if i := firstDiff(got, want[:n]); n >= headers && i < n && (i != n-1 || got[i] != orig[i]) {
				t.Fatalf("%s cut at %d: differs from the redacted frame at byte %d", c.name, n, i)
			}
		}
		if accepted == 0 {
			t.Errorf("%s: no truncation accepted", c.name)
		}
	}
}

func TestFrameErrors(t *testing.T) {
	r := mustNew(t, referenceKey)
	full := frameCases()[4].build(identity) // GTP-U over IPv4
	for _, c := range []struct {
		name  string
		frame []byte
		is    error
		says  string
	}{
		{"short Ethernet", full[:10], ErrShort, "Ethernet header has 10 of 14 bytes"},
		{"short outer IPv4", full[:14+15], ErrShort, "outer IPv4 header has 15 of 20 bytes"},
		{"short inner IPv4", full[:14+20+8+8+13], ErrShort, "GTP-U inner IPv4 header has 13 of 20 bytes"},
		{"ARP", ether(nil, 0x0806, make([]byte, 28)), ErrUnsupported, "EtherType 0x0806"},
		{"three VLAN tags", ether([]uint16{0x88a8, 0x8100, 0x8100}, etherTypeIPv4, full[14:]), ErrUnsupported, "more than 2 VLAN tags"},
		{"routing header with segments left", ether(nil, etherTypeIPv6, ip6(client6, vip6, 43, cat([]byte{protoUDP, 0, 0, 1, 0, 0, 0, 0}, udp(client6, vip6, 1, 2, false, nil)))), ErrUnsupported, "segments left"},
		{"GTP-U carrying non-IP", ether(nil, etherTypeIPv4, ip4(gnb, upf, protoUDP, 0, udp(gnb, upf, 2152, 2152, false, gpdu(false, []byte{0x21, 0, 0, 0})))), ErrUnsupported, "not IP"},
	} {
		f := bytes.Clone(c.frame)
		err := r.Frame(f, keep)
		if !errors.Is(err, c.is) || !strings.Contains(fmtErr(err), c.says) {
			t.Errorf("%s: got %v, want %v saying %q", c.name, err, c.is, c.says)
		}
		if !bytes.Equal(f, c.frame) {
			t.Errorf("%s: the refused frame was changed", c.name)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return errNotRedacted.Error()
	}
	return err.Error()
}

func TestFrameKeepNilRedactsAll(t *testing.T) {
	r := mustNew(t, referenceKey)
	f := frameCases()[0].build(identity)
	want := frameCases()[0].build(r.Addr)
	if err := r.Frame(f, nil); err != nil || !bytes.Equal(f, want) {
		t.Fatalf("keep nil: err %v, equal %t", err, bytes.Equal(f, want))
	}
}

// BenchmarkFrameGTPU: a GTP-U frame whose outer addresses are kept and
// whose two inner IPv4 addresses are pseudonymised.
func BenchmarkFrameGTPU(b *testing.B) {
	r := mustNew(b, referenceKey)
	orig := frameCases()[4].build(identity)
	f := bytes.Clone(orig)
	b.ReportAllocs()
	for b.Loop() {
		copy(f, orig)
		if err := r.Frame(f, keep); err != nil {
			b.Fatal(err)
		}
	}
}
