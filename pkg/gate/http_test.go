package gate

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
)

// serveOn starts a real HTTP server on host until the test ends.
func serveOn(t *testing.T, host string, h http.HandlerFunc) netip.AddrPort {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(ln.Addr().String())
}

func serve(t *testing.T, h http.HandlerFunc) netip.AddrPort { return serveOn(t, "127.0.0.1", h) }

// answer serves body with status, on /healthz?full=1 only.
func answer(t *testing.T, status int, body string) netip.AddrPort {
	return serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RequestURI() != "/healthz?full=1" {
			http.Error(w, "no such page "+r.URL.RequestURI(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	})
}

func httpGate(path string, status int, expect map[string]string) release.Gate {
	return release.Gate{HTTP: &release.HTTPGate{Path: path, ExpectStatus: status, ExpectJSON: expect}, Timeout: time.Second}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	const health = "/healthz?full=1"
	full := `{"db": {"status": "UP", "replicas": [{"name": "a", "lag": 0}, {"name": "b", "lag": 3.5}]},
		"ok": true, "down": false, "none": null, "count": 3, "ratio": 3.0, "big": 12345678901234567890, "exp": 1e2,
		"list": [1, "two", null], "empty": {}}`
	big := strings.Repeat(" ", MaxBody) + "{}"
	for _, tc := range []struct {
		name    string
		backend netip.AddrPort
		g       release.Gate
		pass    bool
		// detail is the failing backend's part of the detail, or the
		// whole detail of a pass; after " | ", the start of what the
		// backend answered, which only the output quotes.
		detail string
	}{
		{"status and every kind of value", answer(t, 200, full), httpGate(health, 0, map[string]string{
			".db.status": "UP", ".db.replicas[1].lag": "3.5", ".db.replicas[0].lag": "0", ".db.replicas[1].name": "b",
			".ok": "true", ".down": "false", ".none": "null", ".count": "3", ".ratio": "3", ".big": "12345678901234567890",
			".exp": "100", ".list": `[1,"two",null]`, ".list[2]": "null", ".empty": "{}",
		}), true, ""},
		{"pass says what it checked", answer(t, 200, full), httpGate(health, 200, map[string]string{".db.status": "UP", ".ok": "true"}), true,
			`got status 200 for /healthz?full=1 with .db.status = "UP", .ok = "true" from the only canary backend`},
		{"the whole document", answer(t, 200, `{"b": [1, 2.5], "a": "x"}`), httpGate(health, 200, map[string]string{".": `{"a":"x","b":[1,2.5]}`}), true, ""},
		{"a top-level array", answer(t, 200, `[{"state": "ready"}]`), httpGate(health, 200, map[string]string{".[0].state": "ready"}), true, ""},
		{"status only", answer(t, 200, "not json at all"), httpGate(health, 200, nil), true, "got status 200 for /healthz?full=1 from the only canary backend"},
		{"another status expected", answer(t, 204, ""), httpGate(health, 204, nil), true, ""},
		{"wrong value", answer(t, 200, `{"db": {"status": "DOWN"}}`), httpGate(health, 200, map[string]string{".db.status": "UP"}), false,
			`.db.status is not "UP" (the answer is in the gate's output) | .db.status is "DOWN"`},
		{"wrong number", answer(t, 200, `{"count": 2.50}`), httpGate(health, 200, map[string]string{".count": "3"}), false,
			`.count is not "3" (the answer is in the gate's output) | .count is "2.5"`},
		{"a string is not a boolean", answer(t, 200, `{"ok": "yes"}`), httpGate(health, 200, map[string]string{".ok": "true"}), false,
			`.ok is not "true" (the answer is in the gate's output) | .ok is "yes"`},
		{"several wrong", answer(t, 200, `{"a": 1, "b": 2}`), httpGate(health, 200, map[string]string{".b": "1", ".a": "2", ".c": "3"}), false,
			`.a is not "2", .b is not "1", .c is missing (the answer is in the gate's output) | .a is "1", .b is "2"`},
		{"missing field", answer(t, 200, `{"db": {}}`), httpGate(health, 200, map[string]string{".db.status": "UP"}), false,
			".db.status is missing"},
		{"missing parent", answer(t, 200, `{}`), httpGate(health, 200, map[string]string{".db.status": "UP"}), false,
			".db.status is missing: there is no .db"},
		{"short array", answer(t, 200, `{"items": [1]}`), httpGate(health, 200, map[string]string{".items[1]": "2"}), false,
			".items[1] is missing: .items has 1 elements"},
		{"null is not an object", answer(t, 200, `{"db": null}`), httpGate(health, 200, map[string]string{".db.status": "UP"}), false,
			".db.status is missing: .db is null, not an object"},
		{"not JSON", answer(t, 200, "<html>\n  <b>hello</b>\n</html>"), httpGate(health, 200, map[string]string{".db.status": "UP"}), false,
			`the body is not JSON (the answer is in the gate's output) | invalid character '<' looking for beginning of value: "<html> <b>hello</b> </html>"`},
		{"two values", answer(t, 200, `{"a": 1} {"a": 2}`), httpGate(health, 200, map[string]string{".a": "1"}), false,
			`the body is not JSON (the answer is in the gate's output) | more than one value: "{\"a\": 1} {\"a\": 2}"`},
		{"empty body", answer(t, 200, ""), httpGate(health, 200, map[string]string{".a": "1"}), false,
			`the body is not JSON (the answer is in the gate's output) | empty body: empty`},
		{"body too large for JSON", answer(t, 200, big), httpGate(health, 200, map[string]string{".": "{}"}), false,
			fmt.Sprintf("the body is larger than %d bytes: too large to check its JSON", MaxBody)},
		{"large body, status only", answer(t, 200, big), httpGate(health, 200, nil), true, ""},
		{"wrong status", answer(t, 503, `{"db": {"status": "DOWN"}}`), httpGate(health, 0, nil), false,
			`status 503, want 200 (the answer is in the gate's output) | body "{\"db\": {\"status\": \"DOWN\"}}"`},
		{"long body excerpt", answer(t, 500, strings.Repeat("é", 300)), httpGate(health, 200, nil), false,
			`status 500, want 200 (the answer is in the gate's output) | body "` + strings.Repeat("é", excerptLen/2) + `…"`},
		{"redirect not followed", serve(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }),
			httpGate(health, 200, nil), false, `status 302, want 200 (the answer is in the gate's output) | a redirect to "/elsewhere", not followed; body`},
		{"the path and query are sent", answer(t, 200, "{}"), httpGate("/healthz", 200, nil), false, `status 404, want 200 (the answer is in the gate's output) | body "no such page`},
		{"no path is /", serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" || !strings.HasPrefix(r.UserAgent(), "graylane-gate/") {
				w.WriteHeader(400)
			}
		}), httpGate("", 200, nil), true, "got status 200 for / from the only canary backend"},
		{"backend down", closedPort(t), httpGate(health, 200, nil), false, "connect: connection refused"},
		{"no answer in time", serve(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }),
			release.Gate{HTTP: &release.HTTPGate{Path: "/"}, Timeout: 200 * time.Millisecond}, false, "timed out after 200ms (the gate's timeout)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := Run(context.Background(), tc.g, []netip.AddrPort{tc.backend}, fast)
			want, answer, _ := strings.Cut(tc.detail, " | ")
			if !tc.pass {
				want = fmt.Sprintf("1 of 1 canary backends failed: %s: %s", tc.backend, want)
			}
			if answer != "" {
				answer = fmt.Sprintf("%s: %s", tc.backend, answer)
			}
			if r.Pass != tc.pass || !strings.HasPrefix(r.Detail, want) || r.Attempts != 1 || !strings.HasPrefix(r.Output, answer) || (answer == "") != (r.Output == "") {
				t.Errorf("got %+v\nwant pass %v, detail %q, output %q", r, tc.pass, want, answer)
			}
		})
	}
}

