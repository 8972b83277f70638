//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The stitch: two TCP connections the gateway terminates (the client's to
 * the gateway, S1, and the gateway's to a backend, S2) joined into one in
 * the data path, so that after the first request no byte goes through a
 * socket of the gateway. The agent stitches a pair at a quiet moment
 * (nothing unread, unacknowledged or unsent on either socket), reading
 * each socket's next sequence numbers in repair mode (pkg/stitch), and
 * keeps both sockets frozen (silent) until the connection ends.
 *
 * At that moment S1 has sent up to S1.snd_nxt and received up to
 * S1.rcv_nxt, and S2 likewise; the client's byte S1.rcv_nxt + i is the
 * backend's S2.snd_nxt + i, and so on. So a client packet becomes a packet
 * of S2 by adding S2.snd_nxt - S1.rcv_nxt to its sequence number and
 * S2.rcv_nxt - S1.snd_nxt to its acknowledgement (and SACK edges), and a
 * backend packet the other way round; its addresses and ports become S2's
 * (S1's), and its window is rescaled from the sender's shift to the one
 * the receiver applies. TCP timestamps: each end checks that TSvals do
 * not go back (PAWS) against the last one it saw from the gateway's
 * socket, so a direction's TSvals are moved, from its first packet on, to
 * start just above that socket's clock (ts_base); TSecr echoes the other
 * direction's moved TSvals and is moved back, or is 0 (no echo: RTT is
 * not sampled) until the other direction has learned its delta.
 *
 *   stitch_tc   tc ingress (TCX, first in the chain) on the interfaces of
 *               clients and backends: a TCP packet whose tuple is in
 *               stitch_keys is rewritten and redirected to the interface
 *               the FIB names for its new destination; anything else goes
 *               on (TC_ACT_UNSPEC) to the next program and the stack.
 *
 * Before a pair is live it is held (struct pair's hold): while the agent
 * drains the sockets, no new data reaches them, and the acknowledgements
 * the peers send (alone or on the data dropped) are recorded, so the agent
 * knows when each peer has everything the gateway's socket sent it.
 *
 * Redirected, not passed to the stack: a rewritten client packet carries
 * the gateway's own address as its source, which the stack's input route
 * check refuses as a martian.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "stitch.h"
#include "signals.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct tuple);
	__type(value, struct ref);
	__uint(max_entries, 131072); /* the loader sets it: 2 a pair */
} stitch_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pair);
	__uint(max_entries, 65536); /* the loader sets it */
} stitch_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, enum stat);
	__type(value, __u64);
	__uint(max_entries, STAT_COUNT);
} stitch_stats SEC(".maps");

/* Held data segments for the agent to send on (struct held_packet). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} stitch_held SEC(".maps");

static __always_inline void count(enum stat s)
{
	__u64 *v = bpf_map_lookup_elem(&stitch_stats, &s);

	if (v)
		*v += 1;
}

/* A TCP header with all its options: 60 bytes at most; 64 so that an
 * offset masked with 63 is always inside. */
#define HDR_MAX 60
#define HDR_BUF 64

struct packet {
	__u32 l3;      /* offset of the IP header */
	__u32 l4;      /* offset of the TCP header */
	__u32 hlen;    /* TCP header length, options included */
	__u32 l3_len;  /* IP packet length: header and payload */
	__u8 ipv6;
	/* Aligned: zeroed and filled with the addresses 4 and 8 bytes at a
	 * time, not 2. */
	struct tuple key __attribute__((aligned(8)));
};

/* The len bytes at off: read in place when they are in the packet's
 * linear part (every packet the stitch leaves alone pays for this, so no
 * helper call), else copied into buf (a segment of a local socket or a
 * non-linear skb may have only part of its headers there). NULL if the
 * packet is shorter. */
