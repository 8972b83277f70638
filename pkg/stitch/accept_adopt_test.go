package stitch

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/internal/netlab"
)

// startAccept opens a Kernel on lab's gateway as the agent would run the
// kernel accept (on in's maps if in is set, adopting their pairs): the
// stitch program on both interfaces, the accept on the client's, front
// and ports granted, the watch running. stop (idempotent; also at the
// test's end) stops the watch and closes the Kernel.
func startAccept(t *testing.T, lab *netlab.Lab, front Front, ports []uint16, in *Inherited) (k *Kernel, stop func()) {
	t.Helper()
	k, err := Open(Options{MaxPairs: 2 * len(ports), Inherit: in})
	if err != nil {
		t.Fatal(err)
	}
	if in != nil {
		if _, err := k.Adopt(nil); err != nil {
			k.Close()
			t.Fatal(err)
		}
	}
	watchCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("watch: %v", err)
			}
			if err := k.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	err = lab.Gateway.Do(func() error {
		for _, name := range []string{netlab.GatewayClientIf, netlab.GatewayBackendIf} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := k.Attach(l.Attrs().Index); err != nil {
				return err
			}
			if name == netlab.GatewayClientIf {
				if err := k.AttachAccept(l.Attrs().Index); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		err = k.SetFront(front)
	}
	if err == nil {
		err = k.Grant(ports)
	}
	go func() {
		done <- k.WatchAccepted(watchCtx, AcceptTimeouts{Opening: 3 * time.Second, Idle: time.Minute}, time.Second)
	}()
	t.Cleanup(stop)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	return k, stop
}

// TestAcceptAdopt: a Kernel opened on the maps of the one before it (an
// agent's restart) carries on the connections the kernel accept joined,
// keeps their ports out of its grants, and accepts new ones.
func TestAcceptAdopt(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	canary, stable := a.lab.Canary[0].Name+"\n", a.lab.Stable[0].Name+"\n"
	kept, r := a.dial(ctx, t)
	defer kept.Close()
	if got := get(t, kept, r, "/", "X-Canary: v2\r\n", false); got != canary {
		t.Fatalf("answered by %q, want %q", got, canary)
	}

	h, err := a.k.HandOff(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	k2, _ := startAccept(t, a.lab, a.front, acceptPortList(), &Inherited{Keys: h.Keys, Pairs: h.Pairs})
	a.stopKernel() // the previous agent goes: its programs with it

	k2.mu.Lock()
	granted := len(k2.granted)
	k2.mu.Unlock()
	if granted != acceptPorts {
		t.Errorf("%d slots granted after the adoption, want %d (the kept connection's and the rest)", granted, acceptPorts)
	}
	for i := range 5 {
		if got := get(t, kept, r, "/", "", false); got != canary {
			t.Fatalf("request %d on the kept connection after the restart: answered by %q, want %q", i, got, canary)
		}
	}
	for i := range 20 {
		c, cr := a.dial(ctx, t)
		if got := get(t, c, cr, "/", "", true); got != stable {
			t.Fatalf("new connection %d after the restart: answered by %q, want %q", i, got, stable)
		}
		c.Close()
	}
	st, err := k2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Accepts["live"] != 20 || st.Accepts["clash"] != 0 {
		t.Errorf("after the restart: %v, want 20 live and no clash", st.Accepts)
	}
}

// TestAcceptIdle: a kernel-accepted connection idle past the scan's Idle
// is reset (both peers learn it at once) and its grant is taken back.
func TestAcceptIdle(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	c, r := a.dial(ctx, t)
	defer c.Close()
	get(t, c, r, "/", "", false)
	now := time.Now()
	idle := AcceptTimeouts{Opening: time.Minute, Idle: time.Millisecond}
	if _, err := a.k.ScanAccepted(now, idle); err != nil { // notes the counts
		t.Fatal(err)
	}
	n, err := a.k.ScanAccepted(now.Add(time.Second), idle)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("the scan ended %d connections, want the idle one", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the idle connection's client read %v, want a reset", err)
	}
}

// TestAcceptPins: a pin covering the client sends it to its pool when no
// rule decides, the longest prefix winning; a rule still comes first.
func TestAcceptPins(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	canary, stable := a.lab.Canary[0].Name+"\n", a.lab.Stable[0].Name+"\n"
	ask := func(header string) string {
		c, r := a.dial(ctx, t)
		defer c.Close()
		return get(t, c, r, "/", header, true)
	}
	f := a.front
	f.Pins = []Pin{{Prefix: netip.MustParsePrefix("198.18.0.0/16"), Pool: Stable},
		{Prefix: netip.PrefixFrom(netlab.Client4, 32), Pool: Canary}}
	f.CanaryShare = 0
	if err := a.k.SetFront(f); err != nil {
		t.Fatal(err)
	}
	if got := ask(""); got != canary {
		t.Errorf("pinned to the canary (/32 over /16): answered by %q", got)
	}
	f.Pins = f.Pins[:1] // the /16 alone: stable
	f.CanaryShare = 10000
	if err := a.k.SetFront(f); err != nil {
		t.Fatal(err)
	}
	if got := ask(""); got != stable {
		t.Errorf("pinned to stable at weight 100 %%: answered by %q", got)
	}
	if got := ask("X-Canary: v2\r\n"); got != canary {
		t.Errorf("a rule before the pins: answered by %q", got)
	}
	f.Pins = nil
	if err := a.k.SetFront(f); err != nil {
		t.Fatal(err)
	}
	if got := ask(""); got != canary {
		t.Errorf("no pin at weight 100 %%: answered by %q", got)
	}
}

// TestAcceptBackendRefuses: a front whose canary backend refuses (no
// listener on its port) resets the client at once, and counts the reset
// in the canary's signals; the stable pool's connections go on.
func TestAcceptBackendRefuses(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	f := a.front
	f.Canary = []netip.AddrPort{netip.AddrPortFrom(a.lab.Canary[0].Addr4, 9)} // nothing listens
	if err := a.k.SetFront(f); err != nil {
		t.Fatal(err)
	}
	c, r := a.dial(ctx, t)
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Canary: v2\r\n\r\n")
	if _, err := r.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the client of a refusing backend read %v, want a reset", err)
	}
	t.Logf("reset after %v", time.Since(start))
	sig, err := a.k.AcceptSignals(0)
	if err != nil {
		t.Fatal(err)
	}
	if sig[Canary].Resets != 1 {
		t.Errorf("canary resets %d, want 1", sig[Canary].Resets)
	}
	sc, sr := a.dial(ctx, t)
	defer sc.Close()
	if got := get(t, sc, sr, "/", "", true); got != a.lab.Stable[0].Name+"\n" {
		t.Errorf("a stable connection after: answered by %q", got)
	}
}
