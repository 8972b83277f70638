package l7proxy

import (
	"bytes"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/graylane/graylane/pkg/h2head"
	"github.com/graylane/graylane/pkg/httphead"
)

// TestReadHeadByteByByte: heads delivered one byte per read are found
// complete at their last byte, however the ending empty line is split
// across reads (the HTTP/1.x parse gate).
func TestReadHeadByteByByte(t *testing.T) {
	for _, tc := range []struct {
		name  string
		head  []byte
		proto httphead.Protocol
	}{
		{"CRLF", []byte("GET /a HTTP/1.1\r\nHost: h\r\nX-Canary: v2\r\n\r\n"), httphead.HTTP1},
		{"bare LF", []byte("GET /a HTTP/1.1\nHost: h\nX-Canary: v2\n\n"), httphead.HTTP1},
		{"leading empty lines", []byte("\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\nX-Canary: v2\r\n\r\n"), httphead.HTTP1},
		{"HTTP/2", h2Head(t), httphead.HTTP2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			server.SetDeadline(time.Now().Add(10 * time.Second))
			go func() {
				for _, b := range tc.head {
					if _, err := client.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
			h, err := readHead(server, DefaultMaxHeadBytes)
			if err != nil {
				t.Fatal(err)
			}
			if h.proto != tc.proto || !bytes.Equal(h.buf, tc.head) {
				t.Errorf("read %s, %q; want %s, the head", h.proto, h.buf, tc.proto)
			}
			if got := h.req.Headers["x-canary"]; len(got) != 1 || got[0] != "v2" || h.req.Headers[":path"][0] != "/a" {
				t.Errorf("headers %v", h.req.Headers)
			}
		})
	}
}

// h2Head is an HTTP/2 client's preface, SETTINGS and first HEADERS.
func h2Head(t *testing.T) []byte {
	t.Helper()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "h"}, {":path", "/a"}, {"x-canary", "v2"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	out := []byte(h2head.Preface)
	out = append(out, 0, 0, 0, 0x4, 0, 0, 0, 0, 0) // empty SETTINGS
	n := block.Len()
	// HEADERS, END_STREAM|END_HEADERS, stream 1 (RFC 9113, section 4.1).
	out = append(out, byte(n>>16), byte(n>>8), byte(n), 0x1, 0x5, 0, 0, 0, 1)
	return append(out, block.Bytes()...)
}

func TestStatusCode(t *testing.T) {
	for in, want := range map[string]int{
		"HTTP/1.1 200 OK\r\n":   200,
		"HTTP/1.0 503 \r\n":     503,
		"HTTP/1.1 404":          0, // no space yet: not a whole status line
		"HTTP/2.0 200 OK\r\n":   0,
		"HTTP/1.1 2x0 OK\r\n":   0,
		"HTTP/1.1 099 Low\r\n":  0,
		"\x16\x03\x03\x00\x7a":  0,
		"":                      0,
		"HTTP/1.1 +20 Plus\r\n": 0,
	} {
		if got := statusCode([]byte(in)); got != want {
			t.Errorf("statusCode(%q) = %d, want %d", in, got, want)
		}
	}
}
