package h2head

import (
	"errors"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	block := get(f, "x-canary", "v2", "content-type", "application/grpc", "te", "trailers")
	f.Add(request(block))
	f.Add(conn(settings,
		rawFrame(framePing, 0, 0, make([]byte, 8)),
		rawFrame(frameHeaders, flagPadded|flagPriority, 1, cat([]byte{1, 0, 0, 0, 0, 7}, block[:5], []byte{0})),
		rawFrame(frameContinuation, flagEndHeaders, 1, block[5:])))
	f.Add(conn(settings, rawFrame(frameHeaders, flagEndHeaders, 1, []byte{0x3f, 0xe1, 0x1f, 0x82, 0x86, 0x84})))
	f.Fuzz(func(t *testing.T, buf []byte) {
		req, n, err := Parse(buf)
		if n < 0 || n > len(buf) {
			t.Fatalf("consumed %d of %d bytes", n, len(buf))
		}
		if err != nil {
			if n != 0 {
				t.Fatalf("consumed %d bytes with error %v", n, err)
			}
			if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v wraps none of the package's errors", err)
			}
			return
		}
		if n > MaxBytes {
			t.Fatalf("parsed a head of %d bytes", n)
		}
		again, m, err := Parse(buf[:n])
		if err != nil || m != n || !reflect.DeepEqual(again, req) {
			t.Fatalf("the consumed bytes alone parse as %+v, %d, %v", again, m, err)
		}
		if _, _, err := Parse(buf[:n-1]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("one byte short of the head: %v; want ErrIncomplete", err)
		}
		_ = req.Fields()
	})
}
