package datapath

import (
	"net/netip"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// TestChooseL7FollowsTables: ChooseL7 with a rule's pool answers a backend
// of that pool's table as the kernel holds it, also after the pool's
// backends changed twice (which writes the table anew in the same of its
// two generations): the tables it keeps (l7TableCache) never answer with
// a table the kernel no longer holds.
func TestChooseL7FollowsTables(t *testing.T) {
	f := newFixture(t)
	shop := l7Shop()
	canary := service.Canary
	// Ports of the canary's endpoints in each round: the third round's
	// table takes the first's generation again, with other backends, and
	// no connection is chosen in the second (nothing reads its table).
	for round, ports := range [][]uint16{{9090, 9091}, {9091}, {9092}} {
		shop.Canary = nil
		for _, p := range ports {
			shop.Canary = append(shop.Canary, service.Backend{Addr: netip.AddrPortFrom(canary4[0], p)})
		}
		if err := f.dp.Apply([]service.Service{shop}); err != nil {
			t.Fatal(err)
		}
		if round == 1 {
			continue
		}
		for i := range 64 {
			client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 7, byte(i)}), uint16(40000+i))
			ex, err := f.dp.ChooseL7("shop", client, &canary)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if ex.Pool != service.Canary || ex.Reason != ReasonMatch {
				t.Fatalf("round %d: pool %s reason %s, want canary by the rule", round, ex.Pool, ex.Reason)
			}
			found := false
			for _, b := range shop.Canary {
				found = found || b.Addr == ex.Backend
			}
			if !found {
				t.Fatalf("round %d: backend %s is not one of the canary pool's %v", round, ex.Backend, shop.Canary)
			}
		}
	}
}
