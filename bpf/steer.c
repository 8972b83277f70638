//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Graylane's steering programs.
 *
 *   xdp_client / tc_client   on interfaces facing clients: packets to a
 *                            service are DNATed to a backend of the pool
 *                            their key falls in, and forwarded.
 *   xdp_backend / tc_backend on interfaces facing backends: replies of
 *                            steered flows get the VIP back as source.
 *
 * Verdicts: XDP_PASS / TC_ACT_UNSPEC for anything that is not ours or that
 * the stack must finish (no neighbour yet, MTU, TTL); XDP_REDIRECT /
 * TC_ACT_REDIRECT when we forward; XDP_DROP / TC_ACT_SHOT only for a packet
 * to a service none of whose pools has a backend.
 *
 * XDP and TC differ only in how bytes are rewritten (XDP writes the frame
 * and fixes checksums itself; TC asks the kernel, which knows whether the
 * skb's checksum is complete or partial) and in their return codes.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/maps.h"
#include "include/parse.h"
#include "include/csum.h"
#include "include/steer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

/* Offsets of the fields we rewrite. */
#define IPV4_CHECK_OFF offsetof(struct iphdr, check)
#define IPV4_SADDR_OFF offsetof(struct iphdr, saddr)
#define IPV4_DADDR_OFF offsetof(struct iphdr, daddr)
#define IPV4_TTL_OFF offsetof(struct iphdr, ttl)
#define IPV6_SADDR_OFF offsetof(struct ipv6hdr, saddr)
#define IPV6_DADDR_OFF offsetof(struct ipv6hdr, daddr)
#define IPV6_HOPLIMIT_OFF offsetof(struct ipv6hdr, hop_limit)
#define TCP_CHECK_OFF offsetof(struct tcphdr, check)
#define UDP_CHECK_OFF offsetof(struct udphdr, check)
#define L4_SPORT_OFF 0
#define L4_DPORT_OFF 2

/* Which end of the packet a rewrite changes. */
enum side {
	SIDE_DST = 0, /* client -> VIP becomes client -> backend */
	SIDE_SRC = 1, /* backend -> client becomes VIP -> client */
};

static __always_inline void parse_stat(int ret)
{
	switch (ret) {
	case PARSE_NOT_IP:
		count(STAT_PASS_NOT_IP);
		break;
	case PARSE_NOT_L4:
		count(STAT_PASS_NOT_L4);
		break;
	case PARSE_FRAGMENT:
		count(STAT_PASS_FRAGMENT);
		break;
	default:
		count(STAT_PASS_MALFORMED);
	}
}

/* Route the (already rewritten) packet with the kernel's FIB. */
static __always_inline int fib_route(void *ctx, const struct packet *pkt, const __u8 src[16],
				     const __u8 dst[16], __be16 sport, __be16 dport, __u16 tot_len,
				     __u32 ifindex, struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->l4_protocol = pkt->tuple.proto;
	fib->sport = sport;
	fib->dport = dport;
	fib->tot_len = tot_len;
	fib->ifindex = ifindex;
	if (pkt->ipv6) {
		fib->family = AF_INET6;
		addr_copy((__u8 *)fib->ipv6_src, src);
		addr_copy((__u8 *)fib->ipv6_dst, dst);
	} else {
		fib->family = AF_INET;
		fib->ipv4_src = ((const __u32 *)src)[3];
		fib->ipv4_dst = ((const __u32 *)dst)[3];
	}
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/*
 * The next hop of a rewritten packet: from the cache, else from the FIB
 * (and then cached). A FIB lookup costs about as much as the rest of the
 * program together, and every packet of a flow goes the same way.
 * Returns 0 with *nh filled, or -1 when the stack must finish the packet
 * (no route, no neighbour yet, MTU, forwarding disabled, ...).
 */
static __always_inline int next_hop(void *ctx, const struct packet *pkt, const __u8 src[16],
				    const __u8 dst[16], __be16 sport, __be16 dport, __u16 tot_len,
				    __u32 ifindex, struct nexthop *nh)
{
	struct nh_key key = { .ifindex = ifindex };
	struct bpf_fib_lookup fib;
	__u64 now = bpf_ktime_get_coarse_ns();
	struct nexthop *cached;
	__u32 mtu = 0;

	addr_copy(key.addr, dst);
	cached = bpf_map_lookup_elem(&nexthops, &key);
	if (cached && cached->gen == route_gen && now < cached->expires_ns) {
		*nh = *cached;
		return 0;
	}
	count(STAT_NEXTHOP_MISS);
	if (fib_route(ctx, pkt, src, dst, sport, dport, tot_len, ifindex, &fib) != BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	/* The device MTU, for the cached path's size check. */
	if (bpf_check_mtu(ctx, fib.ifindex, &mtu, 0, 0) < 0)
		return -1;
	nh->expires_ns = now + NEXTHOP_TTL_NS;
	nh->gen = route_gen;
	nh->ifindex = fib.ifindex;
	nh->mtu = mtu;
	__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
	bpf_map_update_elem(&nexthops, &key, nh, BPF_ANY);
	return 0;
}

/* ---------------------------------------------------------------- XDP */

/* Rewrite one end (address and port) of the frame in place and fix the IP
 * and L4 checksums incrementally. */
static __always_inline int xdp_rewrite(void *data, void *data_end, const struct packet *pkt,
				       enum side side, const __u8 addr[16], __be16 port)
{
	__u32 l4 = pkt->l4_off;
	__u32 diff;

	if (pkt->ipv6) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		__u32 *old;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		old = side == SIDE_DST ? (__u32 *)&ip6->daddr : (__u32 *)&ip6->saddr;
		diff = csum_diff16(old, (const __u32 *)addr);
		addr_copy((__u8 *)old, addr);
	} else {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		__be32 *old, new = ((const __u32 *)addr)[3];

		if ((void *)(ip + 1) > data_end)
			return -1;
		old = side == SIDE_DST ? &ip->daddr : &ip->saddr;
		diff = csum_add(~*old, new);
		csum_apply(&ip->check, diff);
		*old = new;
	}

	/* The port is covered by the L4 checksum only; the address by both,
	 * through the pseudo header. Ports sit at the same offsets in TCP and
	 * UDP; the checksum does not. */
	if (l4 > 255)
		return -1;
	if (pkt->tuple.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = data + l4;
		__be16 *portp;

		if ((void *)(tcp + 1) > data_end)
			return -1;
		portp = side == SIDE_DST ? &tcp->dest : &tcp->source;
		diff = csum_add(diff, csum_add(~(__u32)*portp, (__u32)port));
		*portp = port;
		csum_apply(&tcp->check, diff);
	} else {
		struct udphdr *udp = data + l4;
		__be16 *portp;

		if ((void *)(udp + 1) > data_end)
			return -1;
		portp = side == SIDE_DST ? &udp->dest : &udp->source;
		diff = csum_add(diff, csum_add(~(__u32)*portp, (__u32)port));
		*portp = port;
		csum_apply_udp(&udp->check, diff);
	}
	return 0;
}

/* Forward a rewritten frame ourselves when the next hop is known;
 * otherwise let the stack finish (resolve the neighbour, fragment or send
 * an ICMP error), which then also decrements the TTL. */
static __always_inline int xdp_forward(struct xdp_md *ctx, const struct packet *pkt,
				       const __u8 src[16], const __u8 dst[16], __be16 sport,
				       __be16 dport)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct nexthop nh;
	__u16 tot_len;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (pkt->ipv6) {
		struct ipv6hdr *ip6 = data + sizeof(*eth);

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		if (ip6->hop_limit <= 1 ||
		    next_hop(ctx, pkt, src, dst, sport, dport, tot_len, ctx->ingress_ifindex, &nh) ||
		    tot_len > nh.mtu)
			goto stack;
		ip6->hop_limit--;
	} else {
		struct iphdr *ip = data + sizeof(*eth);

		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		tot_len = bpf_ntohs(ip->tot_len);
		if (ip->ttl <= 1 ||
		    next_hop(ctx, pkt, src, dst, sport, dport, tot_len, ctx->ingress_ifindex, &nh) ||
		    tot_len > nh.mtu)
			goto stack;
		/* TTL is the high byte of its 16-bit word (TTL, protocol). */
		csum_apply(&ip->check, csum_add(~(__u32)bpf_htons(ip->ttl << 8),
						 (__u32)bpf_htons((ip->ttl - 1) << 8)));
		ip->ttl--;
	}
	__builtin_memcpy(eth->h_dest, nh.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh.smac, ETH_ALEN);
	count(STAT_FWD_REDIRECT);
	return bpf_redirect(nh.ifindex, 0);
stack:
	count(STAT_FWD_STACK);
	return XDP_PASS;
}

SEC("xdp")
int xdp_client(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet pkt;
	struct flow f;
	int ret, new_flow;

	ret = parse_packet(data, data_end, &pkt);
	if (ret != PARSE_OK) {
		parse_stat(ret);
		return XDP_PASS;
	}
	ret = decide_client(data, data_end, &pkt, &f, &new_flow);
	if (ret == DECIDE_PASS)
		return XDP_PASS;
	if (ret == DECIDE_DROP)
		return XDP_DROP;
	count_pool(f.svc_id, f.pool, DIR_TO_BACKEND, data_end - data, new_flow);
	if (xdp_rewrite(data, data_end, &pkt, SIDE_DST, f.backend.addr, f.backend.port) != 0) {
		count(STAT_PASS_MALFORMED);
		return XDP_PASS;
	}
	return xdp_forward(ctx, &pkt, pkt.tuple.src, f.backend.addr, pkt.tuple.sport, f.backend.port);
}

SEC("xdp")
int xdp_backend(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet pkt;
	struct reply *r;
	__u8 vip[16];
	__be16 vip_port;
	int ret;

	ret = parse_packet(data, data_end, &pkt);
	if (ret != PARSE_OK) {
		parse_stat(ret);
		return XDP_PASS;
	}
	r = decide_backend(data, data_end, &pkt);
	if (!r)
		return XDP_PASS;
	addr_copy(vip, r->vip);
	vip_port = r->vip_port;
	count_pool(r->svc_id, r->pool, DIR_TO_CLIENT, data_end - data, 0);
	if (xdp_rewrite(data, data_end, &pkt, SIDE_SRC, vip, vip_port) != 0) {
		count(STAT_PASS_MALFORMED);
		return XDP_PASS;
	}
	return xdp_forward(ctx, &pkt, vip, pkt.tuple.dst, vip_port, pkt.tuple.dport);
}

/* ----------------------------------------------------------------- TC */

/* Headers we may read: Ethernet + IPv6 + extension headers + UDP + GTP-U
 * with extensions + an inner IPv6 header fit in this many bytes. */
#define TC_PULL_LEN 256

/* Make sure the headers are in the linear part of the skb. */
static __always_inline void tc_pull(struct __sk_buff *skb)
{
	__u32 want = skb->len < TC_PULL_LEN ? skb->len : TC_PULL_LEN;

	if ((long)skb->data + want > (long)skb->data_end)
		bpf_skb_pull_data(skb, want);
}

static __always_inline int tc_rewrite(struct __sk_buff *skb, const struct packet *pkt, enum side side,
				      const __u8 addr[16], __be16 port)
{
	__u32 l3 = pkt->l3_off, l4 = pkt->l4_off;
	__u32 check_off = l4 + (pkt->tuple.proto == IPPROTO_TCP ? TCP_CHECK_OFF : UDP_CHECK_OFF);
	__u64 l4flags = pkt->tuple.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	const __u8 *old_addr = side == SIDE_DST ? pkt->tuple.dst : pkt->tuple.src;
	__be16 old_port = side == SIDE_DST ? pkt->tuple.dport : pkt->tuple.sport;

	if (pkt->ipv6) {
		__s64 diff = bpf_csum_diff((__be32 *)old_addr, 16, (__be32 *)addr, 16, 0);

		if (diff < 0)
			return -1;
		if (bpf_l4_csum_replace(skb, check_off, 0, diff, BPF_F_PSEUDO_HDR | l4flags))
			return -1;
		if (bpf_skb_store_bytes(skb, l3 + (side == SIDE_DST ? IPV6_DADDR_OFF : IPV6_SADDR_OFF),
					addr, 16, 0))
			return -1;
	} else {
		__be32 from = ((const __u32 *)old_addr)[3], to = ((const __u32 *)addr)[3];

		if (bpf_l4_csum_replace(skb, check_off, from, to, BPF_F_PSEUDO_HDR | l4flags | 4))
			return -1;
		if (bpf_l3_csum_replace(skb, l3 + IPV4_CHECK_OFF, from, to, 4))
			return -1;
		if (bpf_skb_store_bytes(skb, l3 + (side == SIDE_DST ? IPV4_DADDR_OFF : IPV4_SADDR_OFF),
					&to, 4, 0))
			return -1;
	}
	if (bpf_l4_csum_replace(skb, check_off, old_port, port, l4flags | 2))
		return -1;
	if (bpf_skb_store_bytes(skb, l4 + (side == SIDE_DST ? L4_DPORT_OFF : L4_SPORT_OFF), &port, 2, 0))
		return -1;
	return 0;
}

static __always_inline int tc_forward(struct __sk_buff *skb, const struct packet *pkt,
				      const __u8 src[16], const __u8 dst[16], __be16 sport, __be16 dport,
				      __u8 ttl)
{
	struct nexthop nh;
	__u32 mtu_len = 0;

	/* At the ingress hook skb->ifindex is the device the packet came in
	 * on (ingress_ifindex is the same there, but unset in test runs).
	 * tot_len 0: the kernel checks the MTU against the skb itself, which
	 * is right for GSO packets larger than the MTU. */
	if (ttl <= 1 || next_hop(skb, pkt, src, dst, sport, dport, 0, skb->ifindex, &nh))
		goto stack;
	/* The cached path checks the size too; for GSO packets, per segment. */
	if (skb->gso_segs > 1 ? bpf_check_mtu(skb, nh.ifindex, &mtu_len, 0, BPF_MTU_CHK_SEGS) != 0
			      : skb->len - pkt->l3_off > nh.mtu)
		goto stack;
	if (pkt->ipv6) {
		__u8 hl = ttl - 1;

		if (bpf_skb_store_bytes(skb, pkt->l3_off + IPV6_HOPLIMIT_OFF, &hl, 1, 0))
			goto stack;
	} else {
		__u8 nttl = ttl - 1;

		if (bpf_l3_csum_replace(skb, pkt->l3_off + IPV4_CHECK_OFF, bpf_htons((__u16)ttl << 8),
					bpf_htons((__u16)nttl << 8), 2))
			goto stack;
		if (bpf_skb_store_bytes(skb, pkt->l3_off + IPV4_TTL_OFF, &nttl, 1, 0))
			goto stack;
	}
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), nh.dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), nh.smac, ETH_ALEN, 0))
		goto stack;
	count(STAT_FWD_REDIRECT);
	return bpf_redirect(nh.ifindex, 0);
