package tlshello

import (
	"crypto/tls"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

// capture returns the first flight a crypto/tls client writes with
// config: its ClientHello. No server answers; the handshake fails once the
// pipe closes.
func capture(t *testing.T, config *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(client, config).Handshake()
		client.Close()
	}()
	var out []byte
	buf := make([]byte, 4096)
	wait := 5 * time.Second // for the first bytes; then until the client stops writing
	for {
		if err := server.SetReadDeadline(time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		n, err := server.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
		wait = 300 * time.Millisecond
	}
	server.Close()
	<-done
	if len(out) == 0 {
		t.Fatal("the client wrote nothing")
	}
	return out
}

// betaHello is a ClientHello for beta.example.test offering h2 and HTTP/1.1.
func betaHello(t *testing.T) []byte {
	t.Helper()
	return capture(t, &tls.Config{ServerName: "beta.example.test", NextProtos: []string{"h2", "http/1.1"}})
}

func TestParseRealClient(t *testing.T) {
	buf := betaHello(t)
	hello, n, err := Parse(buf)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if n != len(buf) {
		t.Errorf("consumed %d of %d bytes", n, len(buf))
	}
	want := Hello{
		LegacyVersion:     tls.VersionTLS12,
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		ServerName:        "beta.example.test",
		ALPN:              []string{"h2", "http/1.1"},
	}
	if !reflect.DeepEqual(hello, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", hello, want)
	}
	if hello.MaxVersion() != tls.VersionTLS13 {
		t.Errorf("MaxVersion = %#04x", hello.MaxVersion())
	}
	for i := range n {
		if _, m, err := Parse(buf[:i]); !errors.Is(err, ErrIncomplete) || m != 0 {
			t.Fatalf("Parse of the first %d bytes = %d, %v; want ErrIncomplete", i, m, err)
		}
	}
}

func TestParseRealClientWithoutSNI(t *testing.T) {
	buf := capture(t, &tls.Config{ServerName: "192.0.2.7", MaxVersion: tls.VersionTLS12})
	hello, n, err := Parse(buf)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if n != len(buf) || hello.ServerName != "" || hello.ALPN != nil || hello.MaxVersion() != tls.VersionTLS12 {
		t.Errorf("Parse = %+v, %d of %d bytes", hello, n, len(buf))
	}
}

// TestParseSplitRecords carries a real ClientHello in records of chunk
// bytes each, as RFC 8446 lets a client fragment it.
func TestParseSplitRecords(t *testing.T) {
	buf := betaHello(t)
	want, _, err := Parse(buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 7, 100, 512} {
		split := reframe(buf[recordHeaderBytes:], chunk)
		hello, n, err := Parse(append(split, 23, 3, 3, 0, 1, 0))
		if err != nil {
			t.Fatalf("records of %d bytes: %v", chunk, err)
		}
		if n != len(split) || !reflect.DeepEqual(hello, want) {
			t.Errorf("records of %d bytes: Parse = %+v, %d of %d bytes", chunk, hello, n, len(split))
		}
		if _, _, err := Parse(split[:len(split)-1]); !errors.Is(err, ErrIncomplete) {
			t.Errorf("records of %d bytes, one byte short: %v", chunk, err)
		}
	}
}

// reframe puts a handshake message into handshake records of at most
// chunk bytes of it each.
func reframe(msg []byte, chunk int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(chunk, len(msg))
		out = append(out, typeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestParseRealClientTooLarge(t *testing.T) {
	var protocols []string
	for i := range 90 {
		protocols = append(protocols, strings.Repeat(string(rune('a'+i%26)), 200))
	}
	buf := capture(t, &tls.Config{ServerName: "beta.example.test", NextProtos: protocols})
	if _, n, err := Parse(buf); !errors.Is(err, ErrTooLarge) || n != 0 {
		t.Fatalf("Parse of a %d-byte hello = %d, %v; want ErrTooLarge", len(buf), n, err)
	}
	// The bound is known from the handshake header, before the rest arrives.
	if _, _, err := Parse(buf[:recordHeaderBytes+handshakeHeaderBytes]); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Parse of the headers of a %d-byte hello = %v; want ErrTooLarge", len(buf), err)
	}
}

func TestMaxVersion(t *testing.T) {
	tests := []struct {
		hello Hello
		want  uint16
	}{
		{Hello{LegacyVersion: 0x0301}, 0x0301},
		{Hello{LegacyVersion: 0x0303, SupportedVersions: []uint16{0x3a3a, 0x0304, 0x0303}}, 0x0304},
		{Hello{LegacyVersion: 0x0303, SupportedVersions: []uint16{0xfafa, 0x0303}}, 0x0303},
	}
	for _, tt := range tests {
		if got := tt.hello.MaxVersion(); got != tt.want {
			t.Errorf("MaxVersion of %+v = %#04x; want %#04x", tt.hello, got, tt.want)
		}
	}
}
