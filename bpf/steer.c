//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Graylane's steering programs.
 *
 *   xdp_client / tc_client   on interfaces facing clients: packets to a
 *                            service are DNATed to a backend of the pool
 *                            their key falls in, and forwarded; those of an
 *                            L7 service's connections pass untouched (the
 *                            agent accepts them: bpf/l7, SVC_F_L7).
 *   xdp_backend / tc_backend on interfaces facing backends: replies of
 *                            steered flows get the VIP back as source.
 *   sweep_timeouts /         never attached: the agent runs them to find
 *   sweep_wheel              the requests that timed out (sweep.h).
 *   explain                  never attached: the agent runs it to say why
 *                            a client's new flows go where they go
 *                            (explain.h).
 *
 * Verdicts: XDP_PASS / TC_ACT_UNSPEC for anything that is not ours or that
 * the stack must finish (no neighbour yet, MTU, TTL), and for an L7
 * service's connections (TC_ACT_UNSPEC, not TC_ACT_OK: in a TCX chain it
 * runs the next program, l7_assign, which TC_ACT_OK would skip); XDP_REDIRECT /
 * TC_ACT_REDIRECT when we forward; XDP_DROP / TC_ACT_SHOT only for a packet
 * to a service none of whose pools has a backend.
 *
 * XDP and TC differ only in how checksums are fixed (XDP fixes them
 * itself; TC does where it can read the skb's checksum state, and asks the
 * kernel otherwise, see tc_rewrite) and in their return codes.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/maps.h"
#include "include/parse.h"
#include "include/csum.h"
#include "include/track.h"
#include "include/steer.h"
#include "include/mirror.h"
#include "include/sweep.h"
#include "include/explain.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

/* Offsets of the fields we rewrite. */
#define TCP_CHECK_OFF offsetof(struct tcphdr, check)
#define UDP_CHECK_OFF offsetof(struct udphdr, check)

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
	case PARSE_ICMP:
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
	struct bpf_fib_lookup fib;
	/* jiffies: the verifier inlines bpf_jiffies64 as one load, where a
	 * clock helper is a call (here ~35 ns, a third of the bare XDP_PASS:
	 * the kernel's return thunks make every call dear). */
	__u64 now = bpf_jiffies64();
	const __u32 *a = (const __u32 *)dst;
	/* Fibonacci hashing of the address's last word and the interface. */
	__u32 idx = ((a[3] ^ a[1] ^ ifindex) * 0x9E3779B1u) >> (32 - 12);
	struct nh_slot *slot;
	__u32 mtu = 0;

	_Static_assert(NH_SLOTS == 1 << 12, "the hash yields 12 bits");
	slot = bpf_map_lookup_elem(&nexthops, &idx);
	if (!slot)
		return -1;
	if (slot->key.ifindex == ifindex && addr_equal(slot->key.addr, dst) && slot->nh.gen == route_gen &&
	    now < slot->nh.expires) {
		*nh = slot->nh;
		return 0;
	}
	count(STAT_NEXTHOP_MISS);
	if (fib_route(ctx, pkt, src, dst, sport, dport, tot_len, ifindex, &fib) != BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	/* The device MTU, for the cached path's size check. */
	if (bpf_check_mtu(ctx, fib.ifindex, &mtu, 0, 0) < 0)
		return -1;
	nh->expires = now + NEXTHOP_TTL_NS / jiffy_ns;
	nh->gen = route_gen;
	nh->ifindex = fib.ifindex;
	nh->mtu = mtu;
	__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
	addr_copy(slot->key.addr, dst);
	slot->key.ifindex = ifindex;
	slot->nh = *nh;
	return 0;
}

/* --------------------------------------------- shared by XDP and TC */

/* Who fixes the L4 checksum of a rewrite, and how. */
enum l4_csum {
	L4_CSUM_FIX = 0,    /* we do: the field holds the complete checksum */
	L4_CSUM_DONE = 1,   /* the kernel did already (its helpers) */
	L4_CSUM_PSEUDO = 2, /* we do, for a partial checksum: the field holds
			     * only the pseudo header's sum, which the address
			     * is in and the port is not */
};

