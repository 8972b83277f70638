package h2head

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// capture returns the bytes Go's HTTP/2 client, with prior knowledge over
// cleartext, writes for req before it waits for an answer.
func capture(t *testing.T, req *http.Request) []byte {
	t.Helper()
	client, server := net.Pipe()
	transport := &http.Transport{
		Protocols: new(http.Protocols),
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return client, nil
		},
	}
	transport.Protocols.SetUnencryptedHTTP2(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := (&http.Client{Transport: transport}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
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
	transport.CloseIdleConnections()
	if len(out) == 0 {
		t.Fatal("the client wrote nothing")
	}
	return out
}

func newRequest(t *testing.T, method, url string, body string, header map[string]string) *http.Request {
	t.Helper()
	var req *http.Request
	var err error
	if body == "" {
		req, err = http.NewRequest(method, url, nil)
	} else {
		req, err = http.NewRequest(method, url, strings.NewReader(body))
	}
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range header {
		req.Header.Set(name, value)
	}
	return req
}

func TestParseRealGet(t *testing.T) {
	buf := capture(t, newRequest(t, "GET", "http://api.example.com:8080/v2/users?id=7", "", map[string]string{
		"X-Canary": "v2", "X-Imsi": "460001",
	}))
	req, n, err := Parse(buf)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if n != len(buf) {
		t.Errorf("consumed %d of %d bytes; a GET has nothing after its headers", n, len(buf))
	}
	if req.Method != "GET" || req.Path != "/v2/users?id=7" || req.Authority != "api.example.com:8080" ||
		req.Scheme != "http" || req.StreamID != 1 || !req.EndStream || req.GRPC {
		t.Errorf("Parse = %+v", req)
	}
	if got := req.Headers["x-canary"]; len(got) != 1 || got[0] != "v2" {
		t.Errorf("x-canary = %q", got)
	}
	fields := req.Fields()
	if fields[":path"][0] != "/v2/users?id=7" || fields["x-imsi"][0] != "460001" {
		t.Errorf("Fields = %v", fields)
	}
	for i := range n {
		if _, m, err := Parse(buf[:i]); !errors.Is(err, ErrIncomplete) || m != 0 {
			t.Fatalf("Parse of the first %d bytes = %d, %v; want ErrIncomplete", i, m, err)
		}
	}
}

// TestParseRealGRPC reads a gRPC-style unary call: POST, content-type
// application/grpc, te: trailers, custom metadata, a length-prefixed body.
func TestParseRealGRPC(t *testing.T) {
	message := "\x00\x00\x00\x00\x03abc"
	buf := capture(t, newRequest(t, "POST", "http://svc.example:50051/helloworld.Greeter/SayHello", message, map[string]string{
		"Content-Type": "application/grpc", "TE": "trailers", "X-Canary": "v2", "Grpc-Timeout": "1S",
	}))
	req, n, err := Parse(buf)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !req.GRPC || req.EndStream || req.Method != "POST" || req.Path != "/helloworld.Greeter/SayHello" {
		t.Errorf("Parse = %+v", req)
	}
	for name, want := range map[string]string{"te": "trailers", "x-canary": "v2", "grpc-timeout": "1S"} {
		if got := req.Headers[name]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q; want %q", name, got, want)
		}
	}
	rest := buf[n:]
	if len(rest) < frameHeaderBytes || rest[3] != frameData || !bytes.Contains(rest, []byte(message)) {
		t.Errorf("after the head come %q; want the DATA frame with the message", rest)
	}
}

func TestParseRealTooLarge(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 300) // 4800 bytes, little to compress
	header := map[string]string{}
	for _, name := range []string{"X-A", "X-B", "X-C", "X-D"} {
		header[name] = big
	}
	buf := capture(t, newRequest(t, "GET", "http://a.example/", "", header))
	if _, n, err := Parse(buf); !errors.Is(err, ErrTooLarge) || n != 0 {
		t.Fatalf("Parse = %d, %v; want ErrTooLarge", n, err)
	}
}

func TestFieldsOmitsAbsent(t *testing.T) {
	req := Request{Method: "CONNECT", Authority: "a:443", Headers: map[string][]string{"x": {"1"}}}
	fields := req.Fields()
	if len(fields) != 3 || fields[":authority"][0] != "a:443" || fields[":method"][0] != "CONNECT" {
		t.Fatalf("Fields = %v", fields)
	}
	if _, ok := fields[":path"]; ok {
		t.Fatalf("Fields has an empty :path: %v", fields)
	}
}
