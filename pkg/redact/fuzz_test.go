package redact

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzFrame: Frame never panics, and a frame it refuses is unchanged. A
// frame it accepts keeps its length, and with a keep that keeps everything
// it is unchanged too (no write without a pseudonym).
func FuzzFrame(f *testing.F) {
	for _, c := range frameCases() {
		f.Add(c.build(identity))
	}
	f.Add([]byte{})
	f.Add(ether([]uint16{0x8100, 0x8100, 0x8100}, etherTypeIPv4, nil))
	r := mustNew(f, referenceKey)
	keepAll := func(netip.Addr) bool { return true }
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		if err := r.Frame(frame, keep); err != nil {
			if !bytes.Equal(frame, orig) {
				t.Fatalf("Frame refused (%v) but changed the frame", err)
			}
			return
		}
		if len(frame) != len(orig) {
			t.Fatal("Frame changed the length")
		}
		same := bytes.Clone(orig)
		if err := r.Frame(same, keepAll); err != nil || !bytes.Equal(same, orig) {
			t.Fatalf("keeping every address: err %v, changed %t", err, !bytes.Equal(same, orig))
		}
	})
}
