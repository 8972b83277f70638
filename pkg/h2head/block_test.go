package h2head

import (
	"errors"
	"strings"
	"testing"
)

func request(block []byte) []byte {
	return conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagEndStream, 1, block))
}

func TestParseBlocks(t *testing.T) {
	tests := []struct {
		name  string
		block []byte
		check func(Request) bool
	}{
		{"repeated headers in order", get(t, "cookie", "a=1", "cookie", "b=2"), func(r Request) bool {
			return strings.Join(r.Headers["cookie"], ";") == "a=1;b=2"
		}},
		{"grpc proto", get(t, "content-type", "application/grpc+proto"), func(r Request) bool { return r.GRPC }},
		{"grpc params", get(t, "content-type", "Application/GRPC;charset=utf-8"), func(r Request) bool { return r.GRPC }},
		{"not grpc", get(t, "content-type", "application/grpc-web"), func(r Request) bool { return !r.GRPC }},
		{"json", get(t, "content-type", "application/json"), func(r Request) bool { return !r.GRPC }},
		{"connect", encode(t, ":method", "CONNECT", ":authority", "a.example:443"), func(r Request) bool {
			return r.Method == "CONNECT" && r.Path == "" && r.Authority == "a.example:443"
		}},
		{"no authority", encode(t, ":method", "GET", ":scheme", "https", ":path", "/"), func(r Request) bool {
			return r.Authority == "" && r.Scheme == "https"
		}},
		{"empty value", get(t, "x-debug", ""), func(r Request) bool { return len(r.Headers["x-debug"]) == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _, err := Parse(request(tt.block))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !tt.check(req) {
				t.Errorf("Parse = %+v", req)
			}
		})
	}
}

func TestParseRejectsBlocks(t *testing.T) {
	long := strings.Repeat("v", MaxStringBytes+1)
	// One 4000-byte field, then indexed references to it: a small block
	// that decodes to a list far beyond the bound.
	pairs := []string{}
	for range 8 {
		pairs = append(pairs, "x-big", strings.Repeat("b", 4000))
	}
	tests := []struct {
		name  string
		block []byte
		want  error
		msg   string
	}{
		{"bad index", []byte{0x80 | 0x7f, 0x7f}, ErrMalformed, "header block"},
		{"truncated block", get(t, "x-canary", "v2")[:20], ErrMalformed, "header block"},
		{"table size above ours", append([]byte{0x3f, 0xe1, 0x3f}, get(t)...), ErrMalformed, "header block"}, // size update to 8192,
		{"uppercase name", get(t, "X-Canary", "v2"), ErrMalformed, `header name "X-Canary" is not a lowercase token`},
		{"bad name", get(t, "x canary", "v2"), ErrMalformed, "not a lowercase token"},
		{"empty name", get(t, "", "v2"), ErrMalformed, "empty name"},
		{"newline in value", get(t, "x-a", "1\r\nx-b: 2"), ErrMalformed, "NUL, CR or LF"},
		{"connection header", get(t, "connection", "keep-alive"), ErrMalformed, "connection-specific"},
		{"upgrade header", get(t, "upgrade", "websocket"), ErrMalformed, "connection-specific"},
		{"te gzip", get(t, "te", "gzip"), ErrMalformed, "only te: trailers"},
		{"pseudo after regular", get(t, "x-a", "1", ":path", "/y"), ErrMalformed, "pseudo-header :path after a regular header"},
		{"unknown pseudo", get(t, ":protocol", "websocket"), ErrMalformed, ":protocol is not a request pseudo-header"},
		{"status pseudo", encode(t, ":status", "200"), ErrMalformed, ":status is not a request pseudo-header"},
		{"twice", encode(t, ":method", "GET", ":method", "POST", ":scheme", "http", ":path", "/"), ErrMalformed, ":method appears twice"},
		{"empty path", encode(t, ":method", "GET", ":scheme", "http", ":path", ""), ErrMalformed, ":path is empty"},
		{"no method", encode(t, ":scheme", "http", ":path", "/"), ErrMalformed, "no :method"},
		{"no path", encode(t, ":method", "GET", ":scheme", "http"), ErrMalformed, "a GET request needs :scheme and :path"},
		{"connect with path", encode(t, ":method", "CONNECT", ":authority", "a:1", ":path", "/"), ErrMalformed, "CONNECT request"},
		{"long string", get(t, "x-a", long), ErrTooLarge, "longer than 8192 bytes"},
		{"list too large", get(t, pairs...), ErrTooLarge, "header list is larger than 16384 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := Parse(request(tt.block))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Parse = %d, %v; want %v saying %q", n, err, tt.want, tt.msg)
			}
		})
	}
}
