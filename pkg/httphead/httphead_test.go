package httphead

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		head string
		want Request
	}{
		{"get", "GET /a?b=1 HTTP/1.1\r\nHost: api.example.com\r\nX-Canary: v2\r\n\r\n", Request{
			Method: "GET", Target: "/a?b=1", Version: "HTTP/1.1", Host: "api.example.com",
			Headers: map[string][]string{"host": {"api.example.com"}, "x-canary": {"v2"}},
		}},
		{"http/1.0 without host", "GET / HTTP/1.0\r\n\r\n", Request{
			Method: "GET", Target: "/", Version: "HTTP/1.0", Headers: map[string][]string{},
		}},
		{"bare lf and leading empty lines", "\r\n\nGET / HTTP/1.1\nX-A:  1 \t\n\n", Request{
			Method: "GET", Target: "/", Version: "HTTP/1.1", Headers: map[string][]string{"x-a": {"1"}},
		}},
		{"repeated headers keep order", "GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nX-A:\r\n\r\n", Request{
			Method: "GET", Target: "/", Version: "HTTP/1.1", Headers: map[string][]string{"x-a": {"1", "2", ""}},
		}},
		{"h2c upgrade", "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", Request{
			Method: "GET", Target: "/", Version: "HTTP/1.1", Upgrade: "h2c",
			Headers: map[string][]string{"connection": {"Upgrade, HTTP2-Settings"}, "upgrade": {"h2c"}, "http2-settings": {"AAMAAABkAAQAAP__"}},
		}},
		{"upgrade without connection", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", Request{
			Method: "GET", Target: "/", Version: "HTTP/1.1", Headers: map[string][]string{"upgrade": {"websocket"}},
		}},
		{"content length list", "POST /p HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n", Request{
			Method: "POST", Target: "/p", Version: "HTTP/1.1", ContentLength: 5,
			Headers: map[string][]string{"content-length": {"5, 5", "5"}},
		}},
		{"chunked last", "POST /p HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n", Request{
			Method: "POST", Target: "/p", Version: "HTTP/1.1", Chunked: true,
			Headers: map[string][]string{"transfer-encoding": {"gzip", "Chunked"}},
		}},
		{"obs-text in value", "GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n", Request{
			Method: "GET", Target: "/", Version: "HTTP/1.1", Headers: map[string][]string{"x-name": {"caf\xc3\xa9"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, n, err := Parse([]byte(tt.head + "BODY"))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n != len(tt.head) {
				t.Errorf("consumed %d bytes; want %d", n, len(tt.head))
			}
			if !reflect.DeepEqual(req, tt.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", req, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		head string
		want error
		msg  string
	}{
		{"two spaces", "GET  / HTTP/1.1\r\n\r\n", ErrMalformed, "separated by single spaces"},
		{"no version", "GET /\r\n\r\n", ErrMalformed, "separated by single spaces"},
		{"bad method", "G(T / HTTP/1.1\r\n\r\n", ErrMalformed, `"G(T" is not a method`},
		{"http/2 version", "GET / HTTP/2.0\r\n\r\n", ErrMalformed, `version "HTTP/2.0" is not HTTP/1.0 or HTTP/1.1`},
		{"lowercase version", "GET / http/1.1\r\n\r\n", ErrMalformed, "is not HTTP/1.0"},
		{"version letters", "GET / HTTP/1.x\r\n\r\n", ErrMalformed, "is not HTTP/1.0"},
		{"preface", Preface, ErrMalformed, "HTTP/2 connection preface"},
		{"control in target", "GET /\x01 HTTP/1.1\r\n\r\n", ErrMalformed, "is not a request target"},
		{"no colon", "GET / HTTP/1.1\r\nX-Canary v2\r\n\r\n", ErrMalformed, `header line 2 "X-Canary v2" has no colon`},
		{"empty name", "GET / HTTP/1.1\r\n: v2\r\n\r\n", ErrMalformed, "no name before its colon"},
		{"space before colon", "GET / HTTP/1.1\r\nX-Canary : v2\r\n\r\n", ErrMalformed, "whitespace between the name and the colon"},
		{"bad name", "GET / HTTP/1.1\r\nX(Canary): v2\r\n\r\n", ErrMalformed, "is not a valid header name"},
		{"obs-fold", "GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n", ErrMalformed, "obs-fold"},
		{"nul in value", "GET / HTTP/1.1\r\nX-A: 1\x002\r\n\r\n", ErrMalformed, "line 2 has a NUL"},
		{"bare cr", "GET / HTTP/1.1\r\nX-A: 1\r2\r\n\r\n", ErrMalformed, "bare CR"},
		{"control in value", "GET / HTTP/1.1\r\nX-A: 1\x1b2\r\n\r\n", ErrMalformed, "control character 0x1b"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ErrMalformed, "2 Host headers"},
		{"cl and te", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed, "both Content-Length and Transfer-Encoding"},
		{"te not chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", ErrMalformed, "does not end in chunked"},
		{"cl differs", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", ErrMalformed, "values 3 and 4 differ"},
		{"cl negative", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", ErrMalformed, `"-1" is not a decimal length`},
		{"cl huge", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", ErrMalformed, "not a decimal length"},
		{"cl empty", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", ErrMalformed, "Content-Length is empty"},
		{"nul before the line ends", "GET / HTTP/1.1\r\nX-A: \x00", ErrMalformed, "NUL"},
		{"too many headers", "GET / HTTP/1.1\r\n" + strings.Repeat("X-A: 1\r\n", MaxHeaders+1) + "\r\n", ErrTooLarge, "more than 100 header lines"},
		{"long line", "GET / HTTP/1.1\r\nX-A: " + strings.Repeat("a", MaxLineBytes) + "\r\n\r\n", ErrTooLarge, "line 2 is longer than 8192 bytes"},
		{"long line unfinished", "GET / HTTP/1.1\r\nX-A: " + strings.Repeat("a", MaxLineBytes), ErrTooLarge, "line 2 is longer"},
		{"long head", "GET / HTTP/1.1\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 2000)+"\r\n", 9) + "\r\n", ErrTooLarge, "longer than 16384 bytes"},
		{"long head unfinished", "GET / HTTP/1.1\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 2000)+"\r\n", 8) + "X-B: " + strings.Repeat("b", 400), ErrTooLarge, "no end of the head in the first 16384 bytes"},
		{"only empty lines", strings.Repeat("\r\n", MaxHeadBytes), ErrTooLarge, "only empty lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, n, err := Parse([]byte(tt.head))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Parse = %+v, %d, %v; want %v saying %q", req, n, err, tt.want, tt.msg)
			}
			if n != 0 {
				t.Errorf("consumed %d bytes on error", n)
			}
		})
	}
}

// TestParseIncremental feeds a head byte by byte: every proper prefix is
// incomplete and the whole head parses.
func TestParseIncremental(t *testing.T) {
	head := "\r\nPOST /v2/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nX-Canary: v2\r\n\r\n"
	for i := range len(head) {
		if _, n, err := Parse([]byte(head[:i])); !errors.Is(err, ErrIncomplete) || n != 0 {
			t.Fatalf("Parse(%q) = %d, %v; want ErrIncomplete", head[:i], n, err)
		}
	}
	req, n, err := Parse([]byte(head + "hi"))
	if err != nil || n != len(head) || req.ContentLength != 2 || !req.HasBody() {
		t.Fatalf("Parse = %+v, %d, %v", req, n, err)
	}
}

func TestParsePipelined(t *testing.T) {
	first := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
	second := "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
	req, n, err := Parse([]byte(first + second))
	if err != nil || n != len(first) || req.Target != "/1" || req.HasBody() {
		t.Fatalf("Parse = %+v, %d, %v; want the first request only", req, n, err)
	}
}

// TestParseRealClient parses what net/http writes for requests.
func TestParseRealClient(t *testing.T) {
	get, err := http.NewRequest("GET", "http://api.example.com/v2/users?id=7", nil)
	if err != nil {
		t.Fatal(err)
	}
	get.Header.Set("X-Canary", "v2")
	get.Header.Add("X-Imsi", "460001")
	get.Header.Add("X-Imsi", "460002")
	post, err := http.NewRequest("POST", "http://api.example.com/upload", io.NopCloser(strings.NewReader("payload")))
	if err != nil {
		t.Fatal(err)
	}
	post.ContentLength = -1 // unknown: sent chunked
	for _, r := range []*http.Request{get, post} {
		var buf bytes.Buffer
		if err := r.Write(&buf); err != nil {
			t.Fatal(err)
		}
		req, n, err := Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("Parse(%q): %v", buf.String(), err)
		}
		head := buf.String()[:n]
		if !strings.HasSuffix(head, "\r\n\r\n") || strings.Count(head, "\r\n\r\n") != 1 {
			t.Errorf("consumed %q, not one head", head)
		}
		if req.Method != r.Method || req.Host != "api.example.com" || req.Target != r.URL.RequestURI() {
			t.Errorf("Parse = %+v", req)
		}
		if r.Method == "GET" && (req.HasBody() || !reflect.DeepEqual(req.Headers["x-imsi"], []string{"460001", "460002"})) {
			t.Errorf("GET parsed as %+v", req)
		}
		if r.Method == "POST" && !req.Chunked {
			t.Errorf("POST with unknown length not chunked: %+v", req)
		}
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		head string
		want map[string][]string
	}{
		{"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", map[string][]string{
			"host": {"h"}, ":method": {"GET"}, ":scheme": {"http"}, ":authority": {"h"}, ":path": {"/a"},
		}},
		{"GET HTTP://proxy.example:8080?q HTTP/1.1\r\nHost: h\r\n\r\n", map[string][]string{
			"host": {"h"}, ":method": {"GET"}, ":scheme": {"http"}, ":authority": {"proxy.example:8080"}, ":path": {"/?q"},
		}},
		{"GET https://a.example/x/y HTTP/1.1\r\n\r\n", map[string][]string{
			":method": {"GET"}, ":scheme": {"https"}, ":authority": {"a.example"}, ":path": {"/x/y"},
		}},
		{"GET /go?to=http://b.example/ HTTP/1.1\r\nHost: h\r\n\r\n", map[string][]string{
			"host": {"h"}, ":method": {"GET"}, ":scheme": {"http"}, ":authority": {"h"}, ":path": {"/go?to=http://b.example/"},
		}},
		{"CONNECT a.example:443 HTTP/1.1\r\n\r\n", map[string][]string{
			":method": {"CONNECT"}, ":scheme": {"http"}, ":authority": {"a.example:443"},
		}},
		{"OPTIONS * HTTP/1.0\r\n\r\n", map[string][]string{
			":method": {"OPTIONS"}, ":scheme": {"http"}, ":path": {"*"},
		}},
	}
	for _, tt := range tests {
		req, _, err := Parse([]byte(tt.head))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.head, err)
		}
		if got := req.Fields(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Fields of %q = %v; want %v", tt.head, got, tt.want)
		}
	}
}

// TestCloses: which requests end their connection with their response.
func TestCloses(t *testing.T) {
	for head, want := range map[string]bool{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n":                                              false,
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n":                         true,
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\r\n":             true,
		"GET / HTTP/1.0\r\n\r\n":                                                         true,
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n":                               false,
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n": false,
	} {
		req, _, err := Parse([]byte(head))
		if err != nil {
			t.Fatalf("%q: %v", head, err)
		}
		if got := req.Closes(); got != want {
			t.Errorf("%q: Closes() = %v, want %v", head, got, want)
		}
	}
}
