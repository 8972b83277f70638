package l7bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/internal/gwcpu"
	"github.com/graylane/graylane/internal/netlab"
)

// The gateway's CPU per connection, isolated as internal/labbench does
// (gwcpu_test.go there says why): receive packet steering puts every
// packet the gateway receives on gatewayCPU and those of the other hosts
// on endpointCPU, where this process (client and backends) runs too. Here
// the gateway's processes — the agent, HAProxy, nginx and its workers —
// are pinned to gatewayCPU as well: an L7 gateway's work is as much in
// its process as in its kernel, so gatewayCPU's busy time is the whole
// gateway's, kernel and user space. Its inverse is how many such
// connections one gateway core serves.
const (
	endpointCPU = 0
	gatewayCPU  = 1
	// busyAttempts bounds the runs tried for one reading: in a VM the
	// host may report steal time in a lump, making idle + steal exceed the
	// wall time, and such a reading is taken again.
	busyAttempts = 3
)

// gatewayCost measures gatewayCPU's busy time per connection over
// isolatedConns connections, gwPid (0: none) and its children pinned to
// it. 0 if the machine has one CPU or the VM's steal time kept the
// reading unusable in busyAttempts runs.
func gatewayCost(ctx context.Context, lab *netlab.Lab, t targets, gwPid int) (time.Duration, error) {
	if runtime.NumCPU() <= gatewayCPU {
		return 0, nil
	}
	if err := steerReceive(ctx, lab); err != nil {
		return 0, err
	}
	restore, err := gwcpu.Pin(endpointCPU, os.Getpid())
	if err != nil {
		return 0, err
	}
	defer restore()
	if gwPid != 0 {
		restoreGW, err := gwcpu.Pin(gatewayCPU, processTree(gwPid)...)
		if err != nil {
			return 0, err
		}
		defer restoreGW()
	}
	for range busyAttempts {
		before, err := gwcpu.ReadIdle(gatewayCPU)
		if err != nil {
			return 0, err
		}
		if _, err := newConnRate(ctx, lab, t, isolatedConns); err != nil {
			return 0, err
		}
		after, err := gwcpu.ReadIdle(gatewayCPU)
		if err != nil {
			return 0, err
		}
		if busy := after.BusySince(before); busy >= 0 {
			return busy / isolatedConns, nil
		}
	}
	return 0, nil
}

// steerReceive sets RPS on every lab interface: the gateway's packets on
// gatewayCPU, every other host's on endpointCPU.
func steerReceive(ctx context.Context, lab *netlab.Lab) error {
	type iface struct {
		h    *netlab.Host
		name string
		cpu  int
	}
	ifaces := []iface{
		{lab.Gateway, netlab.GatewayClientIf, gatewayCPU},
		{lab.Gateway, netlab.GatewayBackendIf, gatewayCPU},
		{lab.Gateway, "lo", gatewayCPU},
		{lab.Client, netlab.HostIf, endpointCPU},
		{lab.Switch, netlab.SwitchGatewayPort, endpointCPU},
	}
	for _, b := range lab.Backends() {
		ifaces = append(ifaces, iface{lab.Switch, b.SwitchPort, endpointCPU}, iface{b, netlab.HostIf, endpointCPU})
	}
	for _, i := range ifaces {
		// `ip netns exec` mounts the namespace's own /sys.
		path := fmt.Sprintf("/sys/class/net/%s/queues/rx-0/rps_cpus", i.name)
		if err := run(ctx, i.h, "sh", "-c", fmt.Sprintf("echo %x > %s", 1<<i.cpu, path)); err != nil {
			return fmt.Errorf("steer %s's receive to CPU %d: %w", i.name, i.cpu, err)
		}
	}
	return nil
}

// processTree is pid and its descendants.
func processTree(pid int) []int {
	out := []int{pid}
	tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	for _, t := range tasks {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", t.Name(), "children"))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, processTree(c)...)
			}
		}
	}
	return out
}
