package tlshello

import (
	"errors"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	body := append([]byte{3, 3}, make([]byte, 32)...)
	body = append(body, 0, 0, 2, 0, 0x2f, 1, 0)
	ext := []byte{
		0, 0, 0, 8, 0, 6, 0, 0, 3, 'a', '.', 'b', // server_name a.b
		0, 16, 0, 5, 0, 3, 2, 'h', '2', // ALPN h2
		0, 43, 0, 3, 2, 3, 4, // supported_versions TLS 1.3
	}
	body = append(body, byte(len(ext)>>8), byte(len(ext)))
	body = append(body, ext...)
	msg := append([]byte{typeClientHello, 0, 0, byte(len(body))}, body...)
	f.Add(reframe(msg, 1000))
	f.Add(reframe(msg, 9))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, buf []byte) {
		hello, n, err := Parse(buf)
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
			t.Fatalf("parsed a hello of %d bytes", n)
		}
		again, m, err := Parse(buf[:n])
		if err != nil || m != n || !reflect.DeepEqual(again, hello) {
			t.Fatalf("the consumed bytes alone parse as %+v, %d, %v", again, m, err)
		}
		if _, _, err := Parse(buf[:n-1]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("one byte short of the hello: %v; want ErrIncomplete", err)
		}
	})
}
