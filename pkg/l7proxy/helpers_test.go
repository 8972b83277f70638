package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/match"
	"github.com/graylane/graylane/pkg/service"
)

// ruleDecider is the agent's decision reduced to the rules and one
// backend per pool.
type ruleDecider struct {
	rules    []service.MatchRule
	backends map[service.Pool]netip.AddrPort
}

func (d *ruleDecider) Decide(client, frontend netip.AddrPort, req match.Request) (Decision, error) {
	if !client.IsValid() || !frontend.IsValid() {
		return Decision{}, fmt.Errorf("addresses %s -> %s", client, frontend)
	}
	pool, rule, ok := match.Decide(d.rules, req)
	if !ok {
		pool, rule = service.Stable, -1
	}
	b, ok := d.backends[pool]
	if !ok {
		return Decision{}, fmt.Errorf("no %s backend", pool)
	}
	return Decision{Backend: b, Pool: pool, Rule: rule}, nil
}

func headerRule(name, value string) service.MatchRule {
	return service.MatchRule{Header: &service.FieldMatch{Name: name, Value: value}, Pool: service.Canary}
}

// env is a proxy on loopback in front of a stable and a canary backend.
type env struct {
	p    *Proxy
	addr string
	obs  *Counters
	dec  *ruleDecider
}

type envConfig struct {
	rules          []service.MatchRule
	opts           Options
	stable, canary netip.AddrPort // default: HTTP backends named so
}

// newEnv starts the backends and the proxy; cleanups stop them and check
// that nothing is left spliced.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	if !cfg.stable.IsValid() {
		cfg.stable = startHTTP(t, "stable")
	}
	if !cfg.canary.IsValid() {
		cfg.canary = startHTTP(t, "canary")
	}
	e := &env{obs: &Counters{}, dec: &ruleDecider{rules: cfg.rules,
		backends: map[service.Pool]netip.AddrPort{service.Stable: cfg.stable, service.Canary: cfg.canary}}}
	if cfg.opts.Observer == nil {
		cfg.opts.Observer = e.obs
	}
	ln := listenTCP(t)
	e.addr = ln.Addr().String()
	p, err := New(ln, e.dec, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		if err := p.Drain(dctx); err != nil {
			t.Errorf("Drain: %v", err)
			p.Abort()
		}
	})
	return e
}

// listenTCP listens on a loopback port without MPTCP, as
// l7splice.ListenTransparent does (a sockmap takes plain TCP only).
func listenTCP(t testing.TB) *net.TCPListener {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// slowResponse is how long the backends take to answer /slow.
const slowResponse = 200 * time.Millisecond

// startHTTP starts an HTTP/1.1 and h2c server that answers with its name:
// in the body and X-Backend; /fail answers 503, /slow after slowResponse; gRPC requests get one
// message with the name and grpc-status 0.
func startHTTP(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	ln := listenTCP(t)
	srv := &http.Server{Handler: backendHandler(name), ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return addrPort(ln.Addr())
}

func backendHandler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Proto", r.Proto)
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			msg := append([]byte{0, 0, 0, 0, byte(len(name))}, name...)
			w.Write(msg)
			w.Header().Set("Grpc-Status", "0")
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(slowResponse)
		}
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, name)
	}
}

// get sends one request through client and returns the answering
// backend's name.
func get(t *testing.T, client *http.Client, url string, header map[string]string) string {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	if got := resp.Header.Get("X-Backend"); got != string(body) {
		t.Fatalf("GET %s: X-Backend %q, body %q", url, got, body)
	}
	return string(body)
}

// checkLeaks records the goroutines and descriptors now, and at cleanup
// (after the cleanups registered later) fails t unless both are back to
// these counts within a few seconds. Call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	g0, fd0 := runtime.NumGoroutine(), openFDs(t)
	t.Cleanup(func() {
		var g, fd int
		for range 250 {
			// Go keeps splice(2) pipes in a sync.Pool, closed by a
			// finalizer once collected: two collections empty the pool.
			runtime.GC()
			g, fd = runtime.NumGoroutine(), openFDs(t)
			if g <= g0 && fd <= fd0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		t.Errorf("leak: %d goroutines (before: %d), %d descriptors (before: %d): %s\n%s",
			g, g0, fd, fd0, fdTargets(), buf[:runtime.Stack(buf, true)])
	})
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// fdTargets lists what the open descriptors are.
func fdTargets() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return strings.Join(out, " ")
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// dialRaw connects to the proxy with a deadline for the whole exchange.
func dialRaw(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// readAnswer reads what the proxy sends until it closes: its answer to a
// cut client, or nothing.
func readAnswer(c net.Conn) (string, error) {
	b, err := io.ReadAll(io.LimitReader(c, 64<<10))
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return string(b), err
}
