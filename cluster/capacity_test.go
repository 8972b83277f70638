package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// capSvc is service i of a large state: its own VIP and backends.
func capSvc(i int) service.Service {
	a := func(net int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(net), byte(i / 256), byte(i % 256)}) }
	return service.Service{
		Name: fmt.Sprintf("s%d", i), Tenant: service.DefaultTenant, VIP: a(30), Port: 80, Protocol: service.TCP,
		Stable: []service.Backend{{Addr: netip.AddrPortFrom(a(31), 8080)}},
		Canary: []service.Backend{{Addr: netip.AddrPortFrom(a(32), 8080)}},
	}
}

// capPins gives s n pins to its canary pool.
func capPins(s service.Service, n int) service.Service {
	s.Pins = nil
	for j := range n {
		s.Pins = append(s.Pins, service.Pin{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 40, byte(j / 256), byte(j % 256)}), 32), Pool: service.Canary})
	}
	return s
}

func capState(svcs ...service.Service) *State {
	st := newState()
	for _, s := range svcs {
		st.Services[s.Name] = s
	}
	return &st
}

// wantLimit fails unless err is a *LimitError saying each of want.
func wantLimit(t *testing.T, err error, want ...string) {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("error %v, want a *LimitError", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// TestCapacityServices: the FSM commits a state of as many services as
// every kernel holds and refuses one more, naming the limit, with the
// state unchanged.
func TestCapacityServices(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	var svcs []service.Service
	for i := range service.NodeMaxServices {
		svcs = append(svcs, capSvc(i))
	}
	if err := apply(t, f, 1, &ApplyServices{Services: svcs}); err != nil {
		t.Fatalf("%d services: %v", len(svcs), err)
	}
	err := apply(t, f, 2, &ApplyServices{Services: []service.Service{capSvc(service.NodeMaxServices)}})
	wantLimit(t, err, "the state would hold 1025 services", "every kernel holds at most 1024")
	if err := f.Check(&ApplyServices{Services: []service.Service{capSvc(service.NodeMaxServices)}}); err == nil {
		t.Error("the leader's check let the 1025th service into the log")
	}
	st, _ := f.State()
	if len(st.Services) != service.NodeMaxServices {
		t.Errorf("%d services after the refused write, want %d", len(st.Services), service.NodeMaxServices)
	}
	// A write that does not add one still commits at the limit.
	if err := apply(t, f, 3, &SetWeight{Name: "s7", Weight: 2500}); err != nil {
		t.Errorf("a weight change at the limit: %v", err)
	}
}

// TestCapacityPins: pins count once each over all services, up to the
// pin table less one service's room.
func TestCapacityPins(t *testing.T) {
	full := service.NodeMaxPins / service.MaxPins // services with MaxPins pins each
	var svcs []service.Service
	for i := range full {
		svcs = append(svcs, capPins(capSvc(i), service.MaxPins))
	}
	last := capSvc(full)
	if err := checkCapacity(capState(append(svcs, last)...)); err != nil {
		t.Fatalf("%d pins: %v", service.NodeMaxPins, err)
	}
	err := checkCapacity(capState(append(svcs, capPins(last, 1))...))
	wantLimit(t, err, fmt.Sprintf("the state would hold %d pins", service.NodeMaxPins+1),
		fmt.Sprintf("every kernel holds at most %d", service.NodeMaxPins))

	// Through the FSM: a pin past the limit is refused, the state keeps
	// its pins.
	f := NewFSM(slog.New(slog.DiscardHandler))
	if err := apply(t, f, 1, &ApplyServices{Services: append(svcs, last)}); err != nil {
		t.Fatal(err)
	}
	err = apply(t, f, 2, &SetPin{Name: last.Name, Prefix: netip.MustParsePrefix("10.41.0.0/24"), Pool: service.Canary})
	wantLimit(t, err, "pins")
	st, _ := f.State()
	if n := capacityOf(&st).pins; n != service.NodeMaxPins {
		t.Errorf("%d pins after the refused pin, want %d", n, service.NodeMaxPins)
	}
}

// TestCapacityBackends: a pool holds as many backends as a kernel's
// lookup table, and no more.
func TestCapacityBackends(t *testing.T) {
	s := capSvc(0)
	s.Stable = nil
	for j := range service.MaxBackendsPerPool + 1 {
		s.Stable = append(s.Stable, service.Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 50, 0, byte(j % 256)}), uint16(8000+j))})
	}
	over := s
	s.Stable = s.Stable[:service.MaxBackendsPerPool]
	if err := checkCapacity(capState(s)); err != nil {
		t.Fatalf("%d backends in a pool: %v", service.MaxBackendsPerPool, err)
	}
	wantLimit(t, checkCapacity(capState(over)), "257 backends", "at most 256", "spec.stable.backends")
}

// TestCapacityFromOverLimit: over a state already beyond a limit
// (committed before the check existed), a write that does not raise the
// count passes, and one that does is refused.
func TestCapacityFromOverLimit(t *testing.T) {
	var svcs []service.Service
	for i := range service.NodeMaxServices + 1 {
		svcs = append(svcs, capSvc(i))
	}
	prev := capState(svcs...)
	rolledBack := capState(svcs...)
	s := rolledBack.Services["s1"]
	s.CanaryWeight = 0
	rolledBack.Services["s1"] = s
	if err := checkCapacityFrom(prev, rolledBack); err != nil {
		t.Errorf("a rollback over 1025 services: %v", err)
	}
	if err := checkCapacityFrom(prev, capState(svcs[1:]...)); err != nil {
		t.Errorf("a deletion over 1025 services: %v", err)
	}
	wantLimit(t, checkCapacityFrom(prev, capState(append(svcs, capSvc(2000))...)), "1026 services")
	wantLimit(t, checkCapacity(rolledBack), "1025 services")
}
