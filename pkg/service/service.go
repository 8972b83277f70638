// Package service holds Graylane's desired state for one steered service:
// its address, how new flows are split between the stable and the canary
// pool, the pins that override the split, and the backends of each pool.
//
// It is the one model shared by the manifest parser, the data path, and
// (later) the cluster FSM. Validation lives here so that every way a service
// can enter the system rejects the same mistakes with the same words.
package service

import (
	"fmt"
	"net/netip"
	"time"
)

// Protocol is the transport protocol of a service.
type Protocol uint8

// The IANA protocol numbers; the data path compares them with the IP header.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// ParseProtocol reads "tcp" or "udp".
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("%q is not a protocol: use tcp or udp", s)
}

// KeyKind is what the split hashes to put a new flow into a pool.
type KeyKind uint8

const (
	// KeyFlow hashes the 5-tuple: every connection is placed on its own.
	KeyFlow KeyKind = iota
	// KeyClient hashes the client (source) address: a client always lands
	// in the same pool at a given weight.
	KeyClient
	// KeyGTPUInner hashes the inner source address of a GTP-U G-PDU: a UE
	// always lands in the same pool, whichever base station carries it.
	KeyGTPUInner
)

func (k KeyKind) String() string {
	switch k {
	case KeyFlow:
		return "flow"
	case KeyClient:
		return "client"
	case KeyGTPUInner:
		return "gtpu-inner"
	}
	return fmt.Sprintf("key(%d)", uint8(k))
}

// ParseKeyKind reads "flow", "client" or "gtpu-inner".
func ParseKeyKind(s string) (KeyKind, error) {
	switch s {
	case "flow":
		return KeyFlow, nil
	case "client":
		return KeyClient, nil
	case "gtpu-inner":
		return KeyGTPUInner, nil
	}
	return 0, fmt.Errorf("%q is not a key: use flow, client or gtpu-inner", s)
}

// Pool names one of the two backend pools of a service.
type Pool uint8

// The data path indexes per-pool state with these values.
const (
	Stable Pool = 0
	Canary Pool = 1
)

func (p Pool) String() string {
	switch p {
	case Stable:
		return "stable"
	case Canary:
		return "canary"
	}
	return fmt.Sprintf("pool(%d)", uint8(p))
}

// ParsePool reads "stable" or "canary".
func ParsePool(s string) (Pool, error) {
	switch s {
	case "stable":
		return Stable, nil
	case "canary":
		return Canary, nil
	}
	return 0, fmt.Errorf("%q is not a pool: use stable or canary", s)
}

// App is the application protocol a service speaks, as far as Graylane
// looks into it.
type App string

const (
	AppNone App = "none"
	AppHTTP App = "http"
	// AppGRPC is gRPC (HTTP/2): like AppHTTP, and match rules may test
	// its metadata.
	AppGRPC App = "grpc"
)

// Backend is one member of a pool.
type Backend struct {
	Addr netip.AddrPort
	// Weight is the backend's relative share of its pool's flows; 0 means 1.
	Weight uint32
}

func (b Backend) String() string { return b.Addr.String() }

// Pin sends every new flow whose key address falls in Prefix to Pool,
// whatever the weight. The longest matching prefix wins.
type Pin struct {
	Prefix netip.Prefix
	Pool   Pool
}

// Mirror copies a share of whole flows, both directions, to an interface or
// to the agent's capture ring ("capture").
type Mirror struct {
	Percent Weight
	To      string
	// Snaplen is how many bytes of each copy are kept, from the start of
	// the frame; 0 keeps the whole packet. Otherwise MinSnaplen..MaxSnaplen.
	Snaplen uint32
}

// Bounds of Mirror.Snaplen when it is set: a copy keeps at least the
// headers (Ethernet, IPv6, TCP with options fit in 64 bytes) and at most
// the largest IP packet.
const (
	MinSnaplen = 64
	MaxSnaplen = 65535
)

// MirrorToCapture is the Mirror.To that sends copies to the agent's
// capture ring instead of an interface.
const MirrorToCapture = "capture"

