package apiserver

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/manifest"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
)

// What a tenant token's releases may do with their gates (docs/gates.md):
// an exec gate names a command of the agent's allowlist, never a command
// line; a gate that dials (tcp, http, shadow) dials only the service's own
// canary backends, and none on loopback, link-local, metadata or node
// addresses. Admins may do anything.
//
// The check is the API's: the raft command carries no identity, so the
// replicated state cannot tell a tenant's release from an admin's.

// gateAllowlists holds each Server's gates.commands names. (Kept beside
// Server so that this file is all of the gate rules; a Server is made once
// per agent, so the entries stay few.)
var gateAllowlists sync.Map // *Server -> []string

// SetGateCommands installs the names of the agent's gates.commands, the
// only commands a tenant's exec gate may name. Call it before serving.
func (s *Server) SetGateCommands(names []string) {
	gateAllowlists.Store(s, slices.Clone(names))
}

// gateCommands returns what SetGateCommands installed (nil: none).
func (s *Server) gateCommands() []string {
	v, _ := gateAllowlists.Load(s)
	names, _ := v.([]string)
	return names
}

// checkGates refuses an apply whose releases, as the state would be after
// it, hold gates a tenant may not write: the releases applied, and the
// releases of the services applied (their canary backends may change).
func (s *Server) checkGates(ctx context.Context, id identity, st cluster.State, set *manifest.Set) error {
	if id.admin() {
		return nil
	}
	services := map[string]service.Service{}
	for name, svc := range st.Services {
		services[name] = svc
	}
	// The releases applied are checked whole; those already there whose
	// service is applied, for what their gates would dial.
	releases := map[string]release.Release{}
	applied := map[string]bool{}
	for _, svc := range set.Services {
		services[svc.Name] = svc
		for name, rel := range st.Releases {
			if rel.Service == svc.Name {
				releases[name] = rel
			}
		}
	}
	for _, rel := range set.Releases {
		releases[rel.Name] = rel
		applied[rel.Name] = true
	}
	if len(releases) == 0 {
		return nil
	}
	nodes, err := s.nodeAddrs(ctx)
	if err != nil {
		return err
	}
	commands := s.gateCommands()
	rules := release.TenantRules{
		Command: func(name string) bool { return slices.Contains(commands, name) },
		Node:    func(a netip.Addr) bool { return nodes[a] },
	}
	for _, name := range slices.Sorted(maps.Keys(releases)) {
		rel := releases[name]
		var canary []netip.AddrPort
		for _, b := range services[rel.Service].Canary {
			canary = append(canary, b.Addr)
		}
		problems := release.DialProblems(&rel, canary, rules.Node)
		if applied[name] {
			problems = release.TenantProblems(&rel, canary, rules)
		}
		if len(problems) > 0 {
			return gateRefusal(id, rel, problems)
		}
	}
	return nil
}

// gateRefusal is a 422 naming the release and every gate a tenant may
// not write, with the rule. (Not a 403: the token may write the release,
// only not these gates.)
func gateRefusal(id identity, rel release.Release, problems []*release.GateProblem) *api.Error {
	msgs := make([]string, 0, len(problems))
	for _, p := range problems {
		msgs = append(msgs, p.Error())
	}
	return apiError(http.StatusUnprocessableEntity, "token %q (tenant %q) may not apply release %q: %s", id.name, id.tenant, rel.Name, strings.Join(msgs, "; "))
}

// nodeAddrs are the addresses of the Graylane nodes a gate must not dial
// for a tenant: every member's raft address and this node's own
// interface addresses.
func (s *Server) nodeAddrs(ctx context.Context) (map[netip.Addr]bool, error) {
	out := map[netip.Addr]bool{}
	members, err := s.node.Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if ap, err := netip.ParseAddrPort(m.Address); err == nil {
			out[ap.Addr().Unmap()] = true
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out[p.Addr().Unmap()] = true
		}
	}
	return out, nil
}

// redactHistory drops from a release's history what its gates' backends
// and commands answered (an exec gate's output, an http gate's body
// excerpts and values): a tenant token reads what passed or failed, an
// admin reads everything.
func redactHistory(id identity, a *api.Release) {
	if id.admin() {
		return
	}
	for i := range a.History {
		a.History[i].Output = ""
	}
}