/* Rewrite one end (address and port) of the packet in place, fixing the
 * IPv4 header checksum, and the L4 checksum as l4csum says. */
static __always_inline int rewrite_end(void *data, void *data_end, const struct packet *pkt,
				       enum side side, const __u8 addr[16], __be16 port,
				       enum l4_csum l4csum)
{
	__u32 l4 = pkt->l4_off;
	__u32 diff, pseudo;

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
	pseudo = diff;

	/* The port is covered by the L4 checksum only; the address by both,
	 * through the pseudo header. Ports sit at the same offsets in TCP and
	 * UDP; the checksum does not. */
	/* Bound the offset on the very register that becomes the pointer. */
	asm volatile("" : "+r"(l4));
	if (l4 > 255)
		return -1;
	if (pkt->tuple.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = data + l4;
		__be16 *portp;

		/* One pointer for the check and the writes: the verifier does
		 * not know two computations of data + l4 are equal. */
		asm volatile("" : "+r"(tcp));
		if ((void *)(tcp + 1) > data_end)
			return -1;
		portp = side == SIDE_DST ? &tcp->dest : &tcp->source;
		diff = csum_add(diff, csum_add(~(__u32)*portp, (__u32)port));
		*portp = port;
		if (l4csum == L4_CSUM_FIX)
			csum_apply(&tcp->check, diff);
		else if (l4csum == L4_CSUM_PSEUDO)
			csum_apply_partial(&tcp->check, pseudo);
	} else {
		struct udphdr *udp = data + l4;
		__be16 *portp;

		asm volatile("" : "+r"(udp));
		if ((void *)(udp + 1) > data_end)
			return -1;
		portp = side == SIDE_DST ? &udp->dest : &udp->source;
		diff = csum_add(diff, csum_add(~(__u32)*portp, (__u32)port));
		*portp = port;
		if (l4csum != L4_CSUM_DONE)
			csum_apply_udp(&udp->check, l4csum == L4_CSUM_PSEUDO ? pseudo : diff,
				       l4csum == L4_CSUM_PSEUDO);
	}
	return 0;
}

/* Act as the router: decrement the TTL (hop limit) and address the frame
 * to the next hop. The caller checked the TTL is > 1. */
static __always_inline int route_frame(void *data, void *data_end, const struct packet *pkt,
				       const struct nexthop *nh)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	if (pkt->ipv6) {
		struct ipv6hdr *ip6 = data + sizeof(*eth);

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		ip6->hop_limit--;
	} else {
		struct iphdr *ip = data + sizeof(*eth);

		if ((void *)(ip + 1) > data_end)
			return -1;
		/* TTL is the high byte of its 16-bit word (TTL, protocol). */
		csum_apply(&ip->check, csum_add(~(__u32)bpf_htons(ip->ttl << 8),
						 (__u32)bpf_htons((ip->ttl - 1) << 8)));
		ip->ttl--;
	}
	__builtin_memcpy(eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->smac, ETH_ALEN);
	return 0;
}

/* The IP header's TTL (hop limit) and total length (L3 bytes). */
static __always_inline int ip_ttl_len(void *data, void *data_end, const struct packet *pkt, __u8 *ttl,
				      __u16 *tot_len)
{
	if (pkt->ipv6) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		*ttl = ip6->hop_limit;
		*tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		return 0;
	}
	struct iphdr *ip = data + sizeof(struct ethhdr);

	if ((void *)(ip + 1) > data_end)
		return -1;
	*ttl = ip->ttl;
	*tot_len = bpf_ntohs(ip->tot_len);
	return 0;
}

/* ---------------------------------------------------------------- XDP */

/* Forward a rewritten frame ourselves when the next hop is known;
 * otherwise let the stack finish (resolve the neighbour, fragment or send
 * an ICMP error), which then also decrements the TTL. */
