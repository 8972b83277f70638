package gate

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
)

// fast retries without the default pause.
var fast = Options{RetryDelay: 10 * time.Millisecond}

var tcpGate = release.Gate{TCP: &release.TCPGate{}, Timeout: time.Second}

// listenOn returns the address of a real TCP listener on host that
// accepts and closes connections until the test ends.
func listenOn(t *testing.T, host string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
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

func listen(t *testing.T) netip.AddrPort { return listenOn(t, "127.0.0.1") }

// loopback6 skips the test when this host has no IPv6 loopback.
func loopback6(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here (%v): the IPv6 case needs ::1", err)
	}
	ln.Close()
}

// closedPort is an address nobody listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return a
}

func TestTCP(t *testing.T) {
	t.Parallel()
	up1, up2, down := listen(t), listen(t), closedPort(t)
	for _, tc := range []struct {
		name   string
		canary []netip.AddrPort
		pass   bool
		detail string
	}{
		{"all listen", []netip.AddrPort{up1, up2}, true, "connected to all 2 canary backends"},
		{"one listens", []netip.AddrPort{up1}, true, "connected to the only canary backend"},
		{"one down", []netip.AddrPort{up1, down}, false, fmt.Sprintf("1 of 2 canary backends failed: %s: connect: connection refused", down)},
		{"no backends", nil, false, "the canary pool has no backends to check"},
		{"not an address", []netip.AddrPort{up1, {}}, false, "1 of 2 canary backends failed: invalid AddrPort: not an address and port"},
	} {
		r := Run(context.Background(), tcpGate, tc.canary, fast)
		if r.Pass != tc.pass || r.Detail != tc.detail || r.Attempts != 1 {
			t.Errorf("%s: got %+v, want pass %v, detail %q", tc.name, r, tc.pass, tc.detail)
		}
	}
}

func TestTCPIPv6(t *testing.T) {
	t.Parallel()
	loopback6(t)
	b := listenOn(t, "::1")
	if r := Run(context.Background(), tcpGate, []netip.AddrPort{b, listen(t)}, fast); !r.Pass {
		t.Errorf("[::1] and 127.0.0.1: %+v", r)
	}
}

// TestDial: the tcp and http gates connect through Options.Dial.
func TestDial(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var dialed []string
	opts := fast
	opts.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, network+" "+address)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	tb := listen(t)
	hb := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	if r := Run(context.Background(), tcpGate, []netip.AddrPort{tb}, opts); !r.Pass {
		t.Errorf("tcp: %+v", r)
	}
	if r := Run(context.Background(), httpGate("/", 200, nil), []netip.AddrPort{hb}, opts); !r.Pass {
		t.Errorf("http: %+v", r)
	}
	want := []string{"tcp " + tb.String(), "tcp " + hb.String()}
	if fmt.Sprint(dialed) != fmt.Sprint(want) {
		t.Errorf("dialed %q, want %q", dialed, want)
	}
}

// TestRetries: a gate that fails twice passes on its third attempt; with
// too few retries it fails, and says how often it tried.
func TestRetries(t *testing.T) {
	t.Parallel()
	flaky := func() netip.AddrPort {
		var n atomic.Int32
		return serve(t, func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) <= 2 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		})
	}
	g := httpGate("/", 200, nil)
	g.Retries = 3
	r := Run(context.Background(), g, []netip.AddrPort{flaky()}, fast)
	if !r.Pass || r.Attempts != 3 || !strings.HasSuffix(r.Detail, "(on attempt 3)") || r.Duration < 2*fast.RetryDelay {
		t.Errorf("3 retries, fails twice: %+v", r)
	}
	g.Retries = 1
	r = Run(context.Background(), g, []netip.AddrPort{flaky()}, fast)
	if r.Pass || r.Attempts != 2 || !strings.Contains(r.Detail, "status 503, want 200") || !strings.HasSuffix(r.Detail, "(2 attempts)") {
		t.Errorf("1 retry, fails twice: %+v", r)
	}
}

// TestDefaultRetryDelay: without a RetryDelay, retries wait a second.
func TestDefaultRetryDelay(t *testing.T) {
	t.Parallel()
	g := tcpGate
	g.Retries = 1
	r := Run(context.Background(), g, []netip.AddrPort{closedPort(t)}, Options{})
	if r.Pass || r.Attempts != 2 || r.Duration < DefaultRetryDelay || r.Duration > DefaultRetryDelay+500*time.Millisecond {
		t.Errorf("one retry with the default delay: %+v", r)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	t.Run("before", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := Run(ctx, tcpGate, []netip.AddrPort{listen(t)}, fast)
		if r.Pass || r.Attempts != 0 || r.Detail != "not run: cancelled (context canceled)" {
			t.Errorf("%+v", r)
		}
	})
	t.Run("while waiting to retry", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		g := tcpGate
		g.Retries = 5
		r := Run(ctx, g, []netip.AddrPort{closedPort(t)}, Options{RetryDelay: time.Minute})
		if r.Pass || r.Attempts != 1 || r.Duration > time.Second ||
			!strings.HasPrefix(r.Detail, "cancelled (context deadline exceeded) while waiting to retry; attempt 1: 1 of 1 canary backends failed:") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("during an attempt", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(100*time.Millisecond, func() { cancel(fmt.Errorf("the release was aborted")) })
		g := release.Gate{Exec: []string{"sleep", "5"}, Timeout: 10 * time.Second, Retries: 3}
		r := Run(ctx, g, nil, fast)
		if r.Pass || r.Attempts != 1 || r.Duration > time.Second || r.Detail != "cancelled (the release was aborted): killed" {
			t.Errorf("%+v", r)
		}
	})
}

func TestRunAll(t *testing.T) {
	t.Parallel()
	canary := []netip.AddrPort{listen(t)}
	pass, fail := release.Gate{Exec: []string{"true"}}, release.Gate{Exec: []string{"false"}}
	results, ok := RunAll(context.Background(), []release.Gate{tcpGate, fail, pass}, canary, fast)
	if ok || len(results) != 2 || !results[0].Pass || results[1].Pass {
		t.Errorf("stops at the first failure: %v %+v", ok, results)
	}
	results, ok = RunAll(context.Background(), []release.Gate{tcpGate, pass}, canary, fast)
	if !ok || len(results) != 2 {
		t.Errorf("all pass: %v %+v", ok, results)
	}
	if results, ok = RunAll(context.Background(), nil, canary, fast); !ok || len(results) != 0 {
		t.Errorf("no gates: %v %+v", ok, results)
	}
}

func TestNoCheck(t *testing.T) {
	t.Parallel()
	r := Run(context.Background(), release.Gate{}, []netip.AddrPort{listen(t)}, fast)
	if r.Pass || r.Detail != "the gate checks nothing: give it tcp, http, command, exec or shadow" {
		t.Errorf("%+v", r)
	}
}
