package netlab

import (
	"fmt"
	"net/netip"
)

// Addressing plan. Every lab uses the same addresses (labs are isolated from
// each other by their namespaces), so tests and the demo can use these
// values directly.
//
// IPv4 comes from 198.18.0.0/15 (RFC 2544, reserved for benchmarking) and
// IPv6 from the ULA prefix fd00:6c61::/32 ("la" = 0x6c61). Within a LAN the
// last IPv6 group carries the same number as the last IPv4 octet, written in
// hex: 198.18.1.10 <-> fd00:6c61:0:2::a, 198.18.1.100 <-> fd00:6c61:0:2::64.
var (
	// LabNet4 and LabNet6 cover every lab address. The client routes them
	// via the gateway.
	LabNet4 = netip.MustParsePrefix("198.18.0.0/15")
	LabNet6 = netip.MustParsePrefix("fd00:6c61::/32")

	// ClientNet4/6 is the LAN between the client and the gateway's cli0.
	ClientNet4 = netip.MustParsePrefix("198.18.0.0/24")
	ClientNet6 = netip.MustParsePrefix("fd00:6c61:0:1::/64")

	// BackendNet4/6 is the LAN between the gateway's bck0 and the backends
	// (the bridge br0 in the switch namespace).
	BackendNet4 = netip.MustParsePrefix("198.18.1.0/24")
	BackendNet6 = netip.MustParsePrefix("fd00:6c61:0:2::/64")

	// VIPNet4/6 is the range service VIPs are taken from. No namespace owns
	// these addresses: the client routes them to the gateway, where
	// Graylane's datapath translates them. Without Graylane the gateway has
	// no route for them and answers with ICMP unreachable.
	VIPNet4 = netip.MustParsePrefix("198.18.100.0/24")
	VIPNet6 = netip.MustParsePrefix("fd00:6c61:100::/64")

	// VIP4 and VIP6 are the conventional first VIP of VIPNet4/6.
	VIP4 = netip.MustParseAddr("198.18.100.1")
	VIP6 = netip.MustParseAddr("fd00:6c61:100::1")

	// Gateway addresses: cli0 faces the client, bck0 the backends.
	GatewayClient4  = netip.MustParseAddr("198.18.0.1")
	GatewayClient6  = netip.MustParseAddr("fd00:6c61:0:1::1")
	GatewayBackend4 = netip.MustParseAddr("198.18.1.1")
	GatewayBackend6 = netip.MustParseAddr("fd00:6c61:0:2::1")

	// PeerNet4/6 is a second prefix on the backend LAN (the same bridge),
	// for the peer gateways beyond the eighth: the first prefix has no
	// room left for them. Only labs with such peers route it: the gateway
	// and the first eight peers reach it on-link, and those peers reach
	// BackendNet4/6 on-link (see PeerGatewayAddr4).
	PeerNet4 = netip.MustParsePrefix("198.18.2.0/24")
	PeerNet6 = netip.MustParsePrefix("fd00:6c61:0:3::/64")

	// Client primary addresses (on the client's eth0).
	Client4 = netip.MustParseAddr("198.18.0.2")
	Client6 = netip.MustParseAddr("fd00:6c61:0:1::2")

	// SpoofNet4/6 is where Host.Flood takes its forged source addresses
	// by default. No namespace owns them. The gateway routes them back to
	// the client (via Client4/Client6 on cli0), which does not forward:
	// whatever a backend or the gateway answers to a forged source comes
	// back into the client namespace and is dropped there, never sent
	// anywhere else.
	SpoofNet4 = netip.MustParsePrefix("198.19.0.0/16")
	SpoofNet6 = netip.MustParsePrefix("fd00:6c61:ff::/48")
)

