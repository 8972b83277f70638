/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing shared by the XDP and TC programs. It works on the
 * [data, data_end) window of either context and records offsets, not
 * pointers, so the TC programs can keep using them after a helper that
 * moves packet data.
 *
 * What is deliberately not parsed (the packet is passed to the stack):
 *  - VLAN-tagged and other non-IP frames;
 *  - IPv4 and IPv6 fragments (no ports to steer by in later fragments, and
 *    steering only the first would split a datagram across backends);
 *  - IPv6 with a routing header (the destination is not final) or with more
 *    than MAX_IPV6_EXT extension headers.
 * IPv4 options are fine: the L4 header is found through IHL.
 */
#pragma once

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "types.h"

#define MAX_IPV6_EXT 4

/* GTP-U (3GPP TS 29.281) */
#define GTPU_PORT 2152
#define GTPU_TYPE_GPDU 255
#define GTPU_FLAGS_VERSION_MASK 0xe0
#define GTPU_FLAGS_V1 0x20
#define GTPU_FLAGS_PT 0x10
#define GTPU_FLAGS_OPT 0x07 /* E, S or PN: the 4-byte optional field is present */
#define GTPU_FLAG_E 0x04
#define MAX_GTPU_EXT 4
#define GTPU_MAX_OFF 511 /* bound of any offset walked in a GTP-U packet */

enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_IP,
	PARSE_NOT_L4,
	PARSE_FRAGMENT,
	PARSE_MALFORMED,
	PARSE_ICMP,        /* ICMP or ICMPv6: l4_off and tuple.proto are set */
};

struct packet {
	__u32 l3_off;      /* IP header */
	__u32 l4_off;      /* TCP/UDP (or ICMP) header */
	__u32 l3_end;      /* end of the IP packet, by its length field */
	__u32 payload_off; /* TCP/UDP payload */
	__u32 payload_len; /* its length (0 for a bare ACK, SYN, FIN ...) */
	__u8 ipv6;         /* 1 for IPv6 */
	__u8 tcp_flags;    /* TCP: the flags byte (FIN..CWR) */
	__u16 pad;
	__u32 tcp_seq;     /* TCP: sequence number, host order */
	__u32 tcp_ack;     /* TCP: acknowledgement number, host order */
	struct flow_key tuple; /* addresses and ports as on the wire */
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

static __always_inline void addr_from_v4(__u8 dst[16], __be32 v4)
{
	__u32 *w = (__u32 *)dst;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	w[3] = v4;
}

static __always_inline int addr_equal(const __u8 a[16], const __u8 b[16])
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

static __always_inline void addr_copy(__u8 dst[16], const __u8 src[16])
{
	__u32 *d = (__u32 *)dst;
	const __u32 *s = (const __u32 *)src;

	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
	d[3] = s[3];
}

/* Skip IPv6 extension headers that do not change where the packet goes.
 * Returns the next header and sets *off past the skipped headers. */
static __always_inline int skip_ipv6_ext(void *data, void *data_end, __u32 *off, __u8 *nexthdr)
{
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		__u8 *hdr = data + *off;

		switch (*nexthdr) {
		case IPPROTO_TCP:
		case IPPROTO_UDP:
		case IPPROTO_ICMPV6:
			return PARSE_OK;
		case IPPROTO_FRAGMENT:
			return PARSE_FRAGMENT;
		case IPPROTO_HOPOPTS:
		case IPPROTO_DSTOPTS:
			if ((void *)(hdr + 2) > data_end)
				return PARSE_MALFORMED;
			*nexthdr = hdr[0];
			*off += ((__u32)hdr[1] + 1) * 8;
			break;
		case IPPROTO_AH:
			if ((void *)(hdr + 2) > data_end)
				return PARSE_MALFORMED;
			*nexthdr = hdr[0];
			*off += ((__u32)hdr[1] + 2) * 4;
			break;
		default: /* routing header, ESP, ICMPv6, no next header, ... */
			return PARSE_NOT_L4;
		}
	}
	if (*nexthdr == IPPROTO_TCP || *nexthdr == IPPROTO_UDP || *nexthdr == IPPROTO_ICMPV6)
		return PARSE_OK;
	return PARSE_NOT_L4;
}

