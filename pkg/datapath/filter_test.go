package datapath

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// TestFilterUnion: the filter written while the services map changes
// passes every frontend of the set before and of the set after, and keeps
// a kind only where both agree.
func TestFilterUnion(t *testing.T) {
	a := bpf.SteerEndpoint{Addr: addr16(vip4), Port: htons(80), Proto: uint8(service.TCP)}
	b := bpf.SteerEndpoint{Addr: addr16(vip6), Port: htons(80), Proto: uint8(service.TCP)}
	c := bpf.SteerEndpoint{Addr: addr16(vip4), Port: htons(53), Proto: uint8(service.UDP)}
	before, after := newFilter(), newFilter()
	before.add(a, uint8(service.KeyFlow))
	before.add(b, uint8(service.KeyFlow))
	after.add(b, uint8(service.KeyClient)) // b changes its key kind
	after.add(c, uint8(service.KeyGTPUInner))
	u := before.union(after)
	for _, want := range []struct {
		name string
		fe   bpf.SteerEndpoint
		slot uint8
	}{
		{"only before", a, 1 + uint8(service.KeyFlow)},
		{"kind changed", b, filterMixed},
		{"only after", c, 1 + uint8(service.KeyGTPUInner)},
	} {
		if got := u.slot(frontendSlot(want.fe)); got != want.slot {
			t.Errorf("%s: slot holds %#x, want %#x", want.name, got, want.slot)
		}
	}
	set := 0
	for s := range uint32(len(u) * 8) {
		if u.slot(s) != 0 {
			set++
		}
	}
	if set != 3 {
		t.Errorf("%d slots set, want 3", set)
	}
	// Two kinds in one slot make it mixed.
	m := newFilter()
	m.add(a, uint8(service.KeyFlow))
	m.add(a, uint8(service.KeyClient))
	if got := m.slot(frontendSlot(a)); got != filterMixed {
		t.Errorf("two kinds in a slot: %#x, want mixed", got)
	}
}

// collidingFrontend finds a TCP frontend in 198.18.200.0/24 whose filter
// slot is fe's.
func collidingFrontend(t *testing.T, fe bpf.SteerEndpoint) netip.AddrPort {
	t.Helper()
	want := frontendSlot(fe)
	for host := 1; host < 255; host++ {
		addr := netip.AddrFrom4([4]byte{198, 18, 200, byte(host)})
		for port := 1; port < 65536; port++ {
			ap := netip.AddrPortFrom(addr, uint16(port))
			if frontendSlot(endpoint(ap, service.TCP)) == want {
				return ap
			}
		}
	}
	t.Fatal("no colliding frontend in 198.18.200.0/24")
	return netip.AddrPort{}
}

// TestFrontendFilter: the programs tell non-service packets by the
// frontend filter and forward established flows after one flow-table
// lookup, checking the flow's service by id; every case where that
// shortcut could differ from looking the service up steers as the
// service lookup does.
func TestFrontendFilter(t *testing.T) {
	r := &filterRun{top: t, f: newFixture(t), port: 40000}
	r.web, r.web6 = webService("web", vip4, service.TCP, 0), webService("web6", vip6, service.TCP, 0)
	t.Run("the kernel holds the filter of the installed services", r.kernelHoldsFilter)
	t.Run("the programs compute the agent's slots", r.programsComputeSlots)

	// A service whose frontend shares web's filter slot keeps the slot set
	// when web goes: a packet of web's flows then passes the filter, finds
	// its flow, and only the check of the flow's service stops it.
	r.apply(r.web)
	r.sharer = webService("sharer", vip4, service.TCP, 0)
	sharerFE := collidingFrontend(t, r.f.dp.services["web"].key)
	r.sharer.VIP, r.sharer.Port = sharerFE.Addr(), sharerFE.Port()
	r.sharer.Stable, r.sharer.Canary = []service.Backend{{Addr: netip.AddrPortFrom(stable4[0], 9090)}}, nil

	t.Run("a removed service's flows are not steered", r.removedServiceNotSteered)
	t.Run("a flow whose service id went to another service is not steered", r.reusedIDNotSteered)
	t.Run("a key kind change leaves old flows without an entry: strays", r.keyKindChange)
	t.Run("services of two kinds in one slot both keep their flows", r.twoKindsInOneSlot)
	t.Run("a destination that shares a service's slot passes", r.slotSharerPasses)
}

