/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel accept's packets: reading a SYN's options, and turning a
 * received segment into another one (a SYN-ACK, a SYN, a reset, the
 * request's ACK) in place, its checksum moved by the difference.
 * Included by accept.h.
 */
#pragma once

/* What a SYN's or SYN-ACK's options said. */
struct syn_opts {
	__u32 tsval, tsecr;
	__u16 mss;
	__u8 ws;
	__u8 has_ws, sack, ts;
};

struct opt_walk {
	__u8 h[HDR_BUF];
	__u32 i, hlen;
	struct syn_opts o;
};

static long read_option(__u32 step, void *ctx)
{
	struct opt_walk *w = ctx;
	__u32 i = w->i;
	__u8 kind, len;

	if (i >= w->hlen || i >= HDR_MAX)
		return 1;
	kind = w->h[at(i)];
	if (kind == 0)
		return 1;
	if (kind == 1) {
		w->i = i + 1;
		return 0;
	}
	len = w->h[at(i + 1)];
	if (len < 2 || i + len > w->hlen)
		return 1;
	if (kind == 2 && len == 4)
		w->o.mss = (__u16)w->h[at(i + 2)] << 8 | w->h[at(i + 3)];
	else if (kind == 3 && len == 3) {
		w->o.ws = w->h[at(i + 2)];
		w->o.has_ws = 1;
	} else if (kind == 4 && len == 2)
		w->o.sack = 1;
	else if (kind == 8 && len == 10) {
		w->o.tsval = get32(w->h, i + 2);
		w->o.tsecr = get32(w->h, i + 6);
		w->o.ts = 1;
	}
	w->i = i + len;
	return 0;
}

/* Read the TCP header at p->l4 (p->hlen bytes) into w->h and its options
 * into w->o. Returns -1 if the packet is too short. */
static __always_inline int read_header(struct __sk_buff *skb, const struct packet *p, struct opt_walk *w)
{
	__u64 hl = p->hlen;

	/* Two checks the compiler may not fold into one range test, which
	 * the verifier would not follow. */
	if (hl > HDR_MAX)
		return -1;
	asm volatile("" : "+r"(hl));
	if (hl < 20)
		return -1;
	w->hlen = hl;
	if (bpf_skb_load_bytes(skb, p->l4, w->h, hl))
		return -1;
	w->i = 20;
	bpf_loop(40, read_option, w, 0);
	return 0;
}

static __always_inline void put16(__u8 *b, __u32 o, __u16 v)
{
	b[at(o)] = v >> 8;
	b[at(o + 1)] = v;
}

/* An IPv4 header without options (linux/ip.h's has an anonymous union,
 * which bpf2go cannot carry over to Go). */
struct ip4 {
	__u8 vihl, tos;
	__be16 tot_len, id, frag_off;
	__u8 ttl, protocol;
	__be16 check;
	__be32 saddr, daddr;
};

/* An IPv6 header without extension headers. */
struct ip6h {
	__be32 vtcflow;
	__be16 payload_len;
	__u8 nexthdr, hop_limit;
	__u8 saddr[16], daddr[16];
};

/* A segment being built: its IP and TCP headers. */
struct seg {
	struct ip6h ip6; /* when v6 */
	__u8 v6;
	__u8 pad6[3];
	struct ip4 ip;
	__u8 pad[4];
	__u8 h[HDR_BUF];
	__u32 hlen;
};

/* The fixed fields of a TCP header; options are written after. */
static __always_inline void tcp_fields(struct seg *s, __be16 sport, __be16 dport, __u32 seq, __u32 ack, __u8 flags,
				       __u16 win, __u32 hlen)
{
	__builtin_memcpy(&s->h[0], &sport, 2);
	__builtin_memcpy(&s->h[2], &dport, 2);
	put32(s->h, 4, seq);
	put32(s->h, 8, ack);
	s->h[12] = (hlen / 4) << 4;
	s->h[13] = flags;
	put16(s->h, 14, win);
	s->h[18] = 0;
	s->h[19] = 0;
	s->hlen = hlen;
}

/* The timestamp option at o (NOP NOP TS: 12 bytes). */
static __always_inline void ts_option(struct seg *s, __u32 o, __u32 tsval, __u32 tsecr)
{
	s->h[at(o)] = 1;
	s->h[at(o + 1)] = 1;
	s->h[at(o + 2)] = 8;
	s->h[at(o + 3)] = 10;
	put32(s->h, o + 4, tsval);
	put32(s->h, o + 8, tsecr);
}

/* A SYN's or SYN-ACK's options (20 bytes at 20): MSS, SACK permitted
 * (or two NOPs), timestamps, and the window shift (or four NOPs). */
static __always_inline void syn_options(struct seg *s, __u16 mss, __u8 sack, __u32 tsval, __u32 tsecr, __u8 has_ws,
					__u8 ws)
{
	s->h[20] = 2;
	s->h[21] = 4;
	put16(s->h, 22, mss);
	s->h[24] = sack ? 4 : 1;
	s->h[25] = sack ? 2 : 1;
	s->h[26] = 8;
	s->h[27] = 10;
	put32(s->h, 28, tsval);
	put32(s->h, 32, tsecr);
	s->h[36] = 1;
	s->h[37] = has_ws ? 3 : 1;
	s->h[38] = has_ws ? 3 : 1;
	s->h[39] = has_ws ? ws : 1;
}

static __always_inline __u16 fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* The IPv4 header of a new segment from saddr to daddr (16-byte,
 * IPv4-mapped) carrying a TCP segment of tcp_len bytes. */
static __always_inline void ip_fields(struct seg *s, const __u8 *saddr, const __u8 *daddr, __u32 tcp_len)
{
	__s64 sum;

	s->ip.vihl = 0x45;
	s->ip.tos = 0;
	s->ip.tot_len = bpf_htons(20 + tcp_len);
	s->ip.id = 0;
	s->ip.frag_off = bpf_htons(0x4000); /* DF */
	s->ip.ttl = 64;
	s->ip.protocol = IPPROTO_TCP;
	s->ip.check = 0;
	__builtin_memcpy(&s->ip.saddr, saddr + 12, 4);
	__builtin_memcpy(&s->ip.daddr, daddr + 12, 4);
	sum = bpf_csum_diff(0, 0, (__be32 *)&s->ip, 20, 0);
	s->ip.check = sum < 0 ? 0 : fold((__u32)sum);
}

/* The IP header of a new segment from saddr to daddr (16 bytes each;
 * IPv4-mapped unless v6) carrying a TCP segment of tcp_len bytes. */
static __always_inline void l3_fields(struct seg *s, __u8 v6, const __u8 *saddr, const __u8 *daddr, __u32 tcp_len)
{
	s->v6 = v6;
	if (!v6) {
		ip_fields(s, saddr, daddr, tcp_len);
		return;
	}
	s->ip6.vtcflow = bpf_htonl(6 << 28);
	s->ip6.payload_len = bpf_htons(tcp_len);
	s->ip6.nexthdr = IPPROTO_TCP;
	s->ip6.hop_limit = 64;
	__builtin_memcpy(s->ip6.saddr, saddr, 16);
	__builtin_memcpy(s->ip6.daddr, daddr, 16);
}

/* The TCP pseudo-header's fields a checksum covers: IPv4's, and IPv6's. */
struct pseudo {
	__be32 saddr, daddr;
	__u8 zero, proto;
	__be16 len;
};

struct pseudo6 {
	__u8 saddr[16], daddr[16];
	__be32 len;
	__u8 zero[3], proto;
};

/* The checksum difference between the old and the new pseudo-header. */
static __always_inline __s64 pseudo_diff(const struct packet *p, const struct seg *s, __u32 new_len)
{
	__u32 old_len = p->l3_len - (p->l4 - p->l3);

	if (s->v6) {
		struct pseudo6 po = {}, pn = {};

		__builtin_memcpy(po.saddr, p->key.saddr, 16);
		__builtin_memcpy(po.daddr, p->key.daddr, 16);
		po.len = bpf_htonl(old_len);
		po.proto = IPPROTO_TCP;
		__builtin_memcpy(pn.saddr, s->ip6.saddr, 16);
		__builtin_memcpy(pn.daddr, s->ip6.daddr, 16);
		pn.len = bpf_htonl(new_len);
		pn.proto = IPPROTO_TCP;
		return bpf_csum_diff((__be32 *)&po, sizeof(po), (__be32 *)&pn, sizeof(pn), 0);
	}
	{
		struct pseudo po = {}, pn = {};

		__builtin_memcpy(&po.saddr, &p->key.saddr[12], 4);
		__builtin_memcpy(&po.daddr, &p->key.daddr[12], 4);
		po.proto = IPPROTO_TCP;
		po.len = bpf_htons(old_len);
		pn.saddr = s->ip.saddr;
		pn.daddr = s->ip.daddr;
		pn.proto = IPPROTO_TCP;
		pn.len = bpf_htons(new_len);
		return bpf_csum_diff((__be32 *)&po, sizeof(po), (__be32 *)&pn, sizeof(pn), 0);
	}
}

/* The checksum sum of n bytes of b (a multiple of 4, zero beyond the
 * data), added to seed: bpf_csum_diff takes 512 bytes at most a call. */
static __always_inline __s64 sum_bytes(const __u8 *b, __u32 n, __s64 seed, int remove)
{
	for (int c = 0; c < FIRST_MAX / 512; c++) {
		__u32 off = c * 512, k;

		if (seed < 0 || n <= off)
			break;
		k = n - off;
		asm volatile("" : "+r"(k)); /* the clamp where the verifier sees it */
		if (k > 512)
			k = 512;
		k &= 0x3fc;
		if (remove)
			seed = bpf_csum_diff((__be32 *)(b + off), k, 0, 0, (__u32)seed);
		else
			seed = bpf_csum_diff(0, 0, (__be32 *)(b + off), k, (__u32)seed);
	}
	return seed;
}

/* Turn the packet's TCP segment (header old, p->hlen bytes, and payload
 * whose sum is in paysum, removed) into s's (new IP header, new TCP
 * header, then plen bytes of pay, if any): the length changes, the
 * headers are written, and the TCP checksum is moved by the difference,
 * through the helpers that know how the skb carries it (complete, or
 * partial: only the pseudo-header then). */
static __always_inline int resegment(struct __sk_buff *skb, const struct packet *p, const __u8 *old, struct seg *s,
				     __s64 paysum, const struct first *pay, __u32 plen)
{
	__u32 old_hlen = at(p->hlen), new_hlen = at(s->hlen), l3 = p->ipv6 ? 40 : 20;
	__s64 diff, pdiff;

	if (p->ipv6 != s->v6 || old_hlen < 20 || new_hlen < 20 || plen > FIRST_PAYLOAD_MAX)
		return -1;
	/* The checksum field is the old one in both: its change is the
	 * helpers' to make. */
	s->h[16] = old[16];
	s->h[17] = old[17];
	diff = paysum;
	if (plen && pay)
		diff = sum_bytes(pay->data, (plen + 3) & ~3, diff, 0);
	if (diff < 0)
		return -1;
	diff = bpf_csum_diff((__be32 *)old, old_hlen, (__be32 *)s->h, new_hlen, (__u32)diff);
	pdiff = pseudo_diff(p, s, new_hlen + plen);
	if (diff < 0 || pdiff < 0)
		return -1;
	if (p->l4 != p->l3 + l3 || bpf_skb_change_tail(skb, p->l4 + new_hlen + plen, 0))
		return -1;
	if ((s->v6 ? bpf_skb_store_bytes(skb, p->l3, &s->ip6, 40, 0) : bpf_skb_store_bytes(skb, p->l3, &s->ip, 20, 0)) ||
	    bpf_skb_store_bytes(skb, p->l4, s->h, new_hlen, 0))
		return -1;
	if (plen && pay && bpf_skb_store_bytes(skb, p->l4 + new_hlen, pay->data, plen, 0))
		return -1;
	if (bpf_l4_csum_replace(skb, p->l4 + 16, 0, (__u32)diff, 0) ||
	    bpf_l4_csum_replace(skb, p->l4 + 16, 0, (__u32)pdiff, BPF_F_PSEUDO_HDR))
		return -1;
	return 0;
}

/* Send the packet back out of the interface it came in by, to its
 * sender: the Ethernet addresses swapped. */
static __always_inline int bounce(struct __sk_buff *skb)
{
	__u8 mac[12], swapped[12];

	if (bpf_skb_load_bytes(skb, 0, mac, 12))
		return TC_ACT_SHOT;
	__builtin_memcpy(swapped, mac + 6, 6);
	__builtin_memcpy(swapped + 6, mac, 6);
	if (bpf_skb_store_bytes(skb, 0, swapped, 12, 0))
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

