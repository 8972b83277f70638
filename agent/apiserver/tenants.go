package apiserver

import (
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/tenant"
)

// Tenants over the API: admins apply them (kind: Tenant, on its own in a
// request) and delete them; a tenant's token sees its own.

// applyTenants commits the Tenants of an apply (admins only).
func (s *Server) applyTenants(r *http.Request, id identity, tenants []tenant.Tenant, others int) (any, error) {
	if !id.admin() {
		return nil, apiError(http.StatusForbidden, "token %q may not apply a Tenant: only an admin token may", id.name)
	}
	if others > 0 {
		return nil, apiError(http.StatusBadRequest, "%s", "apply Tenant manifests on their own, not with services or releases")
	}
	return s.write(r, &cluster.ApplyTenants{Tenants: tenants})
}

func (s *Server) listTenants(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	st, err := s.state(r)
	if err != nil {
		return nil, err
	}
	out := []api.Tenant{}
	for _, name := range slices.Sorted(maps.Keys(st.Tenants)) {
		if id.admin() || id.tenant == name {
			out = append(out, tenantToAPI(&st, st.Tenants[name]))
		}
	}
	return out, nil
}

func (s *Server) getTenant(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	st, err := s.state(r)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	t, ok := st.Tenants[name]
	if !ok || !(id.admin() || id.tenant == name) {
		return nil, apiError(http.StatusNotFound, "tenant %q does not exist", name)
	}
	return tenantToAPI(&st, t), nil
}

func (s *Server) deleteTenant(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	if !id.admin() {
		return nil, apiError(http.StatusForbidden, "token %q may not delete a Tenant: only an admin token may", id.name)
	}
	return s.write(r, &cluster.DeleteTenant{Name: r.PathValue("name")})
}

// deleteRelease answers DELETE /v1/releases/{name}: a release that is
// not running (abort it first).
func (s *Server) deleteRelease(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	st, err := s.state(r)
	if err != nil {
		return nil, err
	}
	rel, err := s.lookupRelease(st, r.PathValue("name"), id)
	if err != nil {
		return nil, err
	}
	return s.write(r, &cluster.DeleteRelease{Name: rel.Name})
}

// releasesOf names the releases of a service.
func releasesOf(st *cluster.State, service string) []string {
	var out []string
	for name, r := range st.Releases {
		if r.Service == service {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func tenantToAPI(st *cluster.State, t tenant.Tenant) api.Tenant {
	out := api.Tenant{Name: t.Name, VIPs: prefixStrings(t.VIPs), Backends: prefixStrings(t.Backends),
		MaxServices: t.MaxServices, MaxReleases: t.MaxReleases, MaxPins: t.MaxPins,
		MaxMirrorPercent: t.MaxMirrorPercent.String(), MaxCaptures: t.MaxCaptures, MirrorInterfaces: t.MirrorInterfaces, AllowReserved: t.AllowReserved}
	for _, svc := range st.Services {
		if svc.Tenant == t.Name {
			out.Services++
			out.Pins += len(svc.Pins)
		}
	}
	for _, r := range st.Releases {
		if st.Services[r.Service].Tenant == t.Name {
			out.Releases++
		}
	}
	return out
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// withCaller marks a command with who sends it (the audit's record) and,
// for a tenant's, its tenant, so the cluster judges it against the
// tenant's Tenant where it commits.
func withCaller(r *http.Request, c cluster.Command) {
	id, ok := r.Context().Value(ctxKey{}).(identity)
	if !ok {
		return
	}
	tenant := ""
	if !id.admin() {
		tenant = id.tenant
		if cs, ok := c.(cluster.CallerSetter); ok {
			cs.SetCaller(id.tenant)
		}
	}
	if ws, ok := c.(cluster.WhoSetter); ok {
		peer := r.RemoteAddr
		if peer == "" || peer == "@" {
			peer = "unix socket"
		}
		ws.SetWho(cluster.Who{Token: id.name, Tenant: tenant, Peer: peer, At: time.Now().UTC().Truncate(time.Millisecond)})
	}
}

// Limits of an audit request.
const (
	DefaultAuditLimit = 100
)

// listAudit answers GET /v1/audit?limit=N: the newest writes first; a
// tenant's token sees those that touched its tenant.
func (s *Server) listAudit(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	limit := DefaultAuditLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > cluster.MaxAudit {
			return nil, apiError(http.StatusBadRequest, "limit=%q: give 1 to %d", v, cluster.MaxAudit)
		}
		limit = n
	}
	st, err := s.state(r)
	if err != nil {
		return nil, err
	}
	out := []api.AuditEntry{}
	for i := len(st.Audit) - 1; i >= 0 && len(out) < limit; i-- {
		e := st.Audit[i]
		if !id.admin() && e.Tenant != id.tenant {
			continue
		}
		a := api.AuditEntry{Index: e.Index, Command: e.Command, Tenant: e.Tenant, Result: e.Result}
		if e.Who != nil {
			a.Token, a.Peer, a.At = e.Who.Token, e.Who.Peer, e.Who.At
		}
		out = append(out, a)
	}
	return out, nil
}

// tenantCapture bounds a tenant's capture by its Tenant: its share by the
// mirror share (a capture samples flows like a mirror does), and the
// tenant's captures running on this node by maxCaptures (a node runs at
// most 8 in all: one tenant may not take them all). The returned func
// ends the capture's count.
func (s *Server) tenantCapture(id identity, c CaptureSpec) (func(), error) {
	if id.admin() {
		return func() {}, nil
	}
	t, ok := s.node.FSM().Tenant(id.tenant)
	if !ok {
		return nil, apiError(http.StatusForbidden, "tenant %q has no Tenant: an admin grants its quotas first (kind: Tenant)", id.tenant)
	}
	if c.Share > t.MaxMirrorPercent {
		return nil, apiError(http.StatusUnprocessableEntity, "a capture of %s of the flows is above tenant %q's maxMirrorPercent %s", c.Share, id.tenant, t.MaxMirrorPercent)
	}
	s.capMu.Lock()
	defer s.capMu.Unlock()
	if s.captures == nil {
		s.captures = map[string]int{}
	}
	if s.captures[id.tenant] >= t.MaxCaptures {
		return nil, apiError(http.StatusUnprocessableEntity, "tenant %q already runs %d captures on this node, its maxCaptures: wait for one to end", id.tenant, t.MaxCaptures)
	}
	s.captures[id.tenant]++
	return func() {
		s.capMu.Lock()
		defer s.capMu.Unlock()
		s.captures[id.tenant]--
	}, nil
}