// filterRun is what TestFrontendFilter's cases share: the fixture, the
// services web, web6 and sharer (whose frontend shares web's slot), the
// client port the last connection took, and helpers that, as ever,
// report to the whole test (top).
type filterRun struct {
	top               *testing.T
	f                 *fixture
	web, web6, sharer service.Service
	port              uint16
}

func (r *filterRun) apply(svcs ...service.Service) {
	r.top.Helper()
	if err := r.f.dp.Apply(svcs); err != nil {
		r.top.Fatal(err)
	}
}

func (r *filterRun) kernelFilter() filter {
	r.top.Helper()
	k, err := readFilter(r.f.dp.objs.FrontendFilter)
	if err != nil {
		r.top.Fatal(err)
	}
	return k
}

// connect opens a flow with a SYN and returns its next segment.
func (r *filterRun) connect(h hook, dst netip.AddrPort) []byte {
	t, f := r.top, r.f
	t.Helper()
	r.port++
	src := netip.AddrPortFrom(client4, r.port)
	if dst.Addr().Is6() {
		src = netip.AddrPortFrom(client6, r.port)
	}
	f.establish(t, h, src, dst)
	return establishedSegment(src, dst, 0, nil)
}

// expect runs an established flow's segment and checks it is
// forwarded as a hit, or passed untouched.
func (r *filterRun) expect(h hook, what string, seg []byte, forwarded bool) {
	t, f := r.top, r.f
	t.Helper()
	hits, passes := f.stat(t, "flow_hit"), f.stat(t, "pass_not_service")
	v, out := f.run(t, h, false, f.cliIf, seg)
	switch {
	case forwarded && (v != vRedirect || f.stat(t, "flow_hit") != hits+1):
		t.Errorf("%s: %s: verdict %s, flow hits +%d; want forwarded as an established flow", h, what, v, f.stat(t, "flow_hit")-hits)
	case !forwarded && (v != vPass || !bytes.Equal(out, seg) || f.stat(t, "pass_not_service") != passes+1):
		t.Errorf("%s: %s: verdict %s, changed %v; want passed untouched as no service's", h, what, v, !bytes.Equal(out, seg))
	}
}

func (r *filterRun) kernelHoldsFilter(t *testing.T) {
	r.apply(r.web, r.web6)
	want := filterOf(r.f.dp.services)
	if got := r.kernelFilter(); !slices.Equal(got, want) {
		t.Fatal("the kernel's frontend filter differs from the installed services'")
	}
	for _, in := range r.f.dp.services {
		if got := want.slot(frontendSlot(in.key)); got != 1+uint8(service.KeyFlow) {
			t.Errorf("service %q: slot %#x, want the flow kind", in.svc.Name, got)
		}
	}
}

func (r *filterRun) programsComputeSlots(t *testing.T) {
	f := r.f
	r.apply(r.web, r.web6)
	// Emptying exactly the slot the agent computed for a service
	// makes the programs pass its packets: they read that very slot.
	for _, h := range hooks {
		for _, in := range []*installed{f.dp.services["web"], f.dp.services["web6"]} {
			seg := r.connect(h, netip.AddrPortFrom(addrFrom16(in.key.Addr), 80))
			k := r.kernelFilter()
			s := frontendSlot(in.key)
			saved := k[s/8]
			k.setSlot(s, 0)
			if err := f.dp.objs.FrontendFilter.Update(s/8, k[s/8], 0); err != nil {
				t.Fatal(err)
			}
			r.expect(h, in.svc.Name+" with its slot emptied", seg, false)
			if err := f.dp.objs.FrontendFilter.Update(s/8, saved, 0); err != nil {
				t.Fatal(err)
			}
			r.expect(h, in.svc.Name+" with its slot restored", seg, true)
		}
	}
}

func (r *filterRun) removedServiceNotSteered(t *testing.T) {
	for _, h := range hooks {
		r.apply(r.web, r.sharer)
		id := r.f.dp.services["web"].id
		seg := r.connect(h, netip.AddrPortFrom(vip4, 80))
		r.expect(h, "before the removal", seg, true)
		r.apply(r.sharer)
		r.expect(h, "after the removal", seg, false)
		var fe bpf.SteerFrontend
		if err := r.f.dp.objs.Frontends.Lookup(id, &fe); err != nil || fe != (bpf.SteerFrontend{}) {
			t.Fatalf("%s: frontend of the removed service's id: %+v, %v; want empty", h, fe, err)
		}
	}
}