static __always_inline int parse_packet(void *data, void *data_end, struct packet *pkt)
{
	struct ethhdr *eth = data;
	__u8 proto;
	__u32 off;

	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;
	pkt->l3_off = sizeof(*eth);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + sizeof(*eth);
		__u32 ihl;

		if ((void *)(ip + 1) > data_end)
			return PARSE_MALFORMED;
		ihl = ip->ihl * 4;
		if (ip->version != 4 || ihl < sizeof(*ip))
			return PARSE_MALFORMED;
		/* MF set or a non-zero offset: a fragment. */
		if (ip->frag_off & bpf_htons(0x3fff))
			return PARSE_FRAGMENT;
		proto = ip->protocol;
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP)
			return PARSE_NOT_L4;
		pkt->ipv6 = 0;
		addr_from_v4(pkt->tuple.src, ip->saddr);
		addr_from_v4(pkt->tuple.dst, ip->daddr);
		off = sizeof(*eth) + ihl;
		pkt->l3_end = sizeof(*eth) + bpf_ntohs(ip->tot_len);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + sizeof(*eth);
		int ret;

		if ((void *)(ip6 + 1) > data_end)
			return PARSE_MALFORMED;
		if (ip6->version != 6)
			return PARSE_MALFORMED;
		proto = ip6->nexthdr;
		off = sizeof(*eth) + sizeof(*ip6);
		ret = skip_ipv6_ext(data, data_end, &off, &proto);
		if (ret != PARSE_OK)
			return ret;
		pkt->ipv6 = 1;
		addr_copy(pkt->tuple.src, (__u8 *)&ip6->saddr);
		addr_copy(pkt->tuple.dst, (__u8 *)&ip6->daddr);
		pkt->l3_end = sizeof(*eth) + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	} else {
		return PARSE_NOT_IP;
	}

	/* Bound the offset so the verifier can follow the pointer math. */
	if (off > 255)
		return PARSE_MALFORMED;
	pkt->l4_off = off;
	pkt->tuple.proto = proto;
	pkt->tuple.kind = 0;
	pkt->tuple.pad = 0;
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return PARSE_ICMP;

	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = data + off;

		if ((void *)(tcp + 1) > data_end)
			return PARSE_MALFORMED;
		pkt->tuple.sport = tcp->source;
		pkt->tuple.dport = tcp->dest;
		pkt->tcp_flags = ((__u8 *)tcp)[13];
		pkt->tcp_seq = bpf_ntohl(tcp->seq);
		pkt->tcp_ack = bpf_ntohl(tcp->ack_seq);
		pkt->payload_off = off + tcp->doff * 4;
	} else {
		struct udphdr *udp = data + off;

		if ((void *)(udp + 1) > data_end)
			return PARSE_MALFORMED;
		pkt->tuple.sport = udp->source;
		pkt->tuple.dport = udp->dest;
		pkt->tcp_flags = 0;
		pkt->tcp_seq = 0;
		pkt->tcp_ack = 0;
		pkt->payload_off = off + sizeof(*udp);
	}
	/* By the IP length, not data_end: a short frame may carry padding. */
	pkt->payload_len = pkt->l3_end > pkt->payload_off ? pkt->l3_end - pkt->payload_off : 0;
	return PARSE_OK;
}

/* From an ICMP or ICMPv6 destination-unreachable message, the endpoint the
 * quoted packet was sent to (its destination address, port, protocol):
 * for an error about a steered flow, a backend. Returns 0 on success. */
static __always_inline int parse_icmp_unreachable(void *data, void *data_end, const struct packet *pkt,
						  struct endpoint *to)
{
	__u32 off = pkt->l4_off;
	__u8 *icmp, *ports;
	__u8 proto;

