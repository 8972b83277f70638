package l7proxy

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/httphead"
)

// TestReadHeadPooledBuffer: a head read into a pooled buffer that held
// another connection's bytes is exactly what its client sent (an
// HTTP/2 head less the SETTINGS acknowledgement), also when it outgrows
// the pooled buffer; release clears it.
func TestReadHeadPooledBuffer(t *testing.T) {
	pre, hdrs := h2Preface(), h2Headers(t)
	long := "GET /a HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X-Long: "+strings.Repeat("v", 1000)+"\r\n", 6) + "\r\n"
	for _, tc := range []struct {
		name      string
		send, buf []byte
		proto     httphead.Protocol
	}{
		{"HTTP/1.1", []byte("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"), nil, httphead.HTTP1},
		{"HTTP/1.1 past the first buffer", []byte(long), nil, httphead.HTTP1},
		{"HTTP/2", cat(pre, settingsAckFrame, hdrs), cat(pre, hdrs), httphead.HTTP2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.buf == nil {
				tc.buf = tc.send
			}
			for range 4 { // dirty buffers, as a previous connection leaves them
				b := bytes.Repeat([]byte("\r\n\r\nstale"), firstRead/8)[:firstRead]
				headBufs.put(&b)
			}
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			server.SetDeadline(time.Now().Add(10 * time.Second))
			go io.Copy(io.Discard, client) // the proxy's SETTINGS
			go client.Write(tc.send)
			h, err := readHead(server, DefaultMaxHeadBytes)
			if err != nil {
				t.Fatal(err)
			}
			if h.proto != tc.proto || !bytes.Equal(h.buf, tc.buf) {
				t.Errorf("read %s, %q; want %s, %q", h.proto, h.buf, tc.proto, tc.buf)
			}
			h.release()
			if h.buf != nil || h.pooled != nil {
				t.Errorf("after release: buf of %d bytes, pooled %v", len(h.buf), h.pooled != nil)
			}
		})
	}
}

// TestBufPoolSize: a pool takes back only buffers of its size, whole.
func TestBufPoolSize(t *testing.T) {
	p := &bufPool{size: 64}
	small := make([]byte, 32)
	p.put(&small)
	p.put(nil)
	for range 3 {
		b := p.get()
		if len(*b) != 64 || cap(*b) != 64 {
			t.Fatalf("got a buffer of len %d cap %d, want 64", len(*b), cap(*b))
		}
		*b = (*b)[:10]
		p.put(b)
	}
}
