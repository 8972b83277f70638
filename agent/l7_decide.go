package agent

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/l7proxy"
	"github.com/graylane/graylane/pkg/match"
	"github.com/graylane/graylane/pkg/service"
)

// l7Service is what the decider needs of an L7 service.
type l7Service struct {
	name   string
	id     uint32 // kernel id (datapath.InstalledService.ID)
	tenant string
	rules  []service.MatchRule
	svc    service.Service // the whole service (the kernel accept's front)
	// thresholds are the installed service's latency thresholds.
	thresholds [datapath.MaxThresholds]time.Duration
}

// l7Decider is the proxy's Decider: the service by frontend from the
// agent's last applied state (swapped whole at each apply, read without a
// lock), the pool by the service's match rules, and otherwise, and for the
// backend, the kernel's own decision code and tables (datapath.ChooseL7),
// so that a connection no rule decides goes where an L4 service's would:
// the pins, then the weight by the key's bucket, the Maglev slot of the
// key in the pool's table, the other pool when that one is empty.
type l7Decider struct {
	dp       *datapath.Datapath
	services atomic.Pointer[map[netip.AddrPort]l7Service]
}

func newL7Decider(dp *datapath.Datapath) *l7Decider {
	d := &l7Decider{dp: dp}
	d.set(nil)
	return d
}

// set replaces the services the decider knows (nil: none).
func (d *l7Decider) set(svcs map[netip.AddrPort]l7Service) {
	if svcs == nil {
		svcs = map[netip.AddrPort]l7Service{}
	}
	d.services.Store(&svcs)
}

// Decide implements l7proxy.Decider.
func (d *l7Decider) Decide(client, frontend netip.AddrPort, req match.Request) (l7proxy.Decision, error) {
	fe := netip.AddrPortFrom(frontend.Addr().Unmap(), frontend.Port())
	svc, ok := (*d.services.Load())[fe]
	if !ok {
		return l7proxy.Decision{}, fmt.Errorf("no L7 service has frontend %s", fe)
	}
	var rule *service.Pool
	idx := -1
	if pool, i, ok := match.Decide(svc.rules, req); ok {
		rule, idx = &pool, i
	}
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	ex, err := d.dp.ChooseL7(svc.name, client, rule)
	if err != nil {
		return l7proxy.Decision{}, fmt.Errorf("service %q: %w", svc.name, err)
	}
	return l7proxy.Decision{Service: svc.name, ServiceID: svc.id, Backend: ex.Backend, Pool: ex.Pool, Rule: idx}, nil
}

// share is the proxy's Options.Share: the tenant of the frontend's
// service, so that one tenant's flood of idle connections evicts its own
// pending connections, not another tenant's ("" for a frontend no
// service has: those are cut as soon as their head is read).
func (d *l7Decider) share(_, frontend netip.AddrPort) string {
	fe := netip.AddrPortFrom(frontend.Addr().Unmap(), frontend.Port())
	return (*d.services.Load())[fe].tenant
}