func (r *filterRun) reusedIDNotSteered(t *testing.T) {
	for _, h := range hooks {
		r.apply(r.web, r.sharer)
		id := r.f.dp.services["web"].id
		seg := r.connect(h, netip.AddrPortFrom(vip4, 80))
		r.apply(r.sharer)
		// Services on other ports, as many as it takes for one to get
		// the freed id (ids go lowest first).
		var others []service.Service
		for p := range uint16(id + 1) {
			o := webService(fmt.Sprintf("other%d", p), vip4, service.TCP, 0)
			o.Port = 81 + p
			for i := range o.Stable {
				o.Stable[i].Addr = netip.AddrPortFrom(o.Stable[i].Addr.Addr(), 9000+p)
			}
			for i := range o.Canary {
				o.Canary[i].Addr = netip.AddrPortFrom(o.Canary[i].Addr.Addr(), 9000+p)
			}
			others = append(others, o)
		}
		r.apply(append(others, r.sharer)...)
		taken := false
		for _, in := range r.f.dp.services {
			taken = taken || in.id == id
		}
		if !taken {
			t.Fatalf("no new service took the removed one's id %d: the case is not set up", id)
		}
		r.expect(h, "the removed service's flow", seg, false)
	}
}

func (r *filterRun) keyKindChange(t *testing.T) {
	f := r.f
	for _, h := range hooks {
		r.apply(r.web)
		seg := r.connect(h, netip.AddrPortFrom(vip4, 80))
		client := r.web
		client.Key = service.KeyClient
		r.apply(client)
		// The flow's entry is under the old key: its packets are
		// strays now, steered by the hash, no entry made.
		strays := f.stat(t, "flow_stray")
		if v, _ := f.run(t, h, false, f.cliIf, seg); v != vRedirect || f.stat(t, "flow_stray") != strays+1 {
			t.Errorf("%s: verdict %s, strays +%d; want the flow steered by the hash under the client key", h, v, f.stat(t, "flow_stray")-strays)
		}
	}
}

func (r *filterRun) twoKindsInOneSlot(t *testing.T) {
	other := collidingFrontend(t, r.f.dp.services["web"].key)
	client := webService("client", other.Addr(), service.TCP, 0)
	client.Port, client.Key = other.Port(), service.KeyClient
	client.Stable, client.Canary = []service.Backend{{Addr: netip.AddrPortFrom(stable4[0], 9090)}}, nil
	r.apply(r.web, client)
	if got := r.kernelFilter().slot(frontendSlot(r.f.dp.services["web"].key)); got != filterMixed {
		t.Fatalf("shared slot holds %#x, want mixed", got)
	}
	for _, h := range hooks {
		r.expect(h, "the flow-keyed service", r.connect(h, netip.AddrPortFrom(vip4, 80)), true)
		r.expect(h, "the client-keyed service", r.connect(h, other), true)
	}
}

func (r *filterRun) slotSharerPasses(t *testing.T) {
	r.apply(r.web)
	other := collidingFrontend(t, r.f.dp.services["web"].key)
	for _, h := range hooks {
		seg := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, 999), dst: other, proto: protoTCP, tcpFlags: tcpACK})
		r.expect(h, "the colliding destination", seg, false)
	}
}

// TestFrontendSlotSpread: frontends laid out as operators lay them out (a
// subnet on one port, one address on many ports, a few ports on each
// address of a subnet, IPv6 across prefixes) spread over the filter's slots
// like random ones: 1024 of them share a slot about 8 times (the birthday
// bound for 65536 slots). A hash whose inputs cancel (an earlier one put
// the /24 on 4 ports in 256 slots) fails this.
func TestFrontendSlotSpread(t *testing.T) {
	v6 := func(prefix, host int) netip.Addr {
		b := netip.MustParseAddr("2001:db8::").As16()
		b[7], b[14], b[15] = byte(prefix), byte(host>>8), byte(host)
		return netip.AddrFrom16(b)
	}
	sets := map[string]func(i int) netip.AddrPort{
		"a /22 on port 80": func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 20, byte(i >> 8), byte(i)}), 80)
		},
		"one address on 1024 ports": func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 20, 0, 1}), uint16(8000+i))
		},
		"a /24 on 4 ports": func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 20, 0, byte(i / 4)}), uint16(80+i%4))
		},
		"4 IPv6 /64s": func(i int) netip.AddrPort { return netip.AddrPortFrom(v6(i/256, i%256), 443) },
	}
	for name, frontend := range sets {
		slots := map[uint32]bool{}
		for i := range 1024 {
			slots[frontendSlot(endpoint(frontend(i), service.TCP))] = true
		}
		if len(slots) < 1000 {
			t.Errorf("%s: 1024 frontends in %d slots, want at least 1000", name, len(slots))
		}
	}
}
