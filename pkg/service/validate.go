package service

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// FieldError says which field of a service is wrong and why. Path uses the
// manifest's spelling ("spec.canary.weight") so an operator can find it.
type FieldError struct {
	Service string
	Path    string
	Msg     string
}

func (e *FieldError) Error() string {
	if e.Service == "" {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("service %q: %s: %s", e.Service, e.Path, e.Msg)
}

// Limits of one service that the data path's fixed-size tables impose.
const (
	// MaxBackendsPerPool is how many backends one pool's lookup table holds.
	MaxBackendsPerPool = 256
	// MaxPins is how many pins one service may have.
	MaxPins = 1024
	// MaxLatencyThresholds is how many latency thresholds the data path
	// counts per service.
	MaxLatencyThresholds = 4
)

var nameRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// ValidName reports whether s is a valid service or tenant name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate checks one service on its own. It returns every problem found,
// joined, each a *FieldError.
func (s *Service) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Service: s.Name, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	s.validateMetadata(bad)
	s.validateFrontend(bad)
	s.validateTimeouts(bad)
	s.validatePools(bad)
	s.validatePins(bad)
	s.validateMirror(bad)
	s.validateMatch(bad)
	return errors.Join(errs...)
}

func (s *Service) validateMetadata(bad func(string, string, ...any)) {
	if !ValidName(s.Name) {
		bad("metadata.name", "%q must be 1 to 63 characters of a-z, 0-9 and -", s.Name)
	}
	if s.Tenant != "" && !ValidName(s.Tenant) {
		bad("metadata.tenant", "%q must be 1 to 63 characters of a-z, 0-9 and -", s.Tenant)
	}
}

// validateFrontend checks what clients connect to and how flows are keyed:
// VIP, port, protocol, key and application protocol.
func (s *Service) validateFrontend(bad func(string, string, ...any)) {
	switch {
	case !s.VIP.IsValid():
		bad("spec.vip", "is required: the IPv4 or IPv6 address clients connect to")
	case s.VIP.Zone() != "":
		bad("spec.vip", "%s has a zone; a VIP must be a plain address", s.VIP)
	case s.VIP.IsUnspecified() || s.VIP.IsMulticast():
		bad("spec.vip", "%s cannot be a service address", s.VIP)
	}
	if s.Port == 0 {
		bad("spec.port", "is required: 1..65535")
	}
	switch s.Protocol {
	case TCP, UDP:
	case 0:
		bad("spec.protocol", "is required: tcp or udp")
	default:
		bad("spec.protocol", "%s is not supported: use tcp or udp", s.Protocol)
	}
	switch s.Key {
	case KeyFlow, KeyClient:
	case KeyGTPUInner:
		if s.Protocol != UDP {
			bad("spec.key", "gtpu-inner needs protocol udp (GTP-U runs over UDP), not %s", s.Protocol)
		}
	default:
		bad("spec.key", "%s is not supported: use flow, client or gtpu-inner", s.Key)
	}
	switch s.App {
	case "", AppNone, AppHTTP, AppGRPC:
	default:
		bad("spec.app", "%q is not supported: use none, http or grpc", string(s.App))
	}
}

// validateTimeouts checks the flow timeout and the latency thresholds.
func (s *Service) validateTimeouts(bad func(string, string, ...any)) {
	if s.Timeout < 0 || (s.Timeout > 0 && s.Timeout < time.Millisecond) {
		bad("spec.timeout", "%s must be at least 1ms", s.Timeout)
	}
	if s.IdleTimeout != NoIdleTimeout && (s.IdleTimeout < 0 || (s.IdleTimeout > 0 && s.IdleTimeout < time.Second) || s.IdleTimeout > MaxIdleTimeout) {
		bad("spec.idleTimeout", "%s must be between 1s and %s, or never", s.IdleTimeout, MaxIdleTimeout)
	}
	if len(s.LatencyThresholds) > MaxLatencyThresholds {
		bad("spec.latencyThresholds", "has %d thresholds; at most %d", len(s.LatencyThresholds), MaxLatencyThresholds)
	}
	for i, th := range s.LatencyThresholds {
		if th < time.Microsecond {
			bad(fmt.Sprintf("spec.latencyThresholds[%d]", i), "%s must be at least 1µs", th)
		}
		for j := range i {
			if s.LatencyThresholds[j] == th {
				bad(fmt.Sprintf("spec.latencyThresholds[%d]", i), "%s is listed twice", th)
			}
		}
	}
}

