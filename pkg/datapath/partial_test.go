package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/service"
)

// partialService is a TCP service on 198.18.<net>.1:80 with nStable and
// nCanary backends of its own (198.18.<net>.<first+i>.., ports from 8000).
func partialService(name string, net byte, first, nStable, nCanary int, weight service.Weight) service.Service {
	s := service.Service{Name: name, VIP: netip.AddrFrom4([4]byte{198, 18, net, 1}), Port: 80,
		Protocol: service.TCP, Key: service.KeyFlow, CanaryWeight: weight}
	backend := func(i int) service.Backend {
		return service.Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, net, byte(2 + i%250)}), uint16(8000+first+i))}
	}
	for i := range nStable {
		s.Stable = append(s.Stable, backend(i))
	}
	for i := range nCanary {
		s.Canary = append(s.Canary, backend(nStable+i))
	}
	return s
}

// withPins gives s n pins to its canary pool (10.<net>.i.0/24).
func withPins(s service.Service, n int) service.Service {
	s.Pins = nil
	for i := range n {
		s.Pins = append(s.Pins, service.Pin{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, byte(i), 0}), 24), Pool: service.Canary})
	}
	return s
}

func kernelWeight(t *testing.T, dp *Datapath, s service.Service) (service.Weight, bool) {
	t.Helper()
	ks, ok, err := dp.ReadKernel(s.Frontend())
	if err != nil {
		t.Fatal(err)
	}
	return ks.Weight, ok
}

