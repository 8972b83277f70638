package cluster

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/tenant"
)

// Tenancy where writes commit. A write command carries its caller's
// tenant (Caller; "" for an admin or the cluster itself), and the FSM
// judges what the command would change against the caller's Tenant: a
// tenant may change only its own services and their releases, within the
// prefixes and quotas its Tenant grants. The leader runs the same check
// before a command enters the log (FSM.Check), so a refused write takes no
// entry; the FSM's own run makes the verdict the same on every node
// whatever state the API saw.

// ForbiddenError is a write its caller may not make at all (another
// tenant's service, an admin-only kind).
type ForbiddenError struct{ Err error }

func (e *ForbiddenError) Error() string { return e.Err.Error() }
func (e *ForbiddenError) Unwrap() error { return e.Err }

// LimitError is a write beyond its tenant's grants or quotas.
type LimitError struct{ Err error }

func (e *LimitError) Error() string { return e.Err.Error() }
func (e *LimitError) Unwrap() error { return e.Err }

// CallerSetter is a command that carries who makes it.
type CallerSetter interface {
	SetCaller(tenant string)
}

// commandCaller is the tenant a command is made by; "" for an admin or
// the cluster itself (a command that carries no caller).
func commandCaller(cmd Command) string {
	if c, ok := cmd.(interface{ caller() string }); ok {
		return c.caller()
	}
	return ""
}

// ApplyTenants creates or replaces Tenants, all or none (admins only).
type ApplyTenants struct {
	Tenants []tenant.Tenant `json:"tenants"`
	Meta
}

// DeleteTenant removes the Tenant Name, which owns no service any more.
type DeleteTenant struct {
	Name string `json:"name"`
	Meta
}

func (ApplyTenants) Type() CommandType { return CmdApplyTenants }
func (DeleteTenant) Type() CommandType { return CmdDeleteTenant }

func (c *ApplyTenants) apply(st *State) error {
	if c.Caller != "" {
		return &ForbiddenError{Err: errors.New("only an admin token may apply a Tenant")}
	}
	for i := range c.Tenants {
		if err := c.Tenants[i].Validate(); err != nil {
			return &InvalidError{Err: fmt.Errorf("tenant %q: %w", c.Tenants[i].Name, err)}
		}
	}
	if st.Tenants == nil {
		st.Tenants = map[string]tenant.Tenant{}
	}
	for _, t := range c.Tenants {
		st.Tenants[t.Name] = t.Clone()
	}
	return nil
}

func (c *DeleteTenant) apply(st *State) error {
	if c.Caller != "" {
		return &ForbiddenError{Err: errors.New("only an admin token may delete a Tenant")}
	}
	if _, ok := st.Tenants[c.Name]; !ok {
		return &NotFoundError{What: fmt.Sprintf("tenant %q", c.Name)}
	}
	var owned []string
	for _, s := range st.ServiceList() {
		if s.Tenant == c.Name {
			owned = append(owned, s.Name)
		}
	}
	if len(owned) > 0 {
		return &ConflictError{Err: fmt.Errorf("tenant %q still owns services %s: delete them first", c.Name, strings.Join(owned, ", "))}
	}
	delete(st.Tenants, c.Name)
	return nil
}