stack:
	count(STAT_FWD_STACK);
	return TC_ACT_UNSPEC;
}

static __always_inline __u8 packet_ttl(void *data, void *data_end, const struct packet *pkt)
{
	if (pkt->ipv6) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);

		if ((void *)(ip6 + 1) > data_end)
			return 0;
		return ip6->hop_limit;
	}
	struct iphdr *ip = data + sizeof(struct ethhdr);

	if ((void *)(ip + 1) > data_end)
		return 0;
	return ip->ttl;
}

SEC("tc")
int tc_client(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct packet pkt;
	struct flow f;
	int ret, new_flow;
	__u8 ttl;

	tc_pull(skb);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ret = parse_packet(data, data_end, &pkt);
	if (ret != PARSE_OK) {
		parse_stat(ret);
		return TC_ACT_UNSPEC;
	}
	ret = decide_client(data, data_end, &pkt, &f, &new_flow);
	if (ret == DECIDE_PASS)
		return TC_ACT_UNSPEC;
	if (ret == DECIDE_DROP)
		return TC_ACT_SHOT;
	ttl = packet_ttl(data, data_end, &pkt);
	count_pool(f.svc_id, f.pool, DIR_TO_BACKEND, skb->len, new_flow);
	if (tc_rewrite(skb, &pkt, SIDE_DST, f.backend.addr, f.backend.port) != 0) {
		count(STAT_PASS_MALFORMED);
		return TC_ACT_UNSPEC;
	}
	return tc_forward(skb, &pkt, pkt.tuple.src, f.backend.addr, pkt.tuple.sport, f.backend.port, ttl);
}

SEC("tc")
int tc_backend(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct packet pkt;
	struct reply *r;
	__u8 vip[16];
	__be16 vip_port;
	int ret;
	__u8 ttl;

	tc_pull(skb);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ret = parse_packet(data, data_end, &pkt);
	if (ret != PARSE_OK) {
		parse_stat(ret);
		return TC_ACT_UNSPEC;
	}
	r = decide_backend(data, data_end, &pkt);
	if (!r)
		return TC_ACT_UNSPEC;
	addr_copy(vip, r->vip);
	vip_port = r->vip_port;
	count_pool(r->svc_id, r->pool, DIR_TO_CLIENT, skb->len, 0);
	ttl = packet_ttl(data, data_end, &pkt);
	if (tc_rewrite(skb, &pkt, SIDE_SRC, vip, vip_port) != 0) {
		count(STAT_PASS_MALFORMED);
		return TC_ACT_UNSPEC;
	}
	return tc_forward(skb, &pkt, vip, pkt.tuple.dst, vip_port, pkt.tuple.dport, ttl);
}
