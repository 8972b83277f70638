package gate

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
)

// listen returns the address of a real TCP listener that accepts and
// closes, until the test ends.
func listen(t *testing.T) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// closedPort is an address nobody listens on.
func closedPort(t *testing.T) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return a
}

func serve(t *testing.T, h http.HandlerFunc) netip.AddrPort {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
}

var fast = Options{RetryDelay: 10 * time.Millisecond}

func TestTCP(t *testing.T) {
	g := release.Gate{TCP: &release.TCPGate{}, Timeout: time.Second}
	if r := Run(context.Background(), g, []netip.AddrPort{listen(t), listen(t)}, fast); !r.Pass || !strings.Contains(r.Detail, "all 2") {
		t.Errorf("two listening backends: %+v", r)
	}
	down := closedPort(t)
	r := Run(context.Background(), g, []netip.AddrPort{listen(t), down}, fast)
	if r.Pass || !strings.Contains(r.Detail, down.String()) {
		t.Errorf("one backend down: %+v", r)
	}
	if r := Run(context.Background(), g, nil, fast); r.Pass || !strings.Contains(r.Detail, "no backends") {
		t.Errorf("no backends: %+v", r)
	}
}

func TestHTTP(t *testing.T) {
	health := func(body string, status int) netip.AddrPort {
		return serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.RequestURI() != "/healthz?full=1" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		})
	}
	gate := func(status int, expect map[string]string) release.Gate {
		return release.Gate{HTTP: &release.HTTPGate{Path: "/healthz?full=1", ExpectStatus: status, ExpectJSON: expect}, Timeout: time.Second}
	}
	up := `{"db": {"status": "UP", "pool": [1, 2.5]}, "ok": true, "none": null}`
	for _, tc := range []struct {
		name    string
		backend netip.AddrPort
		g       release.Gate
		pass    bool
		detail  string
	}{
		{"status and json", health(up, 200), gate(0, map[string]string{".db.status": "UP", ".ok": "true", ".db.pool[1]": "2.5", ".none": "null"}), true, "all 1"},
		{"wrong value", health(`{"db":{"status":"DOWN"}}`, 200), gate(200, map[string]string{".db.status": "UP"}), false, `.db.status is "DOWN", want "UP"`},
		{"missing field", health(`{"db":{}}`, 200), gate(200, map[string]string{".db.status": "UP"}), false, ".db.status is missing"},
		{"wrong status", health(up, 503), gate(200, nil), false, "status 503, want 200"},
		{"expected other status", health(up, 204), gate(204, nil), true, ""},
		{"not json", health("<html>", 200), gate(200, map[string]string{".db.status": "UP"}), false, "not JSON"},
		{"redirect not followed", serve(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }), gate(200, nil), false, "status 302"},
		{"backend down", closedPort(t), gate(200, nil), false, "connect"},
	} {
		r := Run(context.Background(), tc.g, []netip.AddrPort{tc.backend}, fast)
		if r.Pass != tc.pass || !strings.Contains(r.Detail, tc.detail) {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
}

func TestLookup(t *testing.T) {
	doc := map[string]any{"a": map[string]any{"b": []any{map[string]any{"c": 3.0}, "x"}}, "s": "v"}
	for path, want := range map[string]string{
		".s": "v", ".a.b[0].c": "3", ".a.b[1]": "x", ".": `{"a":{"b":[{"c":3},"x"]},"s":"v"}`,
	} {
		if got, err := Lookup(doc, path); err != nil || got != want {
			t.Errorf("Lookup(%s) = %q, %v; want %q", path, got, err, want)
		}
	}
	for path, want := range map[string]string{
		"s": "starts with a dot", ".a.b[": "unclosed", ".a.b[x]": "not an index", ".a..b": "empty field",
		".a.b[5]": "missing", ".s.t": "missing", ".a[0]": "not an array", ".a.b.c": "not an object", ".zz": "missing",
	} {
		if _, err := Lookup(doc, path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%s): %v, want an error saying %q", path, err, want)
		}
	}
}

func TestExec(t *testing.T) {
	for _, tc := range []struct {
		argv   []string
		pass   bool
		detail string
		output string
	}{
		{[]string{"true"}, true, "exit status 0", ""},
		{[]string{"false"}, false, "exit status 1", ""},
		{[]string{"sh", "-c", "echo hi; echo err >&2; exit 3"}, false, "exit status 3", "hi\nerr\n"},
		{[]string{"/nonexistent/cmd"}, false, "could not run", ""},
	} {
		r := Run(context.Background(), release.Gate{Exec: tc.argv, Timeout: 5 * time.Second}, nil, fast)
		if r.Pass != tc.pass || !strings.Contains(r.Detail, tc.detail) || r.Output != tc.output {
			t.Errorf("%v: %+v", tc.argv, r)
		}
	}
	start := time.Now()
	r := Run(context.Background(), release.Gate{Exec: []string{"sleep", "5"}, Timeout: 200 * time.Millisecond}, nil, fast)
	if r.Pass || !strings.Contains(r.Detail, "in time") || time.Since(start) > 3*time.Second {
		t.Errorf("a command past its timeout: %+v after %v", r, time.Since(start))
	}
	r = Run(context.Background(), release.Gate{Exec: []string{"sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x"}, Timeout: 5 * time.Second}, nil, fast)
	if !r.Pass || len(r.Output) > MaxOutput+50 || !strings.HasSuffix(r.Output, "[output truncated]") {
		t.Errorf("long output: pass %v, %d bytes", r.Pass, len(r.Output))
	}
}

// TestRetries: a gate that fails twice and then passes takes three
// attempts; cancelling stops the retries.
func TestRetries(t *testing.T) {
	var n atomic.Int32
	b := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			w.WriteHeader(503)
		}
	})
	g := release.Gate{HTTP: &release.HTTPGate{Path: "/"}, Retries: 3, Timeout: time.Second}
	if r := Run(context.Background(), g, []netip.AddrPort{b}, fast); !r.Pass || r.Attempts != 3 {
		t.Errorf("flaky backend: %+v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g = release.Gate{TCP: &release.TCPGate{}, Retries: 5}
	if r := Run(ctx, g, []netip.AddrPort{closedPort(t)}, Options{RetryDelay: time.Minute}); r.Pass || r.Attempts != 1 {
		t.Errorf("cancelled: %+v", r)
	}
	results, ok := RunAll(context.Background(), []release.Gate{{TCP: &release.TCPGate{}}, {Exec: []string{"false"}}, {Exec: []string{"true"}}}, []netip.AddrPort{listen(t)}, fast)
	if ok || len(results) != 2 {
		t.Errorf("RunAll stops at the first failure: %v %+v", ok, results)
	}
}