// Host octets, limits and well-known names.
const (
	stableBase = 10  // stable i = 198.18.1.(10+i)
	canaryBase = 100 // canary i = 198.18.1.(100+i)
	aliasBase  = 100 // client alias i = 198.18.0.(100+i)

	// MaxStable, MaxCanary and MaxClientAliases bound Config so that the
	// host octets never overlap or overflow.
	MaxStable        = canaryBase - stableBase // 90: 198.18.1.10 .. 198.18.1.99
	MaxCanary        = 150                     // 198.18.1.100 .. 198.18.1.249
	MaxClientAliases = 150                     // 198.18.0.100 .. 198.18.0.249
	MaxPeerGateways  = 24                      // 198.18.1.2 .. 198.18.1.9, then 198.18.2.10 .. 198.18.2.25
	lanPeers         = stableBase - 2          // 8 peers on BackendNet4, below the stable backends

	// Interface names.
	GatewayClientIf  = "cli0"    // gateway, toward the client
	GatewayBackendIf = "bck0"    // gateway, toward the backends
	HostIf           = "eth0"    // client and backends
	MirrorIf         = "mirror0" // gateway, toward the analyser (Config.Analyser)
	BridgeIf         = "br0"     // switch
	// SwitchGatewayPort is the switch port that is the veth peer of the
	// gateway's bck0. Backend ports are named after the backend ("s0", "c0").
	SwitchGatewayPort = "gw"

	// Ports of the servers started by Host.StartServers.
	HelloPort = 8080 // TCP: "<name>\n" then the server closes
	EchoPort  = 8081 // TCP: "<name>\n" then echo until the peer closes
	UDPPort   = 8080 // UDP: "<name>\n" + the datagram
	GTPUPort  = 2152 // UDP: "<name>\n"
)

// StableAddr4 returns the IPv4 address of stable backend i (198.18.1.(10+i)).
func StableAddr4(i int) netip.Addr { return lanAddr4(BackendNet4, stableBase+checkIndex(i, MaxStable)) }

// StableAddr6 returns the IPv6 address of stable backend i
// (fd00:6c61:0:2::(10+i), e.g. fd00:6c61:0:2::a for i = 0).
func StableAddr6(i int) netip.Addr { return lanAddr6(BackendNet6, stableBase+checkIndex(i, MaxStable)) }

// CanaryAddr4 returns the IPv4 address of canary backend i (198.18.1.(100+i)).
func CanaryAddr4(i int) netip.Addr { return lanAddr4(BackendNet4, canaryBase+checkIndex(i, MaxCanary)) }

// CanaryAddr6 returns the IPv6 address of canary backend i
// (fd00:6c61:0:2::(0x64+i), e.g. fd00:6c61:0:2::64 for i = 0).
func CanaryAddr6(i int) netip.Addr { return lanAddr6(BackendNet6, canaryBase+checkIndex(i, MaxCanary)) }

// PeerGatewayAddr4 returns the backend-LAN address of peer gateway i
// (0-based): 198.18.1.(2+i) for the first eight, 198.18.2.(2+i) on
// PeerNet4 for the others (peer g9 is 198.18.2.10, g24 198.18.2.25).
func PeerGatewayAddr4(i int) netip.Addr {
	n4, _ := peerNets(i)
	return lanAddr4(n4, 2+checkIndex(i, MaxPeerGateways))
}

// PeerGatewayAddr6 returns the IPv6 twin of PeerGatewayAddr4.
func PeerGatewayAddr6(i int) netip.Addr {
	_, n6 := peerNets(i)
	return lanAddr6(n6, 2+checkIndex(i, MaxPeerGateways))
}

// peerNets returns the prefixes peer gateway i's addresses are on.
func peerNets(i int) (netip.Prefix, netip.Prefix) {
	if i < lanPeers {
		return BackendNet4, BackendNet6
	}
	return PeerNet4, PeerNet6
}

// ClientAlias4 returns the IPv4 address of client alias i (198.18.0.(100+i)).
func ClientAlias4(i int) netip.Addr {
	return lanAddr4(ClientNet4, aliasBase+checkIndex(i, MaxClientAliases))
}

// ClientAlias6 returns the IPv6 address of client alias i
// (fd00:6c61:0:1::(0x64+i), e.g. fd00:6c61:0:1::64 for i = 0).
func ClientAlias6(i int) netip.Addr {
	return lanAddr6(ClientNet6, aliasBase+checkIndex(i, MaxClientAliases))
}

func checkIndex(i, limit int) int {
	if i < 0 || i >= limit {
		panic(fmt.Sprintf("netlab: host index %d out of range [0,%d)", i, limit))
	}
	return i
}

func lanAddr4(p netip.Prefix, host int) netip.Addr {
	a := p.Addr().As4()
	a[3] = byte(host)
	return netip.AddrFrom4(a)
}

func lanAddr6(p netip.Prefix, host int) netip.Addr {
	a := p.Addr().As16()
	a[14], a[15] = byte(host>>8), byte(host)
	return netip.AddrFrom16(a)
}
