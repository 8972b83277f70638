// Package redact pseudonymises the client and UE addresses of captured
// frames so that a capture can leave the node (issue 18, point 4).
//
// # What is pseudonymised
//
// Every IPv4 and IPv6 address that the caller's keep function refuses is
// replaced by its Crypto-PAn pseudonym (Xu, Fan, Ammar, Moon 2002), in
// these places of an Ethernet frame with up to two 802.1Q/802.1ad tags:
//   - the source and destination of the IP header;
//   - for GTP-U (UDP port 2152, G-PDU) the inner IP packet's addresses;
//   - for IP-in-IP (protocol 4 or 41) the inner packet's addresses;
//   - for ICMP and ICMPv6 error messages the addresses of the packet they
//     quote.
//
// Crypto-PAn is prefix-preserving: two addresses that share exactly a k-bit
// prefix have pseudonyms that share exactly a k-bit prefix, so subnets stay
// subnets and a capture can still be read per cell, per pool or per APN. An
// IPv4-mapped IPv6 address keeps its ::ffff:0:0/96 prefix and gets the
// pseudonym of its IPv4 address.
//
// The IPv4 header checksum, the TCP and UDP checksums (their pseudo-header
// holds the addresses), the ICMPv6 checksum and, for GTP-U, the outer UDP
// checksum (it covers the inner packet) are updated incrementally (RFC
// 1624), so they stay right when a snaplen cut the payload. A UDP checksum
// of 0 (none) stays 0.
//
// # What is not
//
// MAC addresses, ports, VLAN IDs, GTP-U TEIDs and every payload byte are
// left as they are. A capture taken with payload (graylanectl capture
// --payload) can therefore still hold subscriber data: HTTP headers, DNS
// names, addresses inside application protocols. Addresses in IPv4 options
// (record route, timestamps), IPv6 destination options, ICMPv6 neighbour
// discovery targets and GRE payloads are not pseudonymised either.
//
// Frame refuses, and leaves unchanged, a frame it cannot vouch for: one
// too short for an IP header it must rewrite (ErrShort), and one whose
// layout it does not parse or whose L4 checksum depends on an address it
// does not rewrite (ErrUnsupported): a non-IP EtherType, more than two
// VLAN tags, an IPv4 source route, an IPv6 routing header with segments
// left, a GTP-U G-PDU that does not carry IP. The caller drops such frames.
//
// # The key
//
// The caller supplies the 32-byte key (16 bytes of AES-128 key, 16 bytes
// from which the pad is derived) and keeps it secret: whoever holds it can
// recompute every pseudonym and so reverse the mapping for any address they
// guess. The same key gives the same pseudonyms on every node and in every
// file, so captures of one flow taken on several nodes, or on several days,
// can be joined; a new key gives unrelated pseudonyms.
//
// # Cost
//
// A pseudonym takes one AES block per address bit: about 1 µs per IPv4 and
// 4 µs per IPv6 address on the development machine, no allocation
// (BenchmarkIPv4, BenchmarkIPv6; BenchmarkFrameGTPU for a whole frame).
package redact
