// Package tenant defines a Tenant: what an admin lets one tenant's tokens
// write. Every tenant is treated as hostile: its services' addresses must
// lie in the prefixes it was granted, its counts stay under its quotas,
// and it may touch nothing of another tenant's. The cluster checks a
// tenant's write against its Tenant where the write commits (package
// cluster), not only at the API.
package tenant

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/graylane/graylane/pkg/service"
)

// Tenant is one tenant's grants and quotas (kind: Tenant).
type Tenant struct {
	Name string
	// VIPs are the prefixes its services' VIPs must lie in; Backends the
	// prefixes its backends must lie in. Empty: none.
	VIPs     []netip.Prefix
	Backends []netip.Prefix
	// Quotas. MaxServices, MaxReleases and MaxPins count over all the
	// tenant's services; MaxMirrorPercent bounds each service's
	// spec.mirror share (and what its captures may ask).
	MaxServices      int
	MaxReleases      int
	MaxPins          int
	MaxMirrorPercent service.Weight
	// MaxCaptures bounds the tenant's captures running at once on a node
	// (each node runs at most 8 in all).
	MaxCaptures int
	// MirrorInterfaces are the interfaces its services may mirror to
	// (spec.mirror.to) besides the capture ring: copies of its traffic
	// leave the host there, so an admin names them.
	MirrorInterfaces []string
	// AllowReserved lets the tenant's services use addresses no tenant
	// may otherwise claim: link-local VIPs and backends (169.254.0.0/16,
	// fe80::/10, such as a cloud's metadata service) and the cluster
	// members' own addresses. An admin's explicit choice.
	AllowReserved bool
}

// Default quotas of a Tenant manifest that names none.
const (
	DefaultMaxServices = 20
	DefaultMaxReleases = 10
	DefaultMaxPins     = 1000
	// DefaultMaxMirrorPercent is 1 %.
	DefaultMaxMirrorPercent service.Weight = 100
	DefaultMaxCaptures                     = 2
	// Upper bounds of the quotas: what the data path holds at most.
	MaxServicesLimit = 4096
	MaxPinsLimit     = 1 << 20
)

// Validate checks a tenant on its own; every problem is a
// *service.FieldError (the manifest's paths).
func (t *Tenant) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &service.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if !service.ValidName(t.Name) {
		bad("metadata.name", "%q must be 1 to 63 characters of a-z, 0-9 and -", t.Name)
	}
	for field, prefixes := range map[string][]netip.Prefix{"spec.vips": t.VIPs, "spec.backends": t.Backends} {
		for i, p := range prefixes {
			if !p.IsValid() {
				bad(fmt.Sprintf("%s[%d]", field, i), "is not a CIDR prefix")
			} else if p != p.Masked() {
				bad(fmt.Sprintf("%s[%d]", field, i), "%s has host bits set: write %s", p, p.Masked())
			}
		}
	}
	for _, q := range []struct {
		path     string
		v, limit int
	}{
		{"spec.maxServices", t.MaxServices, MaxServicesLimit},
		{"spec.maxReleases", t.MaxReleases, MaxServicesLimit},
		{"spec.maxPins", t.MaxPins, MaxPinsLimit},
		{"spec.maxCaptures", t.MaxCaptures, 64},
	} {
		if q.v < 0 || q.v > q.limit {
			bad(q.path, "%d is not in 0..%d", q.v, q.limit)
		}
	}
	for i, ifname := range t.MirrorInterfaces {
		if ifname == "" || len(ifname) > 15 || strings.ContainsAny(ifname, "/ \t") {
			bad(fmt.Sprintf("spec.mirrorInterfaces[%d]", i), "%q is not an interface name", ifname)
		}
	}
	if t.MaxMirrorPercent > service.MaxWeight {
		bad("spec.maxMirrorPercent", "%s is above 100%%", t.MaxMirrorPercent)
	}
	return errors.Join(errs...)
}

// Clone returns a copy that shares nothing with t.
func (t Tenant) Clone() Tenant {
	t.VIPs = slices.Clone(t.VIPs)
	t.Backends = slices.Clone(t.Backends)
	t.MirrorInterfaces = slices.Clone(t.MirrorInterfaces)
	return t
}

// In says whether addr lies in one of prefixes.
func In(addr netip.Addr, prefixes []netip.Prefix) bool {
	addr = addr.Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Reserved says whether addr is one no tenant may claim as a VIP or a
// backend unless allowed: link-local (a cloud's metadata service,
// neighbours) or loopback.
func Reserved(addr netip.Addr) bool {
	addr = addr.Unmap()
	return addr.IsLinkLocalUnicast() || addr.IsLoopback()
}