// DefaultTenant is the tenant of a service whose manifest names none.
const DefaultTenant = "default"

// TenantName is the service's tenant: DefaultTenant when it names none.
func (s *Service) TenantName() string {
	if s.Tenant == "" {
		return DefaultTenant
	}
	return s.Tenant
}

// DefaultTimeout is how long a request may stay unanswered before it counts
// as a timeout error when the manifest does not say.
const DefaultTimeout = 5 * time.Second

// Idle timeouts (spec.idleTimeout): an entry of a flow that sends nothing
// for this long leaves the flow table (the next sweep removes it).
const (
	// DefaultIdleTimeoutUDP is a UDP service's when the manifest does not
	// say: datagrams carry no end of their flow, so idleness is the end.
	DefaultIdleTimeoutUDP = 120 * time.Second
	// DefaultIdleTimeoutTCP is a TCP service's: closed and reset flows
	// leave at their end (after a short linger); this removes the flows
	// whose ends vanished without a word, as a firewall's connection
	// timeout does.
	DefaultIdleTimeoutTCP = time.Hour
	// NoIdleTimeout ("never"): the service's idle flows stay until they
	// close or the table needs the room.
	NoIdleTimeout time.Duration = -1
	// MaxIdleTimeout bounds spec.idleTimeout. The node's idle clock ticks
	// in epochs of the longest idle timeout / 200 (at least a second), so
	// this bound is also what one tenant's setting can do to another's
	// precision: an epoch of at most 18 s. Longer: never.
	MaxIdleTimeout = time.Hour
)

// DefaultIdleTimeout is the idle timeout of a service of protocol p that
// does not set one.
func DefaultIdleTimeout(p Protocol) time.Duration {
	if p == UDP {
		return DefaultIdleTimeoutUDP
	}
	return DefaultIdleTimeoutTCP
}

// EffectiveIdleTimeout is how long the service's idle flows stay: its
// IdleTimeout, its protocol's default for 0, and 0 for NoIdleTimeout.
func (s *Service) EffectiveIdleTimeout() time.Duration {
	switch {
	case s.IdleTimeout == NoIdleTimeout:
		return 0
	case s.IdleTimeout == 0:
		return DefaultIdleTimeout(s.Protocol)
	}
	return s.IdleTimeout
}

// Service is the desired state of one steered service.
type Service struct {
	Name     string
	Tenant   string
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
	Key      KeyKind
	App      App
	// Timeout is how long a request may go unanswered before it counts as
	// a timeout error; 0 means DefaultTimeout.
	Timeout time.Duration
	// IdleTimeout is how long a flow may send nothing before its entry
	// leaves the flow table: 0 for the protocol's default
	// (DefaultIdleTimeout), NoIdleTimeout for never.
	IdleTimeout time.Duration
	// LatencyThresholds are response times (at most MaxLatencyThresholds)
	// whose exceedances the data path counts exactly, so that "P99 above
	// T" is decided without bucket interpolation.
	LatencyThresholds []time.Duration

	Stable []Backend
	Canary []Backend
	// CanaryWeight is the share of new flows (or keys) sent to the canary
	// pool, in basis points.
	CanaryWeight Weight
	Pins         []Pin
	Mirror       *Mirror
	// Match are the spec.match rules, tried in order on a connection's
	// first request (or TLS ClientHello); the first that matches picks the
	// pool, before the pins and the weight. See MatchRule.
	Match []MatchRule
}

// Backends returns the backends of pool p.
func (s *Service) Backends(p Pool) []Backend {
	if p == Canary {
		return s.Canary
	}
	return s.Stable
}

// Frontend identifies the traffic of a service: no two services may share it.
type Frontend struct {
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
}

func (f Frontend) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(f.VIP, f.Port), f.Protocol)
}

// Frontend returns the address, port and protocol the service answers on.
func (s *Service) Frontend() Frontend {
	return Frontend{VIP: s.VIP.Unmap(), Port: s.Port, Protocol: s.Protocol}
}
