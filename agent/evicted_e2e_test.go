package agent_test

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestEvictionVisible: live connections whose flow entries vanish (here
// deleted from the pinned table, as a full table's LRU or the sweep
// would) are counted when they next send data, and graylanectl status
// warns about it on the node.
func TestEvictionVisible(t *testing.T) {
	e := setup(t, netlab.Config{}, "tc")
	s := web("echo", e.lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 0)
	if err := e.agent.Apply(e.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	load, err := e.lab.Client.StartSteadyLoad(e.ctx, netip.AddrPortFrom(netlab.VIP4, 81), 5, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	flows, err := ebpf.LoadPinnedMap(filepath.Join(e.agent.PinPath(), "maps", "flows"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer flows.Close()
	var keys [][]byte
	var k, v []byte
	for it := flows.Iterate(); it.Next(&k, &v); {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, key := range keys {
		flows.Delete(key)
	}
	time.Sleep(2 * time.Second) // the connections echo every 10 ms
	rep := load.Stop()
	t.Logf("steady load: %s; %d flow entries deleted", rep, len(keys))
	st, err := e.agent.Client().Status(e.ctx, "echo")
	if err != nil || len(st.Services) != 1 || len(st.Services[0].Nodes) != 1 {
		t.Fatalf("status: %+v (%v)", st, err)
	}
	if r := st.Services[0].Nodes[0].FlowMissRate; r <= 0 {
		t.Errorf("the node's flow miss rate is %v after %d live entries vanished, want > 0", r, len(keys))
	}
}
