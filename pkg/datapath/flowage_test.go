package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

// TestFlowAge: a new flow records the programs' flow clock, at both
// hooks, and Flows tells its age from it: with the clock set as it was
// ten minutes ago, new flows are ten minutes old, to the clock's 16 s.
func TestFlowAge(t *testing.T) {
	f := newFixture(t)
	if err := f.dp.Apply([]service.Service{oneBackendWeb()}); err != nil {
		t.Fatal(err)
	}
	if err := f.dp.SetFlowClock(time.Now().Add(-10 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i, h := range hooks {
		client := netip.AddrPortFrom(client4, uint16(42000+i))
		syn := buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN})
		if v, _ := f.run(t, h, false, f.cliIf, syn); v == vPass {
			t.Fatalf("%s: the SYN passed", h)
		}
	}
	flows, _, err := f.dp.Flows("web", client4, 10)
	if err != nil || len(flows) != len(hooks) {
		t.Fatalf("flows: %+v (%v)", flows, err)
	}
	for _, fl := range flows {
		if !fl.AgeKnown || fl.Age < 10*time.Minute-FlowClockTick || fl.Age > 10*time.Minute+FlowClockTick {
			t.Errorf("flow %s: age %v (known %v), want 10m ± %v", fl.Client, fl.Age, fl.AgeKnown, FlowClockTick)
		}
	}
	if got := FlowAge(FlowClock(time.Unix(100*16, 0)), FlowClock(time.Unix(97*16, 0))); got != 48*time.Second {
		t.Errorf("age over 3 ticks: %v, want 48s", got)
	}
	if got := FlowAge(2, 65535); got != 3*FlowClockTick {
		t.Errorf("age across the clock's wrap: %v, want %v", got, 3*FlowClockTick)
	}
}