static __always_inline const void *hdr(struct __sk_buff *skb, __u32 off, void *buf, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	/* The verifier needs the offset's bounds, which it may lose through
	 * the stack (struct packet); the compiler, knowing them, would drop
	 * the check: the barrier hides the value. The headers read here
	 * start well within the first 256 bytes. */
	asm volatile("" : "+r"(off));
	if (off < 256 && data + off + len <= end)
		return data + off;
	if (bpf_skb_load_bytes(skb, off, buf, len))
		return NULL;
	return buf;
}

/* Read the IP and TCP headers' offsets and the tuple. Returns 0 for a TCP
 * packet, -1 for anything else (left alone). The TCP header's length is
 * not read: only a stitched tuple's packet needs it (header_len). */
static __always_inline int parse(struct __sk_buff *skb, struct packet *p)
{
	const __be16 *ports;
	__be16 pbuf[2];

	p->l3 = sizeof(struct ethhdr);
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		const struct iphdr *ip;
		struct iphdr buf;

		ip = hdr(skb, p->l3, &buf, sizeof(buf));
		/* The protocol first: what is not TCP leaves before anything
		 * is copied. */
		if (!ip || ip->protocol != IPPROTO_TCP || (ip->frag_off & bpf_htons(0x3fff)) || ip->ihl < 5)
			return -1;
		p->l4 = p->l3 + ip->ihl * 4;
		p->l3_len = bpf_ntohs(ip->tot_len);
		p->key.saddr[10] = 0xff;
		p->key.saddr[11] = 0xff;
		__builtin_memcpy(&p->key.saddr[12], &ip->saddr, 4);
		p->key.daddr[10] = 0xff;
		p->key.daddr[11] = 0xff;
		__builtin_memcpy(&p->key.daddr[12], &ip->daddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		const struct ipv6hdr *ip6;
		struct ipv6hdr buf;

		/* Extension headers: left alone (the gateway's own TCP
		 * sockets' peers do not send them). */
		ip6 = hdr(skb, p->l3, &buf, sizeof(buf));
		if (!ip6 || ip6->nexthdr != IPPROTO_TCP)
			return -1;
		p->ipv6 = 1;
		p->l4 = p->l3 + sizeof(buf);
		p->l3_len = sizeof(buf) + bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(p->key.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->key.daddr, &ip6->daddr, 16);
	} else {
		return -1;
	}
	ports = hdr(skb, p->l4, pbuf, sizeof(pbuf));
	if (!ports)
		return -1;
	p->key.sport = ports[0];
	p->key.dport = ports[1];
	return 0;
}

/* The TCP header's length, options included, into p->hlen: read once the
 * tuple is known to be stitched. Returns -1 if the packet is too short. */
static __always_inline int header_len(struct __sk_buff *skb, struct packet *p)
{
	const __u8 *doff;
	__u8 buf;

	doff = hdr(skb, p->l4 + 12, &buf, 1);
	if (!doff)
		return -1;
	p->hlen = (*doff >> 4) * 4;
	return 0;
}

/* An offset into a header buffer, bounded for the verifier. The compiler
 * may prove the mask redundant and drop it, while the verifier, which
 * loses the loop's bounds, still needs it: the barrier hides the value. */
static __always_inline __u32 at(__u32 o)
{
	asm volatile("" : "+r"(o));
	return o & (HDR_BUF - 1);
}

static __always_inline __u32 get32(const __u8 *b, __u32 o)
{
	return (__u32)b[at(o)] << 24 | (__u32)b[at(o + 1)] << 16 | (__u32)b[at(o + 2)] << 8 | (__u32)b[at(o + 3)];
}

static __always_inline void put32(__u8 *b, __u32 o, __u32 v)
{
	b[at(o)] = v >> 24;
	b[at(o + 1)] = v >> 16;
	b[at(o + 2)] = v >> 8;
	b[at(o + 3)] = v;
}

/* The walk over a TCP header's options (a bpf_loop: the verifier checks
 * one step, not each of 40 steps' branches on every path). */
struct walk {
	__u8 h[HDR_BUF];      /* the header */
	__u32 i;              /* the next option's offset */
	__u32 hlen;           /* the header's length */
	struct dir *d;        /* this direction */
	const struct dir *o;  /* the other (whose TSval delta TSecr undoes) */
};

