package tlshello

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Offsets in a single-record ClientHello.
const (
	offHandshakeType   = 5
	offHandshakeLength = 6
	offSessionID       = 43
)

// suitesOffset is where the cipher suites' length is in a single-record
// ClientHello.
func suitesOffset(buf []byte) int { return offSessionID + 1 + int(buf[offSessionID]) }

// extensionsOffset is where the extensions' length is.
func extensionsOffset(buf []byte) int {
	suites := suitesOffset(buf)
	methods := suites + 2 + (int(buf[suites])<<8 | int(buf[suites+1]))
	return methods + 1 + int(buf[methods])
}

func add16(b []byte, delta int) {
	v := (int(b[0])<<8 | int(b[1])) + delta
	b[0], b[1] = byte(v>>8), byte(v)
}

func TestParseCorrupted(t *testing.T) {
	real := betaHello(t)
	sni := bytes.Index(real, []byte("beta.example.test"))
	alpn := bytes.Index(real, []byte("\x02h2\x08http/1.1"))
	versions := bytes.Index(real, []byte{0, 43, 0, 5, 4, 3, 4, 3, 3})
	if sni < 0 || alpn < 0 || versions < 0 {
		t.Fatalf("the real hello lacks the fields corrupted here: %q", real)
	}
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   error
		msg    string
	}{
		{"not tls", func([]byte) []byte { return []byte("GET / HTTP/1.1\r\n\r\n") }, ErrMalformed, "record type 71 (unknown) is not a handshake"},
		{"alert record", func(b []byte) []byte { b[0] = 21; return b }, ErrMalformed, "record type 21 (alert) is not a handshake"},
		{"record version", func(b []byte) []byte { b[1] = 2; return b }, ErrMalformed, "version 0x0201, not TLS"},
		{"empty record", func(b []byte) []byte { b[3], b[4] = 0, 0; return b }, ErrMalformed, "empty handshake record"},
		{"record too long", func(b []byte) []byte { b[3], b[4] = 0x40, 1; return b }, ErrMalformed, "over the TLS limit of 16384"},
		{"server hello", func(b []byte) []byte { b[offHandshakeType] = 2; return b }, ErrMalformed, "type 2 (server_hello) is not a ClientHello"},
		{"hello shorter than record", func(b []byte) []byte { b[offHandshakeLength+2]--; return b }, ErrMalformed, "1 bytes follow the ClientHello in its record"},
		{"hello longer than record", func(b []byte) []byte { b[offHandshakeLength+2]++; return b }, ErrIncomplete, "read more"},
		{"second record not handshake", func(b []byte) []byte {
			split := reframe(b[recordHeaderBytes:], 100)
			split[105] = 23
			return split
		}, ErrMalformed, "record 2 is of type 23 (application_data) before the ClientHello ended"},
		{"session id too long", func(b []byte) []byte { b[offSessionID] = 33; return b }, ErrMalformed, "session ID"},
		{"odd cipher suites", func(b []byte) []byte { add16(b[suitesOffset(b):], -1); return b }, ErrMalformed, "cipher suites of"},
		{"extensions length", func(b []byte) []byte { add16(b[extensionsOffset(b):], 1); return b }, ErrMalformed, "extensions' length does not match"},
		{"extension past list", func(b []byte) []byte { add16(b[sni-7:], 0x7000); return b }, ErrMalformed, "an extension is longer than the extension list"},
		{"server name list length", func(b []byte) []byte { add16(b[sni-5:], -1); return b }, ErrMalformed, "server_name: the name list's length"},
		{"server name length", func(b []byte) []byte { add16(b[sni-2:], 1); return b }, ErrMalformed, "server_name: a name is longer than the list"},
		{"server name byte", func(b []byte) []byte { b[sni+4] = ' '; return b }, ErrMalformed, "host name has byte 0x20"},
		{"duplicate extension", func(b []byte) []byte { b[sni-9], b[sni-8] = 0, 16; return b }, ErrMalformed, "ALPN"},
		{"alpn empty name", func(b []byte) []byte { b[alpn] = 0; return b }, ErrMalformed, "ALPN: a protocol name is empty"},
		{"supported versions odd", func(b []byte) []byte { b[versions+4] = 3; return b }, ErrMalformed, "supported_versions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.mutate(bytes.Clone(real))
			_, n, err := Parse(in)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Parse = %d, %v; want %v saying %q", n, err, tt.want, tt.msg)
			}
			if n != 0 {
				t.Errorf("consumed %d bytes on error", n)
			}
		})
	}
}

// TestParseDuplicateExtension renames the server_name extension to the
// type of an extension that comes later, with data that type ignores.
func TestParseDuplicateExtension(t *testing.T) {
	in := betaHello(t)
	sni := bytes.Index(in, []byte("beta.example.test"))
	in[sni-9], in[sni-8] = 0, 10 // supported_groups, which Go's client also sends
	if _, _, err := Parse(in); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "extension 10 appears twice") {
		t.Fatalf("Parse = %v; want a duplicate extension", err)
	}
}

func TestParseHelloWithoutExtensions(t *testing.T) {
	body := append([]byte{3, 3}, make([]byte, 32)...) // version, random
	body = append(body, 0, 0, 2, 0, 0x2f, 1, 0)       // no session ID, one suite, null compression
	msg := append([]byte{typeClientHello, 0, 0, byte(len(body))}, body...)
	hello, n, err := Parse(reframe(msg, 1000))
	if err != nil || n != len(msg)+recordHeaderBytes || hello.LegacyVersion != 0x0303 || hello.ServerName != "" {
		t.Fatalf("Parse = %+v, %d, %v", hello, n, err)
	}
}
