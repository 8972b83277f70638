package stitch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
)

// TestAcceptUnderFlood: while spoofed SYNs and ACKs flood the front (from
// netlab.SpoofNet4, answers dropped by the lab), 200 real connections are
// each decided and joined in the kernel, and the flood takes no state:
// not one connection opened or dropped beyond the real ones (a SYN costs
// a SYN-ACK or goes on to the stack; an ACK without a cookie of ours goes
// on), and a connection kept open before the flood carries on through it.
func TestAcceptUnderFlood(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	canary, stable := a.lab.Canary[0].Name+"\n", a.lab.Stable[0].Name+"\n"
	kept, kr := a.dial(ctx, t)
	defer kept.Close()
	if got := get(t, kept, kr, "/", "X-Canary: v2\r\n", false); got != canary {
		t.Fatalf("answered by %q, want %q", got, canary)
	}

	floodCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, kind := range []netlab.FloodKind{netlab.FloodSYN, netlab.FloodACK} {
		wg.Go(func() {
			res, err := a.lab.Client.Flood(floodCtx, netlab.FloodSpec{Kind: kind, Dst: a.front.Addr, Count: 300_000,
				MaxDuration: 20 * time.Second, Seed: uint64(i + 1)})
			if err != nil && floodCtx.Err() == nil {
				t.Errorf("%v flood: %v", kind, err)
			}
			t.Logf("%v flood: %v", kind, res)
		})
	}
	const n = 200
	for i := range n {
		header, want := "", stable
		if i%2 == 0 {
			header, want = "X-Canary: v2\r\n", canary
		}
		c, r := a.dial(ctx, t)
		if got := get(t, c, r, "/", header, true); got != want {
			t.Fatalf("connection %d under the flood: answered by %q, want %q", i, got, want)
		}
		c.Close()
		if i%20 == 0 {
			if got := get(t, kept, kr, "/", "", false); got != canary {
				t.Fatalf("the kept connection under the flood: answered by %q, want %q", got, canary)
			}
		}
	}
	stop()
	wg.Wait()
	st, err := a.k.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accept: %v", st.Accepts)
	if st.Accepts["opened"] != n+1 || st.Accepts["live"] != n+1 || st.Accepts["full"] != 0 || st.Accepts["clash"] != 0 {
		t.Errorf("accept counters %v: want %d opened and live (the real connections), none full or clashing", st.Accepts, n+1)
	}
	if st.Accepts["syn_passed"] == 0 {
		t.Errorf("no flood SYN was seen (syn_passed 0): the flood did not reach the program")
	}
}
