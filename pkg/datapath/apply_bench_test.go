package datapath

import (
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkApplyWeight is the kernel side of a set-weight: Apply of the
// whole state where one service's weight changed, with nsvc services
// installed.
//
//	go test -run XXX -bench ApplyWeight ./pkg/datapath
func BenchmarkApplyWeight(b *testing.B) {
	f := newFixture(b)
	svcs := []service.Service{webService("web", vip4, service.TCP, 5000)}
	if err := f.dp.Apply(svcs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		svcs[0].CanaryWeight = service.Weight(1 + i%9999)
		if err := f.dp.Apply(svcs); err != nil {
			b.Fatal(err)
		}
	}
}