// TestHTTPBackends: every backend is asked; the failing ones are named.
func TestHTTPBackends(t *testing.T) {
	t.Parallel()
	good, bad := answer(t, 200, `{"v": 2}`), answer(t, 200, `{"v": 1}`)
	g := httpGate("/healthz?full=1", 200, map[string]string{".v": "2"})
	r := Run(context.Background(), g, []netip.AddrPort{good, bad, good}, fast)
	want := fmt.Sprintf(`1 of 3 canary backends failed: %s: .v is not "2" (the answer is in the gate's output)`, bad)
	if r.Pass || r.Detail != want || r.Output != fmt.Sprintf(`%s: .v is "1"`, bad) {
		t.Errorf("got %+v, want detail %q", r, want)
	}
	if r := Run(context.Background(), g, []netip.AddrPort{good, good}, fast); !r.Pass || !strings.HasSuffix(r.Detail, "from all 2 canary backends") {
		t.Errorf("both good: %+v", r)
	}
}

// TestHTTPIPv6: an IPv6 backend is written in brackets, with its zone.
func TestHTTPIPv6(t *testing.T) {
	t.Parallel()
	loopback6(t)
	hosts := make(chan string, 1)
	b := serveOn(t, "::1", func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host
		fmt.Fprint(w, `{"family": 6}`)
	})
	g := httpGate("/", 200, map[string]string{".family": "6"})
	if r := Run(context.Background(), g, []netip.AddrPort{b}, fast); !r.Pass {
		t.Errorf("[::1]: %+v", r)
	}
	if host := <-hosts; host != b.String() {
		t.Errorf("Host %q, want %q", host, b)
	}
	if got, want := hostPort(netip.MustParseAddrPort("[fe80::1%eth0]:8080")), "[fe80::1%25eth0]:8080"; got != want {
		t.Errorf("hostPort with a zone: %q, want %q", got, want)
	}
}
