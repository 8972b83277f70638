package l7proxy

import (
	"net/http"
	"testing"

	"github.com/graylane/graylane/bpf/l7"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/l7splice"
	"github.com/graylane/graylane/pkg/service"
)

// The same scenarios as with CopySplicer, spliced in the kernel. No lab
// namespace is needed: without l7_assign the listener is a plain loopback
// one, and the sockmap splice works on any two established TCP sockets.

// openKernel loads the l7 object; cleanup (after the proxy's, registered
// later) checks that every pair left the maps, and closes it.
func openKernel(t testing.TB) KernelSplicer {
	t.Helper()
	testenv.RequirePrivileges(t)
	k, err := l7splice.Open(l7splice.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if e, err := k.Entries(); err != nil || e != (l7splice.MapEntries{}) {
			t.Errorf("map entries after the test: %+v, %v", e, err)
		}
		if err := k.Close(); err != nil {
			t.Error(err)
		}
	})
	return KernelSplicer{Kernel: k}
}

func splicedBytes(t *testing.T, k *l7splice.Kernel) uint64 {
	t.Helper()
	s, err := k.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.Get(l7.L7StatSTAT_SPLICE_BYTES)
}

// TestKernelHeaderRule: keep-alive connections decided by header, then
// spliced: the later requests and every response cross in the kernel.
func TestKernelHeaderRule(t *testing.T) {
	checkLeaks(t)
	ks := openKernel(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}, opts: Options{Splicer: ks}})
	before := splicedBytes(t, ks.Kernel)
	for i := range 20 {
		tr := &http.Transport{MaxConnsPerHost: 1}
		client := &http.Client{Transport: tr}
		h, want := map[string]string{}, "stable"
		if i%2 == 0 {
			h["X-Canary"], want = "v2", "canary"
		}
		for j := range 5 {
			if got := get(t, client, "http://"+e.addr+"/", h); got != want {
				t.Fatalf("connection %d, request %d: answered by %s, want %s", i, j, got, want)
			}
			h = nil // later requests follow the first
		}
		tr.CloseIdleConnections()
	}
	waitFor(t, "the pairs to end", func() bool { return e.p.Live() == 0 && ks.Kernel.Pairs() == 0 })
	if c := e.obs.Pool(service.Canary); c.Decided != 10 || c.Responses != 0 {
		t.Errorf("canary counts %+v: want 10 decided, no first response seen", c)
	}
	if d := splicedBytes(t, ks.Kernel) - before; d == 0 {
		t.Error("the kernel spliced no bytes")
	}
}

// TestKernelBulk: 256 MiB spliced in the kernel, half-close both ways.
func TestKernelBulk(t *testing.T) {
	checkLeaks(t)
	ks := openKernel(t)
	before := splicedBytes(t, ks.Kernel)
	testBulk(t, ks, 256<<20)
	t.Logf("kernel spliced %d MiB", (splicedBytes(t, ks.Kernel)-before)>>20)
}

// TestKernelReset: resets are forwarded by the kernel pair as well.
func TestKernelReset(t *testing.T) {
	checkLeaks(t)
	testReset(t, openKernel(t))
}

// TestKernelCloseLeavesPairs: Close, Drain and Abort with kernel pairs.
func TestKernelCloseLeavesPairs(t *testing.T) {
	checkLeaks(t)
	testCloseLeavesPairs(t, openKernel(t))
}
