package gtpu

import (
	"bytes"
	"errors"
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

// TestParseHeader: the T-PDU's place in a G-PDU cut after its header, and
// which error each broken header gets.
func TestParseHeader(t *testing.T) {
	inner := AppendIP(nil, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), []byte("payload"))
	good := AppendGPDU(nil, 7, Options{HasSeq: true, PDUSession: true}, inner)
	teid, start, end, err := ParseHeader(good[:len(good)-3]) // cut inside the T-PDU
	if err != nil || teid != 7 || start != len(good)-len(inner) || end != len(good) {
		t.Fatalf("cut G-PDU: teid %d, T-PDU [%d, %d), err %v; want 7, [%d, %d)", teid, start, end, err, len(good)-len(inner), len(good))
	}
	many := []byte{0x34, MsgGPDU, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0x85}
	for range MaxExtensionHeaders + 1 {
		many = append(many, 1, 0, 0, 0x85)
	}
	many[3] = byte(len(many) - 8)
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"short":               {good[:7], ErrTruncated},
		"cut in extension":    {good[:13], ErrTruncated},
		"echo request":        {append([]byte{good[0], 1}, good[2:]...), ErrNotGPDU},
		"version 2":           {append([]byte{0x40}, good[1:]...), ErrNotGPDU},
		"extension length 0":  {append(append([]byte{}, good[:12]...), append([]byte{0}, good[13:]...)...), ErrMalformed},
		"too many extensions": {many, ErrMalformed},
	} {
		if _, _, _, err := ParseHeader(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", name, err, c.want)
		}
	}
}
