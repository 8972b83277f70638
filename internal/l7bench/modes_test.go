package l7bench

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// routing: the client sends each request to a backend of the right pool
// by its own address, through the gateway's plain forwarding.
func routing(_ context.Context, lab *netlab.Lab) (steering, error) {
	stable, canary := backendTargets(lab)
	return steering{targets: targets{stable: stable, canary: canary, keep: [2]netip.AddrPort{stable[0], canary[0]}}}, nil
}

// graylaneL4: an agent (tc mode) with two L4 services, VIP:vipPort over
// the stable pool and VIP:canaryPort over the canary one; the client
// sends the requests for the canary to the second. No header is read:
// this is the cost of the gateway's steering without L7, the base of the
// first request's added latency.
func graylaneL4(bin string) func(context.Context, *netlab.Lab) (steering, error) {
	return func(ctx context.Context, lab *netlab.Lab) (steering, error) {
		stable, canary := backendTargets(lab)
		web := service.Service{Name: "web", VIP: netlab.VIP4, Port: vipPort, Protocol: service.TCP, Stable: backends(stable)}
		can := service.Service{Name: "web-canary", VIP: netlab.VIP4, Port: canaryPort, Protocol: service.TCP, Stable: backends(canary)}
		a, err := labagent.Start(ctx, lab, labagent.Options{Binary: bin, Mode: "tc", Services: []service.Service{web, can}})
		if err != nil {
			return steering{}, err
		}
		vip := netip.AddrPortFrom(netlab.VIP4, vipPort)
		return steering{
			targets: targets{stable: []netip.AddrPort{vip}, canary: []netip.AddrPort{netip.AddrPortFrom(netlab.VIP4, canaryPort)},
				keep: [2]netip.AddrPort{vip, netip.AddrPortFrom(netlab.VIP4, canaryPort)}},
			gwPid:    a.Pid(),
			teardown: func() error { defer a.Remove(); return a.Stop() },
		}, nil
	}
}

// graylaneL7: an agent (tc mode, as the agent's L7 lab tests run it) with
// one L7 service on VIP:vipPort, app http, the rule header X-Canary value
// v2 -> canary, weight 0 otherwise; splice is the agent's l7.splice (""
// for its default). If the agent does not serve it, the mode is
// unavailable rather than failed: the L7 path may not be in this build.
func graylaneL7(bin, splice string) func(context.Context, *netlab.Lab) (steering, error) {
	extra := ""
	if splice != "" {
		extra = fmt.Sprintf("l7:\n  splice: %s\n", splice)
	}
	return graylaneL7With(bin, extra)
}

// graylaneL7With is graylaneL7 with the agent's extra configuration.
func graylaneL7With(bin, extra string) func(context.Context, *netlab.Lab) (steering, error) {
	return func(ctx context.Context, lab *netlab.Lab) (steering, error) {
		stable, canary := backendTargets(lab)
		web := service.Service{Name: "web", VIP: netlab.VIP4, Port: vipPort, Protocol: service.TCP, App: service.AppHTTP,
			Stable: backends(stable), Canary: backends(canary),
			Match: []service.MatchRule{{Header: &service.FieldMatch{Name: "X-Canary", Value: "v2"}, Pool: service.Canary}},
		}
		a, err := labagent.Start(ctx, lab, labagent.Options{Binary: bin, Mode: "tc", Extra: extra, Services: []service.Service{web}})
		if err != nil {
			return steering{}, fmt.Errorf("%w: the agent does not start with an L7 service (app: http, spec.match): %v", errUnavailable, err)
		}
		stop := func() error { defer a.Remove(); return a.Stop() }
		vip := netip.AddrPortFrom(netlab.VIP4, vipPort)
		if err := waitServing(ctx, lab, vip, nil); err != nil {
			stop()
			return steering{}, fmt.Errorf("%w: the agent took the L7 service but does not route its requests by header: %v", errUnavailable, err)
		}
		return steering{targets: targets{stable: []netip.AddrPort{vip}, canary: []netip.AddrPort{vip}, keep: [2]netip.AddrPort{vip, vip}}, gwPid: a.Pid(), teardown: stop}, nil
	}
}

func backends(addrs []netip.AddrPort) []service.Backend {
	var out []service.Backend
	for _, a := range addrs {
		out = append(out, service.Backend{Addr: a})
	}
	return out
}
