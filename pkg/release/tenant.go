package release

import (
	"fmt"
	"net/netip"

	"github.com/graylane/graylane/pkg/service"
)

// ValidCommandName reports whether name can name a command of the agent's
// allowlist (gates.commands): 1 to 63 characters of a-z, 0-9 and -.
func ValidCommandName(name string) bool { return service.ValidName(name) }

// TenantRules are what a release written with a tenant token may do with
// its gates, beyond Validate: what the agent it is applied to allows.
type TenantRules struct {
	// Command reports whether the agent's allowlist has a command of that
	// name (nil: it has none).
	Command func(name string) bool
	// Node reports whether addr is an address of a Graylane node (nil:
	// none known).
	Node func(addr netip.Addr) bool
}

// GateProblem is a gate that a tenant may not write.
type GateProblem struct {
	Path string // "spec.steps[1].verify[0].exec"
	Msg  string
}

func (p *GateProblem) Error() string { return p.Path + ": " + p.Msg }

// TenantProblems checks a release written with a tenant token, whose
// service has the canary backends canary (the only addresses a gate
// dials): its exec gates name commands of the allowlist (command: NAME;
// the argv form exec: [...] is an admin's), and DialProblems.
func TenantProblems(r *Release, canary []netip.AddrPort, rules TenantRules) []*GateProblem {
	var out []*GateProblem
	for i, st := range r.Steps {
		for k, g := range st.Verify {
			at := fmt.Sprintf("spec.steps[%d].verify[%d]", i, k)
			switch {
			case len(g.Exec) > 0:
				out = append(out, &GateProblem{Path: at + ".exec",
					Msg: "a tenant token may not run a command line on the leader: name a command of the agent's allowlist instead, such as command: smoke (an admin adds it to gates.commands)"})
			case g.Command != "" && (rules.Command == nil || !rules.Command(g.Command)):
				out = append(out, &GateProblem{Path: at + ".command",
					Msg: fmt.Sprintf("%q is not a command of the agent's gates.commands: name one of them, or ask an admin to add it", g.Command)})
			}
		}
	}
	return append(out, DialProblems(r, canary, rules.Node)...)
}

// DialProblems checks that the gates of r that dial (tcp, http, shadow)
// dial no canary backend DialProblem or node refuses: what a tenant may
// not make them dial, when it writes the release or moves the service's
// canary backends under it.
func DialProblems(r *Release, canary []netip.AddrPort, node func(netip.Addr) bool) []*GateProblem {
	var out []*GateProblem
	for i, st := range r.Steps {
		for k, g := range st.Verify {
			if g.TCP == nil && g.HTTP == nil && g.Shadow == nil {
				continue
			}
			if p := dialProblems(fmt.Sprintf("spec.steps[%d].verify[%d]", i, k), canary, node); p != nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// dialProblems reports the first canary backend a tenant's gate may not
// dial.
func dialProblems(at string, canary []netip.AddrPort, node func(netip.Addr) bool) *GateProblem {
	for _, b := range canary {
		why := DialProblem(b.Addr())
		if why == "" && node != nil && node(b.Addr().Unmap()) {
			why = "an address of a Graylane node"
		}
		if why != "" {
			return &GateProblem{Path: at, Msg: fmt.Sprintf(
				"dials the canary backend %s, %s: a tenant's gates may dial only the service's own canary backends, and those not on loopback, link-local, metadata or node addresses", b, why)}
		}
	}
	return nil
}

// metadata are cloud metadata services outside the link-local ranges.
var metadata = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),   // AWS, IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

// DialProblem says why a tenant's gate may not dial addr ("": it may):
// the gate runs on the leader, so loopback reaches the node itself and
// link-local the cloud's metadata service (169.254.169.254).
func DialProblem(addr netip.Addr) string {
	a := addr.Unmap()
	switch {
	case !a.IsValid():
		return "not an address"
	case a.IsLoopback():
		return "a loopback address (the node itself)"
	case a.IsUnspecified() || a.Is4() && a.As4()[0] == 0:
		return "an unspecified address (the node itself)"
	case a.IsLinkLocalUnicast():
		return "a link-local address (where cloud metadata services answer)"
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "a multicast or broadcast address"
	}
	for _, m := range metadata {
		if a.WithZone("") == m {
			return "a cloud metadata address"
		}
	}
	return ""
}
