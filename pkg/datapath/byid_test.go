package datapath

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// TestServicesByID: new flows find their service by id (frontend_ids,
// services_by_id) instead of looking it up by frontend, and steer exactly
// as the lookup would: at the service's current weight and tables, and not
// at all once it is gone, whatever a stale or wrong id says.
func TestServicesByID(t *testing.T) {
	f := newFixture(t)
	apply := func(svcs ...service.Service) {
		t.Helper()
		if err := f.dp.Apply(svcs); err != nil {
			t.Fatal(err)
		}
	}
	port := uint16(30000)
	// syn sends a new flow's SYN to dst: the verdict, and the backend it
	// went to if forwarded.
	syn := func(h hook, dst netip.AddrPort) (verdict, netip.AddrPort) {
		t.Helper()
		port++
		v, out := f.run(t, h, false, f.cliIf, buildPacket(pktSpec{src: netip.AddrPortFrom(client4, port), dst: dst, proto: protoTCP, tcpFlags: tcpSYN}))
		if v != vRedirect {
			return v, netip.AddrPort{}
		}
		d, err := decode(out)
		if err != nil {
			t.Fatal(err)
		}
		return v, d.dst
	}
	// lookups counts the services-map lookups a call makes.
	lookups := func(do func()) uint64 {
		t.Helper()
		before := f.stat(t, "service_lookup")
		do()
		return f.stat(t, "service_lookup") - before
	}
	// setID writes id + 1 (0: none) into frontend_ids' slot for fe, as a
	// stale or wrong entry would read.
	setID := func(fe bpf.SteerEndpoint, v uint16) {
		t.Helper()
		s := frontendSlot(fe)
		var w uint64
		if err := f.dp.objs.FrontendIds.Lookup(s/uint32(idsPerWord), &w); err != nil {
			t.Fatal(err)
		}
		ids := frontendIDs{w}
		ids.set(s%uint32(idsPerWord), v)
		if err := f.dp.objs.FrontendIds.Update(s/uint32(idsPerWord), ids[0], 0); err != nil {
			t.Fatal(err)
		}
	}
	vip := netip.AddrPortFrom(vip4, 80)
	web := webService("web", vip4, service.TCP, 0)
	other := webService("other", vip4, service.TCP, 0)
	other.Port = 81
	other.Stable, other.Canary = []service.Backend{{Addr: netip.AddrPortFrom(stable4[1], 9081)}}, nil

	t.Run("the kernel holds the installed services by id", func(t *testing.T) {
		apply(web, other)
		want := frontendIDsOf(f.dp.services)
		got := make(frontendIDs, len(want))
		for w := range got {
			if err := f.dp.objs.FrontendIds.Lookup(uint32(w), &got[w]); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatal("the kernel's frontend ids differ from the installed services'")
		}
		for _, in := range f.dp.services {
			e, err := readSlot[bpf.SteerServiceEntry](f.dp.objs.ServicesById, in.id)
			if err != nil || e.Frontend != in.key || e.Value != in.value {
				t.Fatalf("service %q by id: %+v, %v; want %+v %+v", in.svc.Name, e, err, in.key, in.value)
			}
		}
		apply(web)
		if id := f.dp.services["web"].id; len(f.dp.byID.used) != 1 || !f.dp.byID.used[id] {
			t.Fatalf("slots in use after removing a service: %v, want only web's %d", f.dp.byID.used, id)
		}
	})

	t.Run("new flows take the service by id, at its current weight", func(t *testing.T) {
		for _, h := range hooks {
			for _, w := range []service.Weight{0, service.MaxWeight} {
				s := web
				s.CanaryWeight = w
				apply(s)
				pool := stable4
				if w == service.MaxWeight {
					pool = canary4
				}
				if n := lookups(func() {
					for range 20 {
						if v, be := syn(h, vip); v != vRedirect || !contains(pool, be.Addr()) {
							t.Fatalf("%s at %s: verdict %s to %s, want a backend of %v", h, w, v, be, pool)
						}
					}
				}); n != 0 {
					t.Errorf("%s at %s: %d services-map lookups for 20 new flows, want none", h, w, n)
				}
			}
		}
	})

	t.Run("services sharing a slot are looked up by frontend", func(t *testing.T) {
		apply(web)
		fe := collidingFrontend(t, f.dp.services["web"].key)
		sharer := webService("sharer", fe.Addr(), service.TCP, 0)
		sharer.Port = fe.Port()
		sharer.Stable, sharer.Canary = []service.Backend{{Addr: netip.AddrPortFrom(stable4[0], 9090)}}, nil
		apply(web, sharer)
		for _, h := range hooks {
			if n := lookups(func() {
				if v, be := syn(h, vip); v != vRedirect || be.Port() != 8080 {
					t.Errorf("%s: web's new flow: verdict %s to %s", h, v, be)
				}
				if v, be := syn(h, fe); v != vRedirect || be != sharer.Stable[0].Addr {
					t.Errorf("%s: sharer's new flow: verdict %s to %s", h, v, be)
				}
			}); n != 2 {
				t.Errorf("%s: %d services-map lookups for the two new flows, want 2", h, n)
			}
		}
	})

	t.Run("a wrong or stale id steers nothing", func(t *testing.T) {
		apply(web, other)
		webKey, otherID := f.dp.services["web"].key, f.dp.services["other"].id
		for _, h := range hooks {
			// web's slot names other: its frontend is not web's.
			setID(webKey, uint16(otherID+1))
			if n := lookups(func() {
				if v, be := syn(h, vip); v != vRedirect || be.Port() != 8080 {
					t.Errorf("%s: web's new flow with other's id in its slot: verdict %s to %s", h, v, be)
				}
			}); n != 1 {
				t.Errorf("%s: %d services-map lookups, want 1", h, n)
			}
			// An id no service has.
			setID(webKey, uint16(f.dp.opts.MaxServices-1+1))
			if v, be := syn(h, vip); v != vRedirect || be.Port() != 8080 {
				t.Errorf("%s: web's new flow with an unused id in its slot: verdict %s to %s", h, v, be)
			}
			setID(webKey, uint16(f.dp.services["web"].id+1))
		}
		// web removed, its slot still naming its id: the id's entry is
		// gone with it, and its packets pass as no service's.
		webID := f.dp.services["web"].id
		apply(other)
		for _, h := range hooks {
			setID(webKey, uint16(webID+1))
			if v, _ := syn(h, vip); v != vPass {
				t.Errorf("%s: SYN to a removed service whose slot still names its id: verdict %s, want pass", h, v)
			}
		}
	})
}