// checkTenancy judges what a tenant's command changed, prev -> next.
//
// Tenancy is judged once the state holds a Tenant: until an admin defines
// the first one, a tenant's writes are judged as before this version (the
// API's ownership checks), so a cluster being upgraded — whose older
// members ignore Caller — never holds entries the members judge
// differently. Upgrade every member before defining Tenants.
func checkTenancy(prev, next *State, caller string) error {
	if caller == "" || len(prev.Tenants) == 0 && len(next.Tenants) == 0 {
		return nil
	}
	changed := changedServices(prev, next)
	releases := changedReleases(prev, next)
	for _, name := range changed {
		for _, st := range []*State{prev, next} {
			if s, ok := st.Services[name]; ok && s.Tenant != caller {
				return &ForbiddenError{Err: fmt.Errorf("service %q is not tenant %q's", name, caller)}
			}
		}
	}
	for _, name := range releases {
		for _, st := range []*State{prev, next} {
			if r, ok := st.Releases[name]; ok && next.Services[r.Service].Tenant != caller && prev.Services[r.Service].Tenant != caller {
				return &ForbiddenError{Err: fmt.Errorf("release %q is not of one of tenant %q's services", name, caller)}
			}
		}
	}
	grows := slices.ContainsFunc(changed, func(n string) bool { _, ok := next.Services[n]; return ok }) ||
		slices.ContainsFunc(releases, func(n string) bool { _, ok := next.Releases[n]; return ok })
	if !grows {
		return nil // only removals: always allowed
	}
	for _, name := range releases {
		if r, ok := next.Releases[name]; ok {
			if err := tenantGates(&r); err != nil {
				return err
			}
		}
	}
	t, ok := next.Tenants[caller]
	if !ok {
		return &ForbiddenError{Err: fmt.Errorf("tenant %q has no Tenant: an admin grants its addresses and quotas first (kind: Tenant)", caller)}
	}
	for _, name := range changed {
		if s, ok := next.Services[name]; ok {
			if err := withinGrants(&t, &s); err != nil {
				return &LimitError{Err: err}
			}
		}
	}
	return withinQuotas(&t, next)
}

// changedServices names the services that differ between a and b.
func changedServices(a, b *State) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(union(a.Services, b.Services))) {
		x, inA := a.Services[name]
		y, inB := b.Services[name]
		if inA != inB || !reflect.DeepEqual(x, y) {
			out = append(out, name)
		}
	}
	return out
}

// changedReleases names the releases (definitions) that differ.
func changedReleases(a, b *State) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(union(a.Releases, b.Releases))) {
		x, inA := a.Releases[name]
		y, inB := b.Releases[name]
		if inA != inB || !reflect.DeepEqual(x, y) {
			out = append(out, name)
		}
	}
	return out
}

func union[V any](a, b map[string]V) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// withinGrants checks a tenant's service against its Tenant's prefixes
// and the addresses no tenant may claim.
func withinGrants(t *tenant.Tenant, s *service.Service) error {
	if !tenant.In(s.VIP, t.VIPs) {
		return fmt.Errorf("service %q: spec.vip %s is outside tenant %q's VIP prefixes %v", s.Name, s.VIP, t.Name, t.VIPs)
	}
	if tenant.Reserved(s.VIP) && !t.AllowReserved {
		return fmt.Errorf("service %q: spec.vip %s is a loopback or link-local address, which no tenant may claim", s.Name, s.VIP)
	}
	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		for i, b := range s.Backends(pool) {
			addr := b.Addr.Addr()
			if !tenant.In(addr, t.Backends) {
				return fmt.Errorf("service %q: spec.%s.backends[%d] %s is outside tenant %q's backend prefixes %v", s.Name, pool, i, b.Addr, t.Name, t.Backends)
			}
			if tenant.Reserved(addr) && !t.AllowReserved {
				return fmt.Errorf("service %q: spec.%s.backends[%d] %s is a loopback or link-local address, which no tenant may send to", s.Name, pool, i, b.Addr)
			}
		}
	}
	if s.Mirror != nil && s.Mirror.Percent > t.MaxMirrorPercent {
		return fmt.Errorf("service %q: spec.mirror.percent %s is above tenant %q's maxMirrorPercent %s", s.Name, s.Mirror.Percent, t.Name, t.MaxMirrorPercent)
	}
	if s.Mirror != nil && s.Mirror.Percent > 0 && s.Mirror.To != service.MirrorToCapture && !slices.Contains(t.MirrorInterfaces, s.Mirror.To) {
		return fmt.Errorf("service %q: spec.mirror.to %s is not one of tenant %q's mirror interfaces %v: a tenant mirrors to capture, or to an interface an admin grants it", s.Name, s.Mirror.To, t.Name, t.MirrorInterfaces)
	}
	return nil
}