// TestApplyPartialPins: a service whose pins do not fit in the node's pin
// table fails alone, and the others' weights change in the same apply;
// pins a service keeps are counted once (a weight change of a service
// holding most of the table fits).
func TestApplyPartialPins(t *testing.T) {
	testenv.RequirePrivileges(t)
	dp, err := New(Options{FlowTable: 1024, MaxServices: 8, MaxPins: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	a := withPins(partialService("a", 110, 0, 2, 1, 0), 6)
	b := partialService("b", 111, 0, 2, 1, 0)
	if err := dp.Apply([]service.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	// 6 pins kept while a's weight changes: 6 keys, not 12.
	a.CanaryWeight = 100
	if err := dp.Apply([]service.Service{a, b}); err != nil {
		t.Fatalf("a weight change of a service with 6 of 8 pins: %v", err)
	}

	// c's 9 pins cannot fit: c fails, a's rollback and b's weight go in.
	c := withPins(partialService("c", 112, 0, 2, 1, 0), 9)
	a.CanaryWeight, b.CanaryWeight = 0, 2500
	err = dp.Apply([]service.Service{a, b, c})
	var partial *PartialError
	if !errors.As(err, &partial) || len(partial.Failed) != 1 || partial.Failed["c"] == nil ||
		!strings.Contains(err.Error(), "at most 8") {
		t.Fatalf("apply with c over the pin table: %v, want a partial apply failing c by the pin limit", err)
	}
	if w, ok := kernelWeight(t, dp, a); !ok || w != 0 {
		t.Errorf("a's weight in the kernel %v (present %v), want the rollback to 0", w, ok)
	}
	if w, ok := kernelWeight(t, dp, b); !ok || w != 2500 {
		t.Errorf("b's weight in the kernel %v (present %v), want 2500", w, ok)
	}
	if _, ok := kernelWeight(t, dp, c); ok {
		t.Error("c is in the kernel though it failed")
	}

	// With room (a drops its pins) c goes in at the retry.
	a = withPins(a, 0)
	if err := dp.Apply([]service.Service{a, b, c}); err == nil {
		t.Fatal("c's 9 pins went into a table of 8")
	}
	c = withPins(c, 8)
	if err := dp.Apply([]service.Service{a, b, c}); err != nil {
		t.Fatalf("c with 8 pins after a dropped its pins: %v", err)
	}
	if _, ok := kernelWeight(t, dp, c); !ok {
		t.Error("c is not in the kernel after the retry")
	}
}

// TestApplyPartialKernelRefusal: the kernel refuses a write of one service
// (its new backends' reply entries overflow the backends map, which holds
// 2 x 256 entries per service slot): that service's writes are taken back
// and it keeps steering by its old backends, while another service's
// weight changes in the same apply.
func TestApplyPartialKernelRefusal(t *testing.T) {
	testenv.RequirePrivileges(t)
	// Two slots: a backends map of 1024 entries.
	dp, err := New(Options{FlowTable: 1024, MaxServices: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	full := service.MaxBackendsPerPool
	a := partialService("a", 120, 0, full, full, 500)
	b := partialService("b", 121, 0, 2, 1, 0)
	if err := dp.Apply([]service.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	// Every backend of a replaced: 512 new reply entries beside the 515.
	moved := partialService("a", 120, 2*full, full, full, 500)
	b.CanaryWeight = 5000
	err = dp.Apply([]service.Service{moved, b})
	var partial *PartialError
	if !errors.As(err, &partial) || len(partial.Failed) != 1 || partial.Failed["a"] == nil ||
		!strings.Contains(err.Error(), "the kernel refused it") {
		t.Fatalf("apply of a over the backends map: %v, want a partial apply failing a", err)
	}
	t.Logf("the failure reads: %v", partial.Failed["a"])
	if w, ok := kernelWeight(t, dp, b); !ok || w != 5000 {
		t.Errorf("b's weight in the kernel %v (present %v), want 5000", w, ok)
	}
	ks, ok, err := dp.ReadKernel(a.Frontend())
	if err != nil || !ok {
		t.Fatalf("a is gone from the kernel: %v", err)
	}
	if got, want := fmt.Sprint(ks.Backends[service.Stable][0]), fmt.Sprint(a.Stable[0]); got != want {
		t.Errorf("a's first stable backend in the kernel %s, want its old %s", got, want)
	}
	if n := countEntries(t, dp.objs.Backends); n != 2*full+3 {
		t.Errorf("%d reply entries after a's writes were taken back, want %d", n, 2*full+3)
	}
	// The next apply retries a. b's removal goes through beside it, but
	// b's reply entries leave only after the switch: a fails once more.
	if err := dp.Apply([]service.Service{moved}); !errors.As(err, &partial) || partial.Failed["a"] == nil {
		t.Fatalf("retry of a beside b's removal: %v, want a partial apply failing a", err)
	}
	if _, ok := kernelWeight(t, dp, b); ok {
		t.Error("b's removal did not reach the kernel beside the failing a")
	}
	// Then a's old and new entries fit (1024): the retry installs it.
	if err := dp.Apply([]service.Service{moved}); err != nil {
		t.Fatalf("retry of a once the map has room: %v", err)
	}
	ks, _, err = dp.ReadKernel(a.Frontend())
	if err != nil || fmt.Sprint(ks.Backends[service.Stable][0]) != fmt.Sprint(moved.Stable[0]) {
		t.Errorf("a in the kernel after the retry: %+v, %v; want its new backends", ks.Backends[service.Stable][:1], err)
	}
}

// TestApplyPartialFrontendTaken: a failing service that was moving away
// from its frontend, which another service takes in the same apply, does
// not keep a claim on it: the other service steers there, the failed one
// steers nowhere until it goes in.
func TestApplyPartialFrontendTaken(t *testing.T) {
	testenv.RequirePrivileges(t)
	dp, err := New(Options{FlowTable: 1024, MaxServices: 8, MaxPins: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	a := partialService("a", 130, 0, 2, 1, 100)
	if err := dp.Apply([]service.Service{a}); err != nil {
		t.Fatal(err)
	}
	// a moves to another VIP with more pins than the table holds; b takes
	// a's VIP.
	moved := withPins(partialService("a", 131, 0, 2, 1, 100), 9)
	b := partialService("b", 132, 0, 2, 1, 3000)
	b.VIP = a.VIP
	err = dp.Apply([]service.Service{moved, b})
	var partial *PartialError
	if !errors.As(err, &partial) || partial.Failed["a"] == nil || !strings.Contains(err.Error(), "steers nowhere") {
		t.Fatalf("apply: %v, want a partial apply failing a, whose frontend b took", err)
	}
	if w, ok := kernelWeight(t, dp, b); !ok || w != 3000 {
		t.Errorf("b on a's old frontend: weight %v (present %v), want 3000", w, ok)
	}
	if _, ok := kernelWeight(t, dp, moved); ok {
		t.Error("a is on its new frontend though it failed")
	}
	moved = withPins(moved, 2)
	if err := dp.Apply([]service.Service{moved, b}); err != nil {
		t.Fatalf("retry of a with 2 pins: %v", err)
	}
	if w, ok := kernelWeight(t, dp, moved); !ok || w != 100 {
		t.Errorf("a after the retry: weight %v (present %v), want 100", w, ok)
	}
	if w, ok := kernelWeight(t, dp, b); !ok || w != 3000 {
		t.Errorf("b after a's retry: weight %v (present %v), want 3000", w, ok)
	}
}

// TestRunUndoesOneService: a failing step of a service takes back that
// service's writes only; the other services' writes stay and go on.
func TestRunUndoesOneService(t *testing.T) {
	var log []string
	mk := func(owner, name string, fail bool) step {
		return step{
			what:  name,
			owner: owner,
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
	p := &plan{
		prepare:   []step{mk("a", "a1", false), mk("b", "b1", false), mk("a", "a2", true)},
		switchTo:  []step{mk("a", "a3", false), mk("b", "b2", false), mk("", "filter", false)},
		installed: map[string]*installed{"a": {}, "b": {}},
		previous:  map[string]*installed{},
		ids:       newIDAllocator(4),
	}
	// The filter of the planned services, during and after: nothing to
	// narrow (b's frontend stays).
	p.filter, p.transient = filterOf(p.installed), filterOf(p.installed)
	if err := p.run(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := strings.Join(log, ","), "do a1,do b1,undo a1,do b2,do filter"; got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
	if p.failed["a"] == nil || !strings.Contains(p.failed["a"].Error(), "a2: refused") || p.failed["b"] != nil {
		t.Errorf("failed %v, want a alone", p.failed)
	}
	if p.installed["a"] != nil || p.installed["b"] == nil {
		t.Errorf("installed %v, want b alone (a was new)", p.installed)
	}
}