/* One option: timestamps and SACK edges are moved, the rest skipped.
 * Returns 1 to stop the walk. */
static long option(__u32 step, void *ctx)
{
	struct walk *w = ctx;
	struct dir *d = w->d;
	const struct dir *o = w->o;
	__u32 i = w->i, tsval, tsecr;
	__u8 kind, len;

	if (i >= w->hlen || i >= HDR_MAX || !d || !o)
		return 1;
	kind = w->h[at(i)];
	if (kind == 0) /* end of options */
		return 1;
	if (kind == 1) { /* NOP */
		w->i = i + 1;
		return 0;
	}
	len = w->h[at(i + 1)];
	if (len < 2 || i + len > w->hlen)
		return 1;
	if (kind == 8 && len == 10) { /* timestamps */
		tsval = get32(w->h, i + 2);
		if (!d->ts_learned) {
			d->ts_delta = d->ts_base + 1 - tsval;
			d->ts_learned = 1;
		}
		put32(w->h, i + 2, tsval + d->ts_delta);
		tsecr = get32(w->h, i + 6);
		put32(w->h, i + 6, o->ts_learned && tsecr ? tsecr - o->ts_delta : 0);
	} else if (kind == 5) { /* SACK: edges in the acknowledged space */
		for (__u32 e = i + 2; e + 4 <= i + len && e < HDR_MAX; e += 4)
			put32(w->h, e, get32(w->h, e) + d->ack_delta);
	}
	w->i = i + len;
	return 0;
}

/* Move a TCP header (w->h) from the receiving socket's sequence space to
 * the sending one's: seq, ack, window and the options. */
static __always_inline void translate(struct walk *w)
{
	__u8 *h = w->h;
	struct dir *d = w->d;
	__u32 win;

	put32(h, 4, get32(h, 4) + d->seq_delta);
	if (h[13] & 0x10) /* ACK */
		put32(h, 8, get32(h, 8) + d->ack_delta);
	win = ((__u32)h[14] << 8 | h[15]) << (d->wscale_in & 15) >> (d->wscale_out & 15);
	if (win > 0xffff)
		win = 0xffff;
	h[14] = win >> 8;
	h[15] = win;
	w->i = 20;
	bpf_loop(40, option, w, 0); /* 40 bytes of options: 40 steps at most */
}

/* Rewrite the addresses (IP header, and the TCP checksum's pseudo-header)
 * to the direction's. */
static __always_inline int rewrite_addrs(struct __sk_buff *skb, const struct packet *p, const struct dir *d)
{
	__u32 csum_off = p->l4 + 16;

	if (!p->ipv6) {
		__be32 os, od, ns, nd;

		__builtin_memcpy(&os, &p->key.saddr[12], 4);
		__builtin_memcpy(&od, &p->key.daddr[12], 4);
		__builtin_memcpy(&ns, &d->saddr[12], 4);
		__builtin_memcpy(&nd, &d->daddr[12], 4);
		if (bpf_l4_csum_replace(skb, csum_off, os, ns, BPF_F_PSEUDO_HDR | 4) ||
		    bpf_l4_csum_replace(skb, csum_off, od, nd, BPF_F_PSEUDO_HDR | 4) ||
		    bpf_l3_csum_replace(skb, p->l3 + 10, os, ns, 4) ||
		    bpf_l3_csum_replace(skb, p->l3 + 10, od, nd, 4) ||
		    bpf_skb_store_bytes(skb, p->l3 + 12, &ns, 4, 0) ||
		    bpf_skb_store_bytes(skb, p->l3 + 16, &nd, 4, 0))
			return -1;
		return 0;
	}
	{
		__s64 diff = bpf_csum_diff((__be32 *)p->key.saddr, 32, (__be32 *)d->saddr, 32, 0);

		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR) ||
		    bpf_skb_store_bytes(skb, p->l3 + 8, d->saddr, 32, 0))
			return -1;
	}
	return 0;
}

