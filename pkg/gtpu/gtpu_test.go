package gtpu

import (
	"bytes"
	"net/netip"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name     string
		src, dst string
		opts     Options
	}{
		{"plain v4", "10.45.0.1", "8.8.8.8", Options{}},
		{"seq v4", "10.45.0.1", "8.8.8.8", Options{HasSeq: true, Seq: 7}},
		{"pdu session v6", "2001:db8::1", "2001:db8::2", Options{PDUSession: true, QFI: 9}},
		{"both v6", "2001:db8::1", "2001:db8::2", Options{HasSeq: true, PDUSession: true}},
	} {
		src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		pkt := AppendGPDU(nil, 0x1234, c.opts, AppendIP(nil, src, dst, []byte("hi")))
		teid, inner, err := ParseGPDU(pkt)
		if err != nil || teid != 0x1234 {
			t.Fatalf("%s: teid %x err %v", c.name, teid, err)
		}
		s, d, p, err := ParseIP(inner)
		if err != nil || s != src || d != dst || !bytes.Equal(p, []byte("hi")) {
			t.Fatalf("%s: %s -> %s %q %v", c.name, s, d, p, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := AppendGPDU(nil, 1, Options{PDUSession: true}, AppendIP(nil, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), nil))
	for name, b := range map[string][]byte{
		"short":     good[:7],
		"version 2": append([]byte{0x40}, good[1:]...),
		"echo":      append([]byte{good[0], 1}, good[2:]...),
		"truncated": good[:len(good)-1],
		"ext len 0": append(append([]byte{}, good[:12]...), append([]byte{0}, good[13:]...)...),
	} {
		if _, _, err := ParseGPDU(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}
