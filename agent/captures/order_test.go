package captures

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/graylane/graylane/bpf"
)

func rec(ts uint64) record { return record{hdr: bpf.SteerCaptureHdr{TsNs: ts}} }

// TestOrdererRestoresOrder feeds records whose order is shuffled within
// less than the window: taking as they come and all at the end gives
// every record once, in time order.
func TestOrdererRestoresOrder(t *testing.T) {
	var o orderer
	var got []uint64
	base := uint64(1_000_000_000)
	for i := range 5000 {
		// Arrival i: kernel time i µs, give or take 300 ns.
		ts := base + uint64(i)*1000 + uint64(rand.IntN(600))
		if i%7 == 0 {
			ts -= 400 // a CPU that stamped early and wrote late
		}
		o.add(rec(ts))
		for _, r := range o.take(false) {
			got = append(got, r.hdr.TsNs)
		}
	}
	for _, r := range o.take(true) {
		got = append(got, r.hdr.TsNs)
	}
	if len(got) != 5000 {
		t.Fatalf("%d records out, 5000 in", len(got))
	}
	if !slices.IsSorted(got) {
		t.Error("records out of time order")
	}
}

// TestOrdererHoldsTheWindow: a record is held until one a window newer
// arrives.
func TestOrdererHoldsTheWindow(t *testing.T) {
	var o orderer
	o.add(rec(10))
	if n := len(o.take(false)); n != 0 {
		t.Fatalf("took %d records before anything newer arrived", n)
	}
	o.add(rec(10 + reorderWindow - 1))
	if n := len(o.take(false)); n != 0 {
		t.Fatalf("took %d records within the window", n)
	}
	o.add(rec(10 + reorderWindow))
	if out := o.take(false); len(out) != 1 || out[0].hdr.TsNs != 10 {
		t.Fatalf("took %v, want the record at 10", out)
	}
}

// TestDecodeHeader: the hand decoder reads struct capture_hdr as
// binary.Read of the generated type does.
func TestDecodeHeader(t *testing.T) {
	want := bpf.SteerCaptureHdr{TsNs: 0x0102030405060708, SvcId: 7, Len: 1514, Ifindex: 3, Snap: 256, Bucket: 9999, Pool: 1, Dir: 1}
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, want); err != nil {
		t.Fatal(err)
	}
	if b.Len() != hdrSize {
		t.Fatalf("struct capture_hdr is %d bytes, the decoder reads %d", b.Len(), hdrSize)
	}
	if got := decodeHeader(b.Bytes()); got != want {
		t.Errorf("decodeHeader = %+v, want %+v", got, want)
	}
}