// validatePools checks the canary weight, each pool, and that the pools do
// not overlap and can take the share of new flows the weight sends them.
func (s *Service) validatePools(bad func(string, string, ...any)) {
	if s.CanaryWeight > MaxWeight {
		bad("spec.canary.weight", "%s is above 100%%", s.CanaryWeight)
	}
	s.validatePool(Stable, bad)
	s.validatePool(Canary, bad)
	for i, b := range s.Canary {
		for j, o := range s.Stable {
			if unmapped(b.Addr) == unmapped(o.Addr) {
				bad(fmt.Sprintf("spec.canary.backends[%d]", i), "%s is also stable backend %d: a backend belongs to one pool, so its replies are counted for one", b.Addr, j)
			}
		}
	}
	if s.CanaryWeight > 0 && len(s.Canary) == 0 {
		bad("spec.canary.weight", "is %s but the canary pool has no backends", s.CanaryWeight)
	}
	if s.CanaryWeight < MaxWeight && len(s.Stable) == 0 {
		bad("spec.stable.backends", "is empty but %s of new flows would go to it (canary weight %s)",
			MaxWeight-s.CanaryWeight, s.CanaryWeight)
	}
}

func (s *Service) validateMirror(bad func(string, string, ...any)) {
	if s.Mirror != nil {
		s.Mirror.validate(bad)
	}
}

// Validate checks a mirror on its own, as Service.Validate does: it
// returns every problem found, joined, each a *FieldError with a path
// under spec.mirror and no service.
func (m *Mirror) Validate() error {
	var errs []error
	m.validate(func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	})
	return errors.Join(errs...)
}

// FieldMessages writes the problems Validate returned on one line, "; "
// between them, each path's prefix replaced by as: with "spec.mirror."
// and "--", a mirror's problems name the flags that set it.
func FieldMessages(err error, prefix, as string) string {
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		var fe *FieldError
		if errors.As(e, &fe) && strings.HasPrefix(fe.Path, prefix) {
			msgs = append(msgs, as+strings.TrimPrefix(fe.Path, prefix)+": "+fe.Msg)
		} else {
			msgs = append(msgs, e.Error())
		}
	}
	return strings.Join(msgs, "; ")
}

func (m *Mirror) validate(bad func(string, string, ...any)) {
	if m.Percent > MaxWeight {
		bad("spec.mirror.percent", "%s is above 100%%", m.Percent)
	}
	if m.To == "" {
		bad("spec.mirror.to", "is required: an interface name or %q", MirrorToCapture)
	} else if len(m.To) > 15 || strings.ContainsAny(m.To, "/ \t") {
		bad("spec.mirror.to", "%q is not an interface name", m.To)
	}
	if m.Snaplen != 0 && (m.Snaplen < MinSnaplen || m.Snaplen > MaxSnaplen) {
		bad("spec.mirror.snaplen", "%d is outside %d..%d bytes (leave it out, or 0, to keep whole packets)", m.Snaplen, MinSnaplen, MaxSnaplen)
	}
}

func (s *Service) validatePool(p Pool, bad func(string, string, ...any)) {
	backends := s.Backends(p)
	path := fmt.Sprintf("spec.%s.backends", p)
	if len(backends) > MaxBackendsPerPool {
		bad(path, "has %d backends; a pool holds at most %d", len(backends), MaxBackendsPerPool)
	}
	seen := make(map[string]int, len(backends))
	for i, b := range backends {
		at := fmt.Sprintf("%s[%d]", path, i)
		addr := b.Addr.Addr()
		switch {
		case !b.Addr.IsValid() || !addr.IsValid():
			bad(at, "is not an address:port")
			continue
		case addr.Zone() != "":
			bad(at, "%s has a zone; use a plain address", b.Addr)
		case addr.IsUnspecified() || addr.IsMulticast() || addr.IsLoopback():
			bad(at, "%s cannot be a backend address", addr)
		case b.Addr.Port() == 0:
			bad(at, "%s needs a port 1..65535", b.Addr)
		}
		if s.VIP.IsValid() && addr.Unmap().Is4() != s.VIP.Unmap().Is4() {
			bad(at, "%s is not of the VIP's address family (%s): the data path translates addresses, not families", addr, s.VIP)
		}
		key := unmapped(b.Addr).String()
		if j, dup := seen[key]; dup {
			bad(at, "%s is listed twice (also at index %d)", b.Addr, j)
		}
		seen[key] = i
	}
}

