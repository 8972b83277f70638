package datapath

import (
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

func TestAllPoolsMatches(t *testing.T) {
	f := newFixture(t)
	a, b := webService("a", vip4, service.TCP, 0), webService("b", vip6, service.TCP, 0)
	if err := f.dp.Apply([]service.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	newFlows(t, f, hookXDP, client4, vip4, 30, 100)
	c, l, err := f.dp.View().AllPools(2)
	if err != nil {
		t.Fatal(err)
	}
	for id := uint32(0); id < 2; id++ {
		c1, _ := f.dp.View().PoolCounters(id)
		l1, _ := f.dp.View().PoolLatency(id)
		if c[id] != c1 || l[id][0].Connect.Count() != l1[0].Connect.Count() {
			t.Fatalf("id %d: batch %+v, one by one %+v", id, c[id], c1)
		}
	}
	if c[0][0].Flows+c[1][0].Flows != 30 {
		t.Fatalf("flows %d", c[0][0].Flows+c[1][0].Flows)
	}
}
