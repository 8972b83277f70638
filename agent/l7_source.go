package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/l7proxy"
	"github.com/graylane/graylane/pkg/l7splice"
)

// With l7.source: client the agent connects to a backend from the client's
// address, so the backend sees the real client: l7_return on every
// backend-facing interface marks the backends' answers to those sockets,
// and a policy rule (fwmark 0x6c37 lookup 167, table 167: local 0/0 and
// ::/0 on lo) delivers them locally instead of forwarding them to the
// client. The backends' route to the clients must go through this
// gateway, as for L4 services. A client of the other family than its
// backend (an IPv6 client to an IPv4 backend) is connected from the
// gateway's address.

// routeReturns adds the return rule and attaches l7_return to the
// backend-facing interfaces of the configuration.
func (l *l7) routeReturns(k *l7splice.Kernel) ([]int, error) {
	if err := l7splice.RouteReturns(); err != nil {
		return nil, fmt.Errorf("L7 services, l7.source client: %w", err)
	}
	done, err := attachEach(l.backendIfaces, k.AttachBackend, k.DetachBackend)
	if err != nil {
		return nil, fmt.Errorf("L7 services, l7.source client: attach l7_return to %w", err)
	}
	return done, nil
}

// dialFromClient is the proxy's Dial for l7.source: client.
func dialFromClient(ctx context.Context, client netip.AddrPort, d l7proxy.Decision) (*net.TCPConn, error) {
	if client.Addr().Unmap().Is4() != d.Backend.Addr().Unmap().Is4() {
		var nd net.Dialer
		nd.SetMultipathTCP(false)
		c, err := nd.DialContext(ctx, "tcp", d.Backend.String())
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	return l7splice.DialFrom(ctx, client.Addr(), d.Backend)
}

// backendInterfaces names the interfaces of role backend in cfg.
func backendInterfaces(cfg *config.Config) []string {
	var out []string
	for _, ifc := range cfg.Interfaces {
		if ifc.Role == config.RoleBackend {
			out = append(out, ifc.Name)
		}
	}
	return out
}
