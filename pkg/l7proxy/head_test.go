package l7proxy

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/graylane/graylane/pkg/h2head"
	"github.com/graylane/graylane/pkg/httphead"
)

// TestReadHeadByteByByte: heads delivered one byte per read are found
// complete at their last byte, however the ending empty line is split
// across reads (the HTTP/1.x parse gate). An HTTP/2 head ends with the
// later of the first header block and the client's acknowledgement of
// the proxy's SETTINGS, which is taken out of the bytes read; the other
// frames before HEADERS stay.
func TestReadHeadByteByByte(t *testing.T) {
	pre, hdrs := h2Preface(), h2Headers(t)
	for _, tc := range []struct {
		name      string
		send, buf []byte // what the client sends; what readHead keeps
		proto     httphead.Protocol
	}{
		{"CRLF", []byte("GET /a HTTP/1.1\r\nHost: h\r\nX-Canary: v2\r\n\r\n"), nil, httphead.HTTP1},
		{"bare LF", []byte("GET /a HTTP/1.1\nHost: h\nX-Canary: v2\n\n"), nil, httphead.HTTP1},
		{"leading empty lines", []byte("\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\nX-Canary: v2\r\n\r\n"), nil, httphead.HTTP1},
		{"HTTP/2, ACK after HEADERS", cat(pre, hdrs, settingsAckFrame), cat(pre, hdrs), httphead.HTTP2},
		{"HTTP/2, ACK before HEADERS", cat(pre, settingsAckFrame, hdrs), cat(pre, hdrs), httphead.HTTP2},
		{"HTTP/2, PING and WINDOW_UPDATE around the ACK", cat(pre, pingFrame, settingsAckFrame, windowUpdateFrame, hdrs),
			cat(pre, pingFrame, windowUpdateFrame, hdrs), httphead.HTTP2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.buf == nil {
				tc.buf = tc.send
			}
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			server.SetDeadline(time.Now().Add(10 * time.Second))
			got := make(chan []byte, 1)
			go func() { // what the proxy sends the client
				b, _ := io.ReadAll(client)
				got <- b
			}()
			go func() {
				for _, b := range tc.send {
					if _, err := client.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
			h, err := readHead(server, DefaultMaxHeadBytes)
			if err != nil {
				t.Fatal(err)
			}
			server.Close()
			if h.proto != tc.proto || !bytes.Equal(h.buf, tc.buf) {
				t.Errorf("read %s, %q; want %s, %q", h.proto, h.buf, tc.proto, tc.buf)
			}
			if got := h.req.Headers["x-canary"]; len(got) != 1 || got[0] != "v2" || h.req.Headers[":path"][0] != "/a" {
				t.Errorf("headers %v", h.req.Headers)
			}
			want := []byte{}
			if tc.proto == httphead.HTTP2 {
				want = serverSettings[:]
			}
			if sent := <-got; !bytes.Equal(sent, want) {
				t.Errorf("the proxy sent the client %q, want %q", sent, want)
			}
		})
	}
}

// HTTP/2 frames a client sends before its first request: the
// acknowledgement of the server's SETTINGS, a PING, a WINDOW_UPDATE of
// the connection (RFC 9113, sections 6.5, 6.7 and 6.9).
var (
	settingsAckFrame  = []byte{0, 0, 0, 0x4, 0x1, 0, 0, 0, 0}
	pingFrame         = []byte{0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	windowUpdateFrame = []byte{0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0, 0x0f, 0, 1}
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// h2Preface is an HTTP/2 client's preface and empty SETTINGS.
func h2Preface() []byte {
	return append([]byte(h2head.Preface), 0, 0, 0, 0x4, 0, 0, 0, 0, 0)
}

// h2Headers is a HEADERS frame on stream 1: GET /a with x-canary: v2.
func h2Headers(t *testing.T) []byte {
	t.Helper()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "h"}, {":path", "/a"}, {"x-canary", "v2"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	n := block.Len()
	// HEADERS, END_STREAM|END_HEADERS, stream 1 (RFC 9113, section 4.1).
	return append([]byte{byte(n >> 16), byte(n >> 8), byte(n), 0x1, 0x5, 0, 0, 0, 1}, block.Bytes()...)
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