func (s *Service) validatePins(bad func(string, string, ...any)) {
	if len(s.Pins) > MaxPins {
		bad("spec.pins", "has %d pins; a service holds at most %d", len(s.Pins), MaxPins)
	}
	seen := make(map[string]int, len(s.Pins))
	for i, pin := range s.Pins {
		at := fmt.Sprintf("spec.pins[%d]", i)
		if !pin.Prefix.IsValid() {
			bad(at+".prefix", "is not a CIDR prefix such as 10.9.0.0/16")
			continue
		}
		if pin.Prefix != pin.Prefix.Masked() {
			bad(at+".prefix", "%s has host bits set; did you mean %s?", pin.Prefix, pin.Prefix.Masked())
		}
		if pin.Pool != Stable && pin.Pool != Canary {
			bad(at+".pool", "%s is not a pool: use stable or canary", pin.Pool)
		} else if len(s.Backends(pin.Pool)) == 0 {
			bad(at+".pool", "pins %s to the %s pool, which has no backends", pin.Prefix, pin.Pool)
		}
		key := unmappedPrefix(pin.Prefix).String()
		if j, dup := seen[key]; dup {
			bad(at+".prefix", "%s is pinned twice (also at index %d)", pin.Prefix, j)
		}
		seen[key] = i
	}
}

// unmapped returns ap as the data path keys it: an IPv4-mapped IPv6 address
// ([::ffff:10.1.0.11]:8080) is the IPv4 address (10.1.0.11:8080).
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// unmappedPrefix returns p masked and as the data path keys it:
// ::ffff:10.9.0.0/112 is 10.9.0.0/16.
func unmappedPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// ValidateSet checks a whole desired state: every service on its own, and
// that names and frontends are unique.
func ValidateSet(svcs []Service) error {
	var errs []error
	names := make(map[string]int, len(svcs))
	frontends := make(map[Frontend]string, len(svcs))
	// A backend endpoint serves one service: its replies are translated
	// back to that service's VIP.
	endpoints := make(map[Frontend]string)
	tenantOf := make(map[string]string, len(svcs))
	for i := range svcs {
		tenantOf[svcs[i].Name] = svcs[i].TenantName()
	}
	// clash is the error of service s clashing with service other at
	// path: across tenants it names neither (a tenant may not learn
	// another's service names, whichever of the two is reported).
	clash := func(s *Service, other, path, format string, args ...any) error {
		if tenantOf[other] != s.TenantName() {
			return &FieldError{Path: path, Msg: fmt.Sprintf(format, append(args, "another tenant's service")...)}
		}
		return &FieldError{Service: s.Name, Path: path, Msg: fmt.Sprintf(format, append(args, fmt.Sprintf("service %q", other))...)}
	}
	for i := range svcs {
		s := &svcs[i]
		if err := s.Validate(); err != nil {
			errs = append(errs, err)
		}
		if j, dup := names[s.Name]; dup && s.Name != "" {
			errs = append(errs, &FieldError{Service: s.Name, Path: "metadata.name",
				Msg: fmt.Sprintf("is used by two services (documents %d and %d)", j+1, i+1)})
		}
		names[s.Name] = i
		for _, pool := range []Pool{Stable, Canary} {
			for i, b := range s.Backends(pool) {
				if !b.Addr.IsValid() {
					continue // reported by Validate
				}
				ep := Frontend{VIP: b.Addr.Addr().Unmap(), Port: b.Addr.Port(), Protocol: s.Protocol}
				if other, dup := endpoints[ep]; dup && other != s.Name {
					errs = append(errs, clash(s, other, fmt.Sprintf("spec.%s.backends[%d]", pool, i),
						"%s is also a backend of %s: a backend endpoint serves one service, or its replies could not be told apart", ep))
				}
				endpoints[ep] = s.Name
			}
		}
		if !s.VIP.IsValid() || s.Port == 0 {
			continue
		}
		fe := s.Frontend()
		if other, dup := frontends[fe]; dup {
			errs = append(errs, clash(s, other, "spec.vip", "%s is already the frontend of %s", fe))
		}
		frontends[fe] = s.Name
	}
	errs = append(errs, hijacks(svcs, endpoints)...)
	return errors.Join(errs...)
}

// hijacks refuses a VIP:port that is a backend endpoint of another
// tenant's service: its traffic, once steered there, would be steered
// again to the VIP's backends. (Within a tenant, chaining one service to
// another is its own business.) The message does not name the other
// service: it is not the caller's to know.
func hijacks(svcs []Service, endpoints map[Frontend]string) []error {
	tenantOf := make(map[string]string, len(svcs))
	for i := range svcs {
		tenantOf[svcs[i].Name] = svcs[i].TenantName()
	}
	var errs []error
	for i := range svcs {
		s := &svcs[i]
		if !s.VIP.IsValid() || s.Port == 0 {
			continue
		}
		owner, ok := endpoints[s.Frontend()]
		if ok && owner != s.Name && tenantOf[owner] != s.TenantName() {
			errs = append(errs, &FieldError{Service: s.Name, Path: "spec.vip",
				Msg: fmt.Sprintf("%s is a backend endpoint of another tenant's service: a VIP may not take another tenant's traffic", s.Frontend())})
		}
	}
	return errs
}