	asm volatile("" : "+r"(off));
	if (off > 255)
		return -1;
	icmp = data + off;
	if ((void *)(icmp + 8) > data_end)
		return -1;
	/* Destination unreachable: ICMP type 3, ICMPv6 type 1. */
	if (icmp[0] != (pkt->ipv6 ? 1 : 3))
		return -1;
	off += 8; /* the quoted packet */
	if (pkt->ipv6) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		proto = ip6->nexthdr;
		addr_copy(to->addr, (__u8 *)&ip6->daddr);
		off += sizeof(*ip6);
	} else {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return -1;
		proto = ip->protocol;
		addr_from_v4(to->addr, ip->daddr);
		off += ip->ihl * 4;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -1;
	asm volatile("" : "+r"(off));
	if (off > 511)
		return -1;
	ports = data + off;
	if ((void *)(ports + 4) > data_end)
		return -1;
	to->port = *(__be16 *)(ports + 2);
	to->proto = proto;
	to->pad = 0;
	return 0;
}

/* Find the inner source (or destination) address of a GTP-U G-PDU carried in pkt's UDP
 * payload. Handles the optional sequence/N-PDU/next-extension field and a
 * bounded chain of extension headers (e.g. the PDU Session Container).
 * Returns 0 and fills inner[] on success; -1 if this is not a G-PDU with an
 * IP payload (echo, error indication, end marker, or malformed). */
enum gtpu_inner_which {
	GTPU_INNER_SRC = 0, /* uplink: the UE is the source */
	GTPU_INNER_DST = 1, /* downlink: the UE is the destination */
};

static __always_inline int parse_gtpu_inner(void *data, void *data_end, const struct packet *pkt,
					    enum gtpu_inner_which which, __u8 inner[16])
{
	__u32 off = pkt->l4_off + sizeof(struct udphdr);
	__u8 *gtp, *p;
	__u8 flags, next = 0;

	/* Every offset below is re-bounded just before it becomes a pointer:
	 * the verifier needs a small known range on each, and the barrier
	 * stops the compiler from checking one copy and using another. */
	asm volatile("" : "+r"(off));
	if (off > GTPU_MAX_OFF)
		return -1;
	gtp = data + off;
	if ((void *)(gtp + 8) > data_end)
		return -1;
	flags = gtp[0];
	if ((flags & GTPU_FLAGS_VERSION_MASK) != GTPU_FLAGS_V1 || !(flags & GTPU_FLAGS_PT))
		return -1;
	if (gtp[1] != GTPU_TYPE_GPDU)
		return -1;
	off += 8;
	if (flags & GTPU_FLAGS_OPT) {
		asm volatile("" : "+r"(off));
		if (off > GTPU_MAX_OFF)
			return -1;
		p = data + off;
		if ((void *)(p + 4) > data_end)
			return -1;
		if (flags & GTPU_FLAG_E)
			next = p[3];
		off += 4;
	}
#pragma unroll
	for (int i = 0; i < MAX_GTPU_EXT; i++) {
		__u32 len;

		if (!next)
			break;
		/* Length in 4-octet units, including the length and next-type
		 * octets; the next type is the last octet. */
		asm volatile("" : "+r"(off));
		if (off > GTPU_MAX_OFF)
			return -1;
		p = data + off;
		if ((void *)(p + 4) > data_end)
			return -1;
		len = (__u32)p[0] * 4;
		if (!len)
			return -1;
		off += len - 1;
		asm volatile("" : "+r"(off));
		if (off > GTPU_MAX_OFF)
			return -1;
		p = data + off;
		if ((void *)(p + 1) > data_end)
			return -1;
		next = p[0];
		off += 1;
	}
	if (next)
		return -1; /* a longer chain than we walk */
	asm volatile("" : "+r"(off));
	if (off > GTPU_MAX_OFF)
		return -1;
	p = data + off;
	if ((void *)(p + 1) > data_end)
		return -1;
	if ((p[0] >> 4) == 4) {
		struct iphdr *ip4 = (void *)p;

		if ((void *)(ip4 + 1) > data_end)
			return -1;
		addr_from_v4(inner, which == GTPU_INNER_SRC ? ip4->saddr : ip4->daddr);
		return 0;
	}
	if ((p[0] >> 4) == 6) {
		struct ipv6hdr *ip6 = (void *)p;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		addr_copy(inner, which == GTPU_INNER_SRC ? (__u8 *)&ip6->saddr : (__u8 *)&ip6->daddr);
		return 0;
	}
	return -1;
}