/* Send the rewritten packet out of the interface the FIB names for its
 * destination, with its next hop's MAC (resolved by the kernel if the FIB
 * has none yet). */
static __always_inline int forward(struct __sk_buff *skb, const struct packet *p, const struct dir *d)
{
	struct bpf_fib_lookup fib = {
		.l4_protocol = IPPROTO_TCP,
		.sport = d->sport,
		.dport = d->dport,
		.ifindex = skb->ingress_ifindex,
	};
	struct bpf_redir_neigh nh = {};
	long rc;

	if (p->ipv6) {
		fib.family = 10; /* AF_INET6 */
		__builtin_memcpy(fib.ipv6_src, d->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, d->daddr, 16);
	} else {
		fib.family = 2; /* AF_INET */
		__builtin_memcpy(&fib.ipv4_src, &d->saddr[12], 4);
		__builtin_memcpy(&fib.ipv4_dst, &d->daddr[12], 4);
	}
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		count(STAT_NO_ROUTE);
		return TC_ACT_SHOT;
	}
	nh.nh_family = fib.family;
	if (p->ipv6)
		__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
	else
		nh.ipv4_nh = fib.ipv4_dst;
	count(STAT_STITCHED);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

/* Keep a held data segment for the agent: in a request/response exchange
 * the segment the hold drops is the one the peer's acknowledgement rides
 * on, so the hold always catches one, and its sender, with nothing else
 * in flight, would send it again only after its loss probe (about 200
 * ms). The agent sends it on as soon as the pair is live; if that copy is
 * lost, the sender's own retransmission still comes (nobody acknowledged
 * it). */
static __always_inline void keep(struct __sk_buff *skb, const struct packet *p, __u32 pair)
{
	__u32 len = p->l3_len;
	struct held_packet *h;

	if (len == 0 || len > HELD_MAX) {
		count(STAT_HELD_DROP);
		return;
	}
	h = bpf_ringbuf_reserve(&stitch_held, sizeof(*h), 0);
	if (!h) {
		count(STAT_HELD_DROP);
		return;
	}
	h->pair = pair;
	h->len = len;
	len &= HELD_MAX - 1;
	if (len == 0 || bpf_skb_load_bytes(skb, p->l3, h->data, len)) {
		bpf_ringbuf_discard(h, 0);
		count(STAT_HELD_DROP);
		return;
	}
	bpf_ringbuf_submit(h, 0);
	count(STAT_HELD_KEPT);
}

/* A held pair's packet (see struct pair): record its acknowledgement,
 * pass a pure ACK, a FIN or a reset to the socket, drop the rest. A FIN
 * (with the data it may carry) goes on because the connection is ending:
 * the agent, seeing it, gives the stitch up and copies the rest, which
 * forwards it at once (dropped, it would wait for its sender's
 * retransmission timeout). */
static __always_inline int held(struct __sk_buff *skb, const struct packet *p, struct dir *d, __u32 pair)
{
	__u8 flags;
	__u32 ack;

	if (bpf_skb_load_bytes(skb, p->l4 + 13, &flags, 1) || bpf_skb_load_bytes(skb, p->l4 + 8, &ack, 4))
		return TC_ACT_UNSPEC;
	if (flags & 0x05) /* FIN or RST: the connection ends; the sockets see it */
		return TC_ACT_UNSPEC;
	if (flags & 0x10) {
		d->seen_ack = bpf_ntohl(ack);
		d->acked = 1;
	}
	if (flags & 0x02) { /* SYN */
		count(STAT_HELD_DROP);
		return TC_ACT_SHOT;
	}
	if (p->l3_len > p->l4 - p->l3 + p->hlen) { /* data */
		keep(skb, p, pair);
		return TC_ACT_SHOT;
	}
	return TC_ACT_UNSPEC;
}

/* Is the packet a SYN (without ACK)? */
static __always_inline int is_syn(struct __sk_buff *skb, const struct packet *p)
{
	__u8 flags;

	return !bpf_skb_load_bytes(skb, p->l4 + 13, &flags, 1) && (flags & 0x12) == 0x02;
}

