package datapath

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/service"
)

// snapshot reads every service of svcs back from the kernel.
func snapshot(t *testing.T, v interface {
	Service(service.Frontend) (KernelService, bool, error)
}, svcs []service.Service) map[string]KernelService {
	t.Helper()
	out := map[string]KernelService{}
	for i := range svcs {
		ks, ok, err := v.Service(svcs[i].Frontend())
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out[svcs[i].Name] = ks
		}
	}
	return out
}

func TestApplyRejectsInvalidAndChangesNothing(t *testing.T) {
	f := newFixture(t)
	good := []service.Service{webService("web", vip4, service.TCP, 500), webService("web6", vip6, service.TCP, 0)}
	if err := f.dp.Apply(good); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, f.dp.view(), good)

	dupVIP := webService("other", vip4, service.TCP, 0)
	dupVIP.Stable = []service.Backend{{Addr: netip.MustParseAddrPort("198.18.1.50:8080")}}
	dupVIP.Canary = nil
	noCanary := webService("web", vip4, service.TCP, 500)
	noCanary.Canary = nil
	for name, c := range map[string]struct {
		svcs []service.Service
		want string
	}{
		"weight above 100%":    {[]service.Service{webService("web", vip4, service.TCP, 10001)}, "spec.canary.weight"},
		"duplicate frontend":   {append(good[:1:1], dupVIP), "spec.vip"},
		"empty canary, weight": {[]service.Service{noCanary}, "spec.canary.weight"},
	} {
		err := f.dp.Apply(c.svcs)
		var fe *service.FieldError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want a field error naming %s", name, err, c.want)
		}
		if after := snapshot(t, f.dp.view(), good); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s: kernel state changed:\nbefore %v\nafter  %v", name, before, after)
		}
	}
}

// TestApplyDoubleBufferAndCapacity: a weight change is one write, a backend
// change flips the pool's table buffer, and of more services than the
// data path holds those that fit are installed.
func TestApplyDoubleBufferAndCapacity(t *testing.T) {
	f := newFixture(t)
	s := webService("web", vip4, service.TCP, 0)
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	gen := func() uint8 {
		f.dp.mu.Lock()
		defer f.dp.mu.Unlock()
		return f.dp.services["web"].value.TableGen[service.Stable]
	}
	g0 := gen()
	// A weight change leaves the tables alone: one services map write.
	s.CanaryWeight = 2500
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	if gen() != g0 {
		t.Fatal("a weight change rewrote the stable table")
	}
	// A backend change writes the idle buffer and flips to it.
	s.Stable = append(s.Stable, service.Backend{Addr: netip.MustParseAddrPort("198.18.1.12:8080")})
	if err := f.dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	if gen() == g0 {
		t.Fatal("a backend change did not flip the stable table's buffer")
	}
	ks, _, err := f.dp.ReadKernel(s.Frontend())
	if err != nil || len(ks.Backends[service.Stable]) != 3 || ks.Weight != 2500 {
		t.Fatalf("kernel has %+v (%v), want 3 stable backends at 25%%", ks, err)
	}
	// Only the live buffer of each pool remains after the prune (pruneUnreferenced).
	var n int
	var key, next [8]byte
	var prev any
	for f.dp.objs.Tables.NextKey(prev, &next) == nil {
		n++
		key = next
		prev = &key
	}
	if n != 2 {
		t.Fatalf("%d tables in the kernel, want 2 (one per pool)", n)
	}

	// More services than the data path holds: those that fit are
	// installed, the others fail by name (web's slot frees only once it
	// is removed, so the first apply fails two, the retry one).
	var many []service.Service
	for i := range 65 {
		m := webService(fmt.Sprintf("s%d", i), netip.AddrFrom4([4]byte{198, 18, 100, byte(100 + i)}), service.TCP, 0)
		m.Canary = nil
		m.Stable = []service.Backend{{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 3, byte(i)}), 80)}}
		many = append(many, m)
	}
	for try, want := range []string{"s8 s9", "s9"} {
		var partial *PartialError
		if err := f.dp.Apply(many); !errors.As(err, &partial) || !strings.Contains(err.Error(), "at most 64 services") {
			t.Fatalf("apply %d: 65 services on a data path for 64: %v, want a partial apply", try, err)
		}
		if got := strings.Join(slices.Sorted(maps.Keys(partial.Failed)), " "); got != want {
			t.Fatalf("apply %d: failed %s, want %s", try, got, want)
		}
		if n := len(snapshot(t, f.dp.view(), many)); n != 65-len(partial.Failed) {
			t.Fatalf("apply %d: %d services in the kernel, want %d", try, n, 65-len(partial.Failed))
		}
	}
}

func TestPinnedMapsAndClose(t *testing.T) {
	testenv.RequirePrivileges(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("graylane-test-%d", os.Getpid()))
	dp, err := New(Options{PinPath: dir, FlowTable: 1024, MaxServices: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	s := webService("web", vip4, service.TCP, 1234)
	if err := dp.Apply([]service.Service{s}); err != nil {
		t.Fatal(err)
	}
	v, err := OpenPinned(dir)
	if err != nil {
		t.Fatal(err)
	}
	ks, ok, err := v.Service(s.Frontend())
	v.Close()
	if err != nil || !ok || ks.Weight != 1234 || len(ks.Backends[service.Canary]) != 1 {
		t.Fatalf("pinned view: %+v ok=%v err=%v", ks, ok, err)
	}
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin directory left after Close: %v", err)
	}
}

// TestPlanUndo: when a write fails half-way, the writes done are taken back
// in reverse order and the error says nothing was changed.
func TestPlanUndo(t *testing.T) {
	var log []string
	mk := func(name string, fail bool) step {
		return step{
			what: name,
			do: func() error {
				if fail {
					return errors.New("refused")
				}
				log = append(log, "do "+name)
				return nil
			},
			undo: func() error { log = append(log, "undo "+name); return nil },
		}
	}
	p := &plan{prepare: []step{mk("a", false), mk("b", false)}, switchTo: []step{mk("c", false), mk("d", true), mk("e", false)}}
	err := p.run()
	if err == nil || !strings.Contains(err.Error(), "d: refused") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("error %v", err)
	}
	if got, want := strings.Join(log, ","), "do a,do b,do c,undo c,undo b,undo a"; got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
}

// TestReadDuringApply: a reader of the pinned maps never sees a service
// without its tables while applies replace them (each backend change
// writes a new table generation, switches the service to it and deletes
// the old one).
func TestReadDuringApply(t *testing.T) {
	f := newFixture(t)
	a := webService("web", vip4, service.TCP, 500)
	b := webService("web", vip4, service.TCP, 500)
	b.Stable = []service.Backend{{Addr: netip.MustParseAddrPort("198.18.1.60:8080")}}
	if err := f.dp.Apply([]service.Service{a}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := range 400 { // bounded: a few hundred applies, well under a second each
			s := a
			if i%2 == 1 {
				s = b
			}
			if err := f.dp.Apply([]service.Service{s}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	view := f.dp.View()
	reads := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d reads during 400 applies", reads)
			return
		default:
		}
		if _, ok, err := view.Service(a.Frontend()); err != nil || !ok {
			t.Fatalf("read %d during applies: ok %v, err %v", reads, ok, err)
		}
		reads++
	}
}
