package httphead

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-Canary: v2\r\n\r\n"))
	f.Add([]byte("\r\nPOST /p HTTP/1.0\nContent-Length: 3, 3\n\nabc"))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"))
	f.Add([]byte("GET http://a:1?x HTTP/1.1\r\n\r\n"))
	f.Add([]byte(Preface))
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
		if n == 0 || n > MaxHeadBytes {
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
		if len(req.Method) <= maxMethodBytes && Sniff(buf) != HTTP1 {
			t.Fatalf("Sniff = %s for a request Parse accepts", Sniff(buf))
		}
	})
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte(Preface))
	f.Add([]byte("\x16\x03\x01\x00\x10"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		got := Sniff(buf)
		// At most a method's bytes and the space after it leave it unsure.
		if got == NeedMore && len(bytes.TrimLeft(buf, "\r\n")) > max(maxMethodBytes+1, len(Preface)) {
			t.Fatalf("Sniff wants more than %d bytes", len(buf))
		}
	})
}