// withinQuotas counts the tenant's services, releases and pins.
func withinQuotas(t *tenant.Tenant, st *State) error {
	services, pins, releases := 0, 0, 0
	for _, s := range st.Services {
		if s.Tenant == t.Name {
			services++
			pins += len(s.Pins)
		}
	}
	for _, r := range st.Releases {
		if st.Services[r.Service].Tenant == t.Name {
			releases++
		}
	}
	for _, q := range []struct {
		what      string
		n, max    int
		quotaName string
	}{
		{"services", services, t.MaxServices, "maxServices"},
		{"releases", releases, t.MaxReleases, "maxReleases"},
		{"pins", pins, t.MaxPins, "maxPins"},
	} {
		if q.n > q.max {
			return &LimitError{Err: fmt.Errorf("tenant %q would have %d %s, more than its %s %d", t.Name, q.n, q.what, q.quotaName, q.max)}
		}
	}
	return nil
}

// checkMemberAddresses refuses services that would claim an address of a
// cluster member as a VIP or send to one as a backend: a VIP on a
// member's address takes the traffic of its raft, API and metrics ports
// (nobody, admins included, could reach the API there any more), and a
// backend there points gates and traffic at the node itself. A Tenant
// with AllowReserved may. The members are the raft configuration's
// servers (their cluster addresses) and this node's own API and metrics
// addresses (Config.OwnAddrs); a member whose API listens on another
// address than its cluster one is not covered there. Checked by the
// leader before a command enters the log (the FSM cannot read the raft
// configuration deterministically).
func (n *Node) checkMemberAddresses(changed []service.Service) error {
	if len(changed) == 0 {
		return nil
	}
	members := n.memberAddrs()
	for i := range changed {
		s := &changed[i]
		if t, ok := n.fsm.Tenant(s.TenantName()); ok && t.AllowReserved {
			continue
		}
		if m, ok := members[s.VIP.Unmap()]; ok {
			return &LimitError{Err: fmt.Errorf("service %q: spec.vip %s is the address of cluster member %s: no service may claim it", s.Name, s.VIP, m)}
		}
		for _, pool := range []service.Pool{service.Stable, service.Canary} {
			for j, b := range s.Backends(pool) {
				if m, ok := members[b.Addr.Addr().Unmap()]; ok {
					return &LimitError{Err: fmt.Errorf("service %q: spec.%s.backends[%d] %s is an address of cluster member %s: no service may send there", s.Name, pool, j, b.Addr, m)}
				}
			}
		}
	}
	return nil
}

// memberAddrs maps the members' addresses to their names.
func (n *Node) memberAddrs() map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, a := range n.cfg.OwnAddrs {
		out[a.Unmap()] = n.cfg.Node
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return out
	}
	for _, srv := range f.Configuration().Servers {
		if ap, err := netip.ParseAddrPort(string(srv.Address)); err == nil {
			out[ap.Addr().Unmap()] = string(srv.ID)
		}
	}
	return out
}

// tenantGates refuses a command line in a tenant's release: gates run on
// the leader, and a tenant may only name commands of the agents'
// allowlist (command: NAME), which run unprivileged (docs/gates.md). The
// API refuses it first, with what the agent's allowlist holds; this holds
// whatever API a write came through.
func tenantGates(r *release.Release) error {
	for i, st := range r.Steps {
		for k, g := range st.Verify {
			if len(g.Exec) > 0 {
				return &ForbiddenError{Err: fmt.Errorf("release %q: spec.steps[%d].verify[%d].exec: a tenant's release may not run a command line; name a command of the agents' allowlist (command: NAME)", r.Name, i, k)}
			}
			if g.Shadow != nil && g.Shadow.From != release.ShadowFromCapture {
				// The captures directory is the agents', every tenant's.
				return &ForbiddenError{Err: fmt.Errorf("release %q: spec.steps[%d].verify[%d].shadow.from: a tenant's shadow gate compares a capture of its own service (from: capture), not a file", r.Name, i, k)}
			}
		}
	}
	return nil
}

// Tenant returns the Tenant name, if the state has it (without copying the
// whole state).
func (f *FSM) Tenant(name string) (tenant.Tenant, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.state.Tenants[name]
	return t.Clone(), ok
}