static __always_inline int xdp_forward(struct xdp_md *ctx, const struct packet *pkt,
				       const __u8 src[16], const __u8 dst[16], __be16 sport,
				       __be16 dport)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 ifindex = ctx->ingress_ifindex;
	struct nexthop nh;
	__u16 tot_len;
	__u8 ttl;

	/* Loaded here, now: under register pressure the compiler may keep
	 * the field's address (ctx + 12) on the stack and load through it
	 * later, which the verifier refuses. */
	asm volatile("" : "+r"(ifindex));
	if (ip_ttl_len(data, data_end, pkt, &ttl, &tot_len) || ttl <= 1 ||
	    next_hop(ctx, pkt, src, dst, sport, dport, tot_len, ifindex, &nh) ||
	    tot_len > nh.mtu || route_frame(data, data_end, pkt, &nh))
		goto stack;
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
	struct flow *live;
	struct flow_key fk;
	struct packet pkt = {};
	struct flow f;
	int ret, new_flow;

	ret = parse_packet(data, data_end, &pkt);
	if (ret != PARSE_OK) {
		parse_stat(ret);
		return XDP_PASS;
	}
	ret = decide_client(data, data_end, &pkt, &f, &live, &new_flow, &fk);
	if (ret == DECIDE_PASS)
		return XDP_PASS;
	if (ret == DECIDE_DROP)
		return XDP_DROP;
	/* Before any tracking or counting: the tc program does them. A new
	 * flow it will see as established is counted here. */
	if (mirror_handoff(ctx, f.flags, f.svc_id)) {
		if (new_flow && !(pkt.tuple.proto == IPPROTO_TCP && (pkt.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN))
			count_new_flow(f.svc_id, f.pool);
		return XDP_PASS;
	}
	if (live) {
		track_client(live, &pkt, &fk);
		track_close(live, &fk, &pkt, FLOW_F_FIN_CLIENT);
	}
	count_pool(f.svc_id, f.pool, DIR_TO_BACKEND, data_end - data, new_flow);
	if (f.flags & (FLOW_F_MIRROR | FLOW_F_CAPTURE)) {
		mirror_xdp(ctx, &fk, f.flags, f.svc_id, f.pool, DIR_TO_BACKEND);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	}
	if (rewrite_end(data, data_end, &pkt, SIDE_DST, f.backend.addr, f.backend.port, L4_CSUM_FIX) != 0) {
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
	struct packet pkt = {};
	struct flow_key fk;
	struct flow *live;
	struct reply *r;
	__u8 vip[16];
	__be16 vip_port;
	__u8 mflags;
	int ret;

	ret = parse_packet(data, data_end, &pkt);
	if (ret != PARSE_OK) {
		if (ret == PARSE_ICMP)
			track_icmp(data, data_end, &pkt);
		parse_stat(ret);
		return XDP_PASS;
	}
	r = decide_backend(data, data_end, &pkt, &live, &fk);
	if (!r)
		return XDP_PASS;
	mflags = live->flags;
	if (mirror_handoff(ctx, mflags, r->svc_id))
		return XDP_PASS;
	track_backend(data, data_end, live, &pkt);
	track_close(live, &fk, &pkt, FLOW_F_FIN_BACKEND);
	addr_copy(vip, r->vip);
	vip_port = r->vip_port;
	count_pool(r->svc_id, r->pool, DIR_TO_CLIENT, data_end - data, 0);
	if (rewrite_end(data, data_end, &pkt, SIDE_SRC, vip, vip_port, L4_CSUM_FIX) != 0) {
		count(STAT_PASS_MALFORMED);
		return XDP_PASS;
	}
	/* Copied after the rewrite: the client's view has the VIP as source. */
	if (mflags & (FLOW_F_MIRROR | FLOW_F_CAPTURE))
		mirror_xdp(ctx, &fk, mflags, r->svc_id, r->pool, DIR_TO_CLIENT);
	return xdp_forward(ctx, &pkt, vip, pkt.tuple.dst, vip_port, pkt.tuple.dport);
}

/* ----------------------------------------------------------------- TC */

/* Headers we may read: Ethernet + IPv6 + extension headers + UDP + GTP-U
 * with extensions + an inner IPv6 header fit in this many bytes. */
#define TC_PULL_LEN 256

/* Make the first n bytes of the packet (all of it, if shorter) linear,
 * unless they are. Returns 1 if it pulled (packet pointers are stale). */
static __always_inline int tc_pull(struct __sk_buff *skb, __u32 n)
{
	__u32 want = skb->len < n ? skb->len : n;

	if ((long)skb->data + want <= (long)skb->data_end)
		return 0;
	bpf_skb_pull_data(skb, want);
	return 1;
}

/* Parse the packet, making linear what the programs read. The stack hands
 * TCP segments over with their headers linear and the payload in page
 * fragments: pulling TC_PULL_LEN bytes then would copy payload out of the
 * fragments of every data segment, reallocating the head when it has no
 * room (it has none past the headers of a locally sent segment). So pull
 * only when the headers are not all linear, and for UDP and ICMP, whose
 * later parses read past the L4 header (GTP-U and its inner header, the
 * packet inside an ICMP error). */
static __always_inline int tc_parse(struct __sk_buff *skb, struct packet *pkt)
{
	int ret = parse_packet((void *)(long)skb->data, (void *)(long)skb->data_end, pkt);

	if (ret == PARSE_OK && pkt->tuple.proto == IPPROTO_TCP)
		return ret;
	if (ret != PARSE_OK && ret != PARSE_MALFORMED && ret != PARSE_ICMP)
		return ret; /* not ours whatever the rest holds */
	if (!tc_pull(skb, TC_PULL_LEN))
		return ret; /* linear already: the parse saw all it can */
	return parse_packet((void *)(long)skb->data, (void *)(long)skb->data_end, pkt);
}

/*
 * How the skb's L4 checksum stands (its ip_summed), read from the kernel's
 * sk_buff: bpf_cast_to_kern_ctx (Linux 6.2) turns the context into it, and
 * the agent finds where ip_summed lies in the kernel's BTF and sets
 * skb_csum_known, ip_summed_off and ip_summed_shift at load. Without them
 * (an older kernel, no BTF) the programs cannot tell, and the kernel's
 * helpers fix every checksum.
 */
enum ip_summed {
	SUMMED_NONE = 0,        /* CHECKSUM_NONE: the field is complete */
	SUMMED_UNNECESSARY = 1, /* CHECKSUM_UNNECESSARY: complete, verified */
	SUMMED_COMPLETE = 2,    /* CHECKSUM_COMPLETE: complete, and skb->csum
				 * holds the sum of the packet */
	SUMMED_PARTIAL = 3,     /* CHECKSUM_PARTIAL: the field is the pseudo
				 * header's sum; offload finishes it */
	SUMMED_UNKNOWN = 4,
};

const volatile __u8 skb_csum_known = 0;
const volatile __u32 ip_summed_off = 0;
const volatile __u8 ip_summed_shift = 0;

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

static __always_inline int skb_ip_summed(struct __sk_buff *skb)
{
	__u8 *kskb;

	if (!skb_csum_known)
		return SUMMED_UNKNOWN;
	kskb = bpf_cast_to_kern_ctx(skb);
	return (kskb[ip_summed_off] >> ip_summed_shift) & 3;
}

/*
 * Rewrite one end of the packet. Where the skb's checksum state is known
 * the programs fix the L4 checksum themselves, as XDP does: fully when the
 * field is complete, the pseudo header's share when it is partial. The
 * kernel's helpers (two calls, address and port: they differ for a partial
 * checksum) cost about as much as the rest of an established packet's
 * path, and remain for an unknown state and for CHECKSUM_COMPLETE over
 * IPv4, where skb->csum must follow the L4 field's change, which only a
 * helper can write. Over IPv6 the address and the L4 field change by
 * opposite amounts, so skb->csum stays as it is; the helper would change
 * it (before Linux 6.16 and its BPF_F_IPV6, which older kernels refuse).
 */
static __always_inline int tc_rewrite(struct __sk_buff *skb, const struct packet *pkt, enum side side,
				      const __u8 addr[16], __be16 port)
{
	__u32 check_off = pkt->l4_off + (pkt->tuple.proto == IPPROTO_TCP ? TCP_CHECK_OFF : UDP_CHECK_OFF);
	__u64 l4flags = pkt->tuple.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	const __u8 *old_addr = side == SIDE_DST ? pkt->tuple.dst : pkt->tuple.src;
	__be16 old_port = side == SIDE_DST ? pkt->tuple.dport : pkt->tuple.sport;
	int summed = skb_ip_summed(skb);
	enum l4_csum how = L4_CSUM_DONE;
	__u32 diff;

	if (summed == SUMMED_NONE || summed == SUMMED_UNNECESSARY || (summed == SUMMED_COMPLETE && pkt->ipv6))
		how = L4_CSUM_FIX;
	else if (summed == SUMMED_PARTIAL)
		how = L4_CSUM_PSEUDO;
	if (how == L4_CSUM_DONE) {
		count(STAT_CSUM_HELPER);
		if (pkt->ipv6)
			diff = csum_diff16((const __u32 *)old_addr, (const __u32 *)addr);
		else
			diff = csum_add(~((const __u32 *)old_addr)[3], ((const __u32 *)addr)[3]);
		if (bpf_l4_csum_replace(skb, check_off, 0, diff, BPF_F_PSEUDO_HDR | l4flags))
			return -1;
		if (bpf_l4_csum_replace(skb, check_off, old_port, port, l4flags | 2))
			return -1;
	}
	/* The helpers may have moved the data: take the pointers anew. */
	return rewrite_end((void *)(long)skb->data, (void *)(long)skb->data_end, pkt, side, addr, port, how);
}

static __always_inline int tc_forward(struct __sk_buff *skb, const struct packet *pkt,
				      const __u8 src[16], const __u8 dst[16], __be16 sport, __be16 dport)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct nexthop nh;
	__u32 mtu_len = 0;
	__u16 tot_len;
	__u8 ttl;

	/* At the ingress hook skb->ifindex is the device the packet came in
	 * on (ingress_ifindex is the same there, but unset in test runs).
	 * tot_len 0: the kernel checks the MTU against the skb itself, which
	 * is right for GSO packets larger than the MTU. */
	if (ip_ttl_len(data, data_end, pkt, &ttl, &tot_len) || ttl <= 1 ||
	    next_hop(skb, pkt, src, dst, sport, dport, 0, skb->ifindex, &nh))
		goto stack;
	/* The cached path checks the size too; for GSO packets, per segment. */
	if (skb->gso_segs > 1 ? bpf_check_mtu(skb, nh.ifindex, &mtu_len, 0, BPF_MTU_CHK_SEGS) != 0
			      : tot_len > nh.mtu)
		goto stack;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (route_frame(data, data_end, pkt, &nh))
		goto stack;
	count(STAT_FWD_REDIRECT);
	return bpf_redirect(nh.ifindex, 0);
stack:
	count(STAT_FWD_STACK);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_client(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct flow *live;
	struct flow_key fk;
	/* Zeroed, as in every program here: the compiler keeps the packet's
	 * fields in registers, and one that a path never sets (a malformed
	 * header returns early) would otherwise be an uninitialized register
	 * that it may still copy across a helper call, which the verifier
	 * refuses. */
	struct packet pkt = {};
	struct flow f;
	int ret, new_flow;

	ret = tc_parse(skb, &pkt);
	if (ret != PARSE_OK) {
		parse_stat(ret);
		return TC_ACT_UNSPEC;
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ret = decide_client(data, data_end, &pkt, &f, &live, &new_flow, &fk);
	if (ret == DECIDE_PASS)
		return TC_ACT_UNSPEC;
	if (ret == DECIDE_DROP)
		return TC_ACT_SHOT;
	if (live) {
		track_client(live, &pkt, &fk);
		track_close(live, &fk, &pkt, FLOW_F_FIN_CLIENT);
	}
	count_pool(f.svc_id, f.pool, DIR_TO_BACKEND, skb->len, new_flow);
	/* Copied before the rewrite: the client's view has the VIP as
	 * destination. (tc_rewrite takes the packet pointers anew.) */
	if (f.flags & (FLOW_F_MIRROR | FLOW_F_CAPTURE))
		mirror_skb(skb, &fk, f.flags, f.svc_id, f.pool, DIR_TO_BACKEND);
	if (tc_rewrite(skb, &pkt, SIDE_DST, f.backend.addr, f.backend.port) != 0) {
		count(STAT_PASS_MALFORMED);
		return TC_ACT_UNSPEC;
	}
	return tc_forward(skb, &pkt, pkt.tuple.src, f.backend.addr, pkt.tuple.sport, f.backend.port);
}

SEC("tc")
int tc_backend(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct packet pkt = {};
	struct flow_key fk;
	struct flow *live;
	struct reply *r;
	__u8 vip[16];
	__be16 vip_port;
	__u8 mflags;
	int ret;

	ret = tc_parse(skb, &pkt);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (ret != PARSE_OK) {
		if (ret == PARSE_ICMP)
			track_icmp(data, data_end, &pkt);
		parse_stat(ret);
		return TC_ACT_UNSPEC;
	}
	r = decide_backend(data, data_end, &pkt, &live, &fk);
	if (!r)
		return TC_ACT_UNSPEC;
	/* The first response segment of a request: tracking reads the start
	 * of its payload (an HTTP status line), which may sit in a fragment. */
	if (tracking && pkt.payload_len && live->state == FLOW_AWAITING) {
		tc_pull(skb, pkt.payload_off + HTTP_STATUS_PEEK);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	mflags = live->flags;
	track_backend(data, data_end, live, &pkt);
	track_close(live, &fk, &pkt, FLOW_F_FIN_BACKEND);
	addr_copy(vip, r->vip);
	vip_port = r->vip_port;
	count_pool(r->svc_id, r->pool, DIR_TO_CLIENT, skb->len, 0);
	if (tc_rewrite(skb, &pkt, SIDE_SRC, vip, vip_port) != 0) {
		count(STAT_PASS_MALFORMED);
		return TC_ACT_UNSPEC;
	}
	/* Copied after the rewrite (tc_forward takes the pointers anew). */
	if (mflags & (FLOW_F_MIRROR | FLOW_F_CAPTURE))
		mirror_skb(skb, &fk, mflags, r->svc_id, r->pool, DIR_TO_CLIENT);
	return tc_forward(skb, &pkt, vip, pkt.tuple.dst, vip_port, pkt.tuple.dport);
}

/*
 * On a mirror interface's egress: cut an interface copy (mirror_skb marks
 * it) to its service's snaplen, and a copy longer than the interface's
 * MTU that is not a GSO packet (one the stack cannot segment) to the MTU,
 * so that the device sends it instead of dropping it unseen; both counted
 * (STAT_MIRROR_TRUNCATED). GSO copies are segmented by the device or the
 * stack on the way out (counted as copy_gso). Other packets pass as they
 * are.
 */
SEC("tc")
int tc_mirror_out(struct __sk_buff *skb)
{
	__u32 id, keep;
	struct mirror *m;

	if ((skb->mark & MIRROR_MARK_MASK) != MIRROR_MARK)
		return TC_ACT_UNSPEC;
	id = skb->mark & ~MIRROR_MARK_MASK;
	skb->mark = 0;
	m = bpf_map_lookup_elem(&mirrors, &id);
	if (!m)
		return TC_ACT_UNSPEC;
	keep = m->snaplen;
	if (skb->gso_segs <= 1 && m->mtu && skb->len > m->mtu + ETH_HLEN && (!keep || keep > m->mtu + ETH_HLEN))
		keep = m->mtu + ETH_HLEN;
	if (keep && skb->len > keep) {
		if (bpf_skb_change_tail(skb, keep, 0) == 0)
			count(STAT_MIRROR_TRUNCATED);
	}
	return TC_ACT_UNSPEC;
}