/* A SYN on a stitched tuple. Once the pair has ended (both FINs, or a
 * reset) it opens a new connection, which the client may do at once on
 * the same port (the backend, not the client, closed first and holds
 * TIME_WAIT): the tuple's key goes, so that this connection and its later
 * packets reach the gateway's listener and are decided afresh, not
 * rewritten into the old one (its backend could accept the SYN from
 * TIME_WAIT and answer from the wrong pool). On a live pair the tuple is
 * in use: dropped. */
static __always_inline int syn_verdict(const struct packet *p, const struct dir *d, const struct dir *o, __u32 origin)
{
	if ((d->fin && o->fin) || d->rst || o->rst || origin == ORIGIN_ACCEPT_ENDED) {
		bpf_map_delete_elem(&stitch_keys, &p->key);
		count(STAT_REUSED);
		return TC_ACT_UNSPEC;
	}
	count(STAT_SYN_DROP);
	return TC_ACT_SHOT;
}

/* The kernel accept's free grants (accept.h): a pair slot and a gateway
 * port each, oldest first. An ended pair's grant goes to the back, so a
 * port is used again only after every other free one. */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__type(value, struct grant);
	__uint(max_entries, 65536); /* the loader sets it */
} stitch_grants SEC(".maps");

/* A kernel accept's pair's hold and origin as one 64-bit word (hold the
 * low half): its states change by compare-and-swap of it, so that two
 * CPUs never both end one pair, nor both take one slot. */
#define STATE(hold, origin) ((__u64)(origin) << 32 | (hold))

static __always_inline __u64 *state_word(struct pair *pair)
{
	return (__u64 *)&pair->hold;
}

_Static_assert(__builtin_offsetof(struct pair, hold) % 8 == 0 &&
		       __builtin_offsetof(struct pair, origin) == __builtin_offsetof(struct pair, hold) + 4,
	       "hold and origin form one aligned 64-bit word");

/* A pair ends (both FINs, or a reset): a kernel accept's gives its grant
 * back to the queue, once (the swap from ORIGIN_ACCEPT decides who). */
static __always_inline void ended(struct pair *pair, __u32 idx)
{
	struct grant g = {.slot = idx};
	__u64 *w = state_word(pair);

	for (int i = 0; i < 2; i++) {
		__u64 cur = *(volatile __u64 *)w;

		if (cur >> 32 != ORIGIN_ACCEPT)
			return;
		if (__sync_val_compare_and_swap(w, cur, STATE(cur & 0xffffffff, ORIGIN_ACCEPT_ENDED)) == cur) {
			g.port = pair->dir[DIR_TO_BACKEND].sport;
			bpf_map_push_elem(&stitch_grants, &g, 0);
			return;
		}
	}
}

/* A kernel accept's pair awaiting its first response (d is the backend's
 * direction): a packet with payload is it; timed and judged (signals.h). */
static __always_inline void first_response(struct __sk_buff *skb, const struct packet *p, struct dir *d, __u32 idx)
{
	__u8 status[HTTP_STATUS_LEN] = {};
	__u32 have, payload = p->l3_len - (p->l4 - p->l3) - p->hlen;

	if (payload == 0 || payload > 0xffff)
		return;
	d->awaiting = 0;
	have = payload >= HTTP_STATUS_LEN &&
	       !bpf_skb_load_bytes(skb, p->l4 + p->hlen, status, HTTP_STATUS_LEN) ? HTTP_STATUS_LEN : 0;
	accept_record_response(idx, status, have);
}

/* A live pair's packet: moved into the other connection and sent on. Its
 * buffers are zeroed here, not in stitch_tc: every packet the stitch
 * leaves alone would pay for them. */
static __noinline int stitch(struct __sk_buff *skb, const struct packet *p, struct pair *pair, __u32 idx,
			    enum dir_index dir)
{
	struct dir *d = &pair->dir[dir & 1];
	const struct dir *o = &pair->dir[(dir & 1) ^ 1];
	struct walk w = {};
	__u8 old[HDR_BUF] = {};
	__u32 hlen;
	__s64 diff;

