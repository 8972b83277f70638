package l7bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/stitch"
)

// graylaneL7Kernel: the kernel accept (pkg/stitch, bpf/stitch/accept.h)
// set up by this process in the gateway's namespace, without an agent:
// the stitch program on cli0 and bck0, the accept on cli0, a front on
// VIP:vipPort with the rule X-Canary: v2 -> canary, 4 096 gateway ports,
// and the sweep that gives them back (what the agent's share would be).
// Every byte, the handshakes included, is the programs' work; the
// gateway's CPU is its softirq's.
func graylaneL7Kernel(ctx context.Context, lab *netlab.Lab) (steering, error) {
	stable, canary := backendTargets(lab)
	k, err := stitch.Open(stitch.Options{MaxPairs: 8192})
	if err != nil {
		return steering{}, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	err = lab.Gateway.Do(func() error {
		for _, name := range []string{netlab.GatewayClientIf, netlab.GatewayBackendIf} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := k.Attach(l.Attrs().Index); err != nil {
				return err
			}
			if name == netlab.GatewayClientIf {
				if err := k.AttachAccept(l.Attrs().Index); err != nil {
					return err
				}
			}
		}
		return nil
	})
	vip := netip.AddrPortFrom(netlab.VIP4, vipPort)
	if err == nil {
		err = k.SetFront(stitch.Front{Addr: vip, Gateway: netlab.GatewayBackend4, Stable: stable, Canary: canary,
			Rules: []stitch.HeaderRule{{Name: "X-Canary", Value: "v2", Kind: stitch.Exact, Pool: stitch.Canary}}})
	}
	if err == nil {
		ports := make([]uint16, 4096)
		for i := range ports {
			ports[i] = uint16(40000 + i)
		}
		err = k.Grant(ports)
	}
	if err != nil {
		k.Close()
		return steering{}, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	sweepCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- k.WatchAccepted(sweepCtx, stitch.AcceptTimeouts{Opening: 3 * time.Second, Idle: 5 * time.Minute}, 5*time.Second)
	}()
	teardown := func() error {
		stop()
		err := <-done
		if st, serr := k.Stats(); serr == nil {
			fmt.Fprintf(os.Stderr, "graylane-l7-kernel: accept %v, packets %v\n", st.Accepts, st.Packets)
		}
		if cerr := k.Close(); err == nil {
			err = cerr
		}
		return err
	}
	return steering{targets: targets{stable: []netip.AddrPort{vip}, canary: []netip.AddrPort{vip}, keep: [2]netip.AddrPort{vip, vip}}, teardown: teardown}, nil
}