	w.d = d;
	w.o = o;
	w.hlen = p->hlen;
	if (w.hlen < 20 || w.hlen > HDR_MAX || bpf_skb_load_bytes(skb, p->l4, old, w.hlen & 63)) {
		count(STAT_BAD_HEADER);
		return TC_ACT_SHOT;
	}
	__builtin_memcpy(w.h, old, HDR_BUF);
	/* Ports first (they are in the header the checksum diff covers). */
	__builtin_memcpy(&w.h[0], &w.d->sport, 2);
	__builtin_memcpy(&w.h[2], &w.d->dport, 2);
	translate(&w);
	/* Written only when they change: every packet writing would bounce
	 * the line between CPUs for nothing. */
	if ((w.h[13] & 0x01) && !w.d->fin) {
		w.d->fin = 1;
		if (o->fin)
			ended(pair, idx);
	}
	if ((w.h[13] & 0x04) && !w.d->rst) {
		w.d->rst = 1;
		ended(pair, idx);
	}
	/* The sender's acknowledgement as it sent it: the next byte it
	 * expects from the gateway's socket it talked to. When the agent
	 * ends a pair itself it resets both peers with it (a peer takes a
	 * reset whose sequence number is exactly that, RFC 5961). A plain
	 * store: the counters below write this line for every packet. */
	if (old[13] & 0x10)
		w.d->seen_ack = get32(old, 8);
	__sync_fetch_and_add(&w.d->packets, 1);
	__sync_fetch_and_add(&w.d->bytes, skb->len);

	if (d->awaiting)
		first_response(skb, p, d, idx);

	/* The header's checksum field is the same in both buffers, so the
	 * diff is the other fields' change; lengths are multiples of 4. */
	diff = bpf_csum_diff((__be32 *)old, HDR_MAX, (__be32 *)w.h, HDR_MAX, 0);
	hlen = at(w.hlen);
	if (hlen < 20) /* checked above; again where the verifier sees it */
		return TC_ACT_SHOT;
	if (diff < 0 || bpf_skb_store_bytes(skb, p->l4, w.h, hlen, 0) ||
	    bpf_l4_csum_replace(skb, p->l4 + 16, 0, diff, 0) || rewrite_addrs(skb, p, w.d)) {
		count(STAT_BAD_HEADER);
		return TC_ACT_SHOT;
	}
	return forward(skb, p, w.d);
}

#include "accept.h"

SEC("tc")
int stitch_tc(struct __sk_buff *skb)
{
	struct packet p = {};
	struct ref *ref;
	struct pair *pair;
	struct dir *d, *o;
	enum dir_index dir;
	__u32 idx;

	if (parse(skb, &p))
		return TC_ACT_UNSPEC;
	ref = bpf_map_lookup_elem(&stitch_keys, &p.key);
	if (!ref || header_len(skb, &p))
		return TC_ACT_UNSPEC;
	idx = ref->pair;
	pair = bpf_map_lookup_elem(&stitch_pairs, &idx);
	if (!pair)
		return TC_ACT_UNSPEC;
	dir = ref->dir & 1;
	d = &pair->dir[dir];
	o = &pair->dir[dir ^ 1];
	if (pair->hold == HOLD_OPENING)
		return dir == DIR_TO_CLIENT ? open_verdict(skb, &p, pair, idx, dir) : opening_client(skb, &p, pair, idx);
	if (pair->hold)
		return held(skb, &p, d, idx);
	if (is_syn(skb, &p))
		return syn_verdict(&p, d, o, pair->origin);
	return stitch(skb, &p, pair, idx, dir);
}

/* The kernel accept (accept.h): tc ingress (TCX) on the interfaces facing
 * clients, after stitch_tc, which has taken every packet of a pair. */
SEC("tc")
int stitch_accept(struct __sk_buff *skb)
{
	struct packet p = {};

	if (parse(skb, &p))
		return TC_ACT_UNSPEC;
	return accept(skb, &p);
}
