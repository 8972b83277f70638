/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel accept: a new connection to a front (stitch_fronts) is
 * answered, decided and joined to its backend by the programs alone, with
 * no socket of the gateway, so that a connection of one request costs the
 * gateway what an L4 service's does. Included by stitch.c (it uses its
 * parse, forward and maps). IPv4 and IPv6; anything it does not take is
 * left to the next program (the agent's accept).
 *
 *   1. The client's SYN is answered with a SYN cookie
 *      (bpf_tcp_raw_gen_syncookie_ipv4/6, the kernel's own secret): no
 *      state. What the cookie cannot carry of the client's SYN (its window
 *      shift, SACK, its MSS's class) rides in the low bits of the cookie
 *      SYN-ACK's TSval, which the client echoes (as the kernel's own
 *      cookies do); a SYN without timestamps goes on to the stack.
 *   2. The client's first data segment proves the cookie
 *      (bpf_tcp_raw_check_syncookie_ipv4); its payload must hold the whole
 *      head of an HTTP/1.x request, which the rules (rules.h) decide on,
 *      else the weight. The program takes a grant (a pair slot and a
 *      gateway port toward the backend, stitch_grants), keeps the payload
 *      (stitch_firsts), writes the pair as HOLD_OPENING with both keys,
 *      and turns the segment itself into the gateway's SYN to the backend:
 *      the gateway's ISN and clock, the client's MSS and window shift (so
 *      that windows pass unscaled between them).
 *   3. The backend's SYN-ACK (stitch_tc finds its tuple, opening()) is
 *      turned into the gateway's ACK carrying the kept payload, and the
 *      pair goes live with the four ISNs' deltas: from then on the stitch
 *      (stitch.c) carries every byte both ways, as for a pair the agent
 *      joined. The client's first segment is acknowledged by the
 *      backend's ACK, moved into the client's space.
 *
 * Nothing is kept for a connection before step 2 proves its client
 * answered the cookie: a SYN flood costs the gateway only SYN-ACKs.
 * A first segment the kernel cannot decide on (the head not whole in it,
 * not HTTP/1.x, over one MSS, no backend) is handed to the agent's
 * listener (handoff.h), which accepts the connection as the stack would
 * have; with no listener it is answered with a reset. A first segment
 * without timestamps is not of a cookie of ours (syn_cookie answers only
 * SYNs with them) but of the stack's own, which has the same secret: it
 * goes on. One whose tuple has a socket already (a handed-off segment
 * sent again) goes on to that socket.
 */
#pragma once

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct front_key);
	__type(value, struct front);
	__uint(max_entries, 256);
} stitch_fronts SEC(".maps");

/* The fronts' pins: the pool for a client's address, longest prefix
 * first (the front's signals index is the key's first 32 bits). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct accept_pin_key);
	__type(value, __u8); /* enum pool_index */
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} accept_pins SEC(".maps");


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct opening);
	__uint(max_entries, 65536); /* the loader sets it */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} stitch_openings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct first);
	__uint(max_entries, 65536); /* the loader sets it */
	__uint(map_flags, BPF_F_NO_PREALLOC); /* kept only until the backend answers */
} stitch_firsts SEC(".maps");


#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

/* The largest payload a first segment may carry: one MSS. */
#define FIRST_PAYLOAD_MAX 1460

/* The MSS classes the cookie SYN-ACK's TSval carries (2 bits). */
static const __u16 mss_class[4] = {536, 1220, 1440, 1460};

/* Low bits of the cookie SYN-ACK's TSval: the client's window shift
 * (15: none), SACK, MSS class. */
#define TS_BITS 0x7f
#define TS_WS_NONE 15
#define TS_SACK 0x10
#define TS_MSS_SHIFT 5

#include "segment.h"

/* What the kernel accept builds a packet in: too large for the stack. */
struct accept_work {
	struct seg s;
	struct opening op;
	struct tuple key; /* a key being built */
	struct first pay; /* a first segment's payload, read and decided on */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct accept_work);
	__uint(max_entries, 1);
} accept_scratch SEC(".maps");

/* This CPU's work area, its segment zeroed. */
static __always_inline struct accept_work *work(void)
{
	__u32 zero = 0;
	struct accept_work *wk = bpf_map_lookup_elem(&accept_scratch, &zero);

	if (wk)
		__builtin_memset(&wk->s, 0, sizeof(wk->s));
	return wk;
}

/* The current TCP clock of the kernel accept: milliseconds. */
static __always_inline __u32 ts_now(void)
{
	return bpf_ktime_get_ns() / 1000000;
}

/* The SYN cookie of p's SYN (TCP header h, hlen bytes): the kernel's
 * own, for p's family; < 0 if it cannot be made. */
static __always_inline __s64 make_cookie(struct __sk_buff *skb, const struct packet *p, __u8 *h, __u32 hlen)
{
	if (p->ipv6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, p->l3, &ip6, sizeof(ip6)))
			return -1;
		return bpf_tcp_raw_gen_syncookie_ipv6(&ip6, (struct tcphdr *)h, hlen);
	}
	{
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, p->l3, &ip, sizeof(ip)))
			return -1;
		return bpf_tcp_raw_gen_syncookie_ipv4(&ip, (struct tcphdr *)h, hlen);
	}
}

/* Whether p's segment (TCP header h) answers a cookie of ours: 0 if so. */
static __always_inline int check_cookie(struct __sk_buff *skb, const struct packet *p, __u8 *h)
{
	if (p->ipv6) {
		struct ipv6hdr ip6;

		return bpf_skb_load_bytes(skb, p->l3, &ip6, sizeof(ip6)) ||
		       bpf_tcp_raw_check_syncookie_ipv6(&ip6, (struct tcphdr *)h);
	}
	{
		struct iphdr ip;

		return bpf_skb_load_bytes(skb, p->l3, &ip, sizeof(ip)) ||
		       bpf_tcp_raw_check_syncookie_ipv4(&ip, (struct tcphdr *)h);
	}
}

/* Step 1: answer a SYN to a front with a cookie SYN-ACK. */
static __noinline int syn_cookie(struct __sk_buff *skb, const struct packet *p, struct opt_walk *w,
				      const struct front *f)
{
	struct accept_work *wk = work();
	struct seg *s;
	__u32 cookie, tsval, bits, cls = 0, csyn;
	__s64 v;

	if (!wk)
		return TC_ACT_SHOT;
	s = &wk->s;
	if (!w->o.ts) {
		count(STAT_ACCEPT_SYN_PASSED);
		return TC_ACT_UNSPEC;
	}
	v = make_cookie(skb, p, w->h, w->hlen & 63);
	if (v < 0)
		return TC_ACT_SHOT;
	cookie = (__u32)v;
	for (int i = 1; i < 4; i++)
		if (w->o.mss >= mss_class[i])
			cls = i;
	bits = (w->o.has_ws ? (w->o.ws > 14 ? 14 : w->o.ws) : TS_WS_NONE) | (w->o.sack ? TS_SACK : 0) |
	       cls << TS_MSS_SHIFT;
	tsval = (ts_now() & ~TS_BITS) | bits;
	csyn = get32(w->h, 4);

	l3_fields(s, p->ipv6, p->key.daddr, p->key.saddr, 40);
	tcp_fields(s, p->key.dport, p->key.sport, cookie, csyn + 1, TCP_SYN | TCP_ACK, 65535, 40);
	/* The front's MSS is IPv4's; IPv6's header is 20 bytes longer. */
	syn_options(s, f->mss - (p->ipv6 ? 20 : 0), w->o.sack, tsval, w->o.tsval, w->o.has_ws, f->wscale);
	if (resegment(skb, p, w->h, s, 0, 0, 0))
		return TC_ACT_SHOT;
	count(STAT_ACCEPT_SYN);
	return bounce(skb);
}

/* Answer the client's segment with a reset (its acknowledgement is the
 * cookie's), for a first segment the kernel cannot decide on and has no
 * listener to hand to. */
static __always_inline int reset_client(struct __sk_buff *skb, const struct packet *p, struct opt_walk *w,
					__s64 paysum)
{
	struct accept_work *wk = work();
	struct seg *s;

	if (!wk)
		return TC_ACT_SHOT;
	s = &wk->s;
	l3_fields(s, p->ipv6, p->key.daddr, p->key.saddr, 20);
	tcp_fields(s, p->key.dport, p->key.sport, get32(w->h, 8), 0, TCP_RST, 0, 20);
	count(STAT_ACCEPT_RESET);
	if (resegment(skb, p, w->h, s, paysum, 0, 0))
		return TC_ACT_SHOT;
	return bounce(skb);
}

#include "handoff.h"

/* A first segment the kernel cannot decide on: the listener's, or, with
 * none, reset. */
static __always_inline int undecided(struct __sk_buff *skb, const struct packet *p, struct opt_walk *w,
				     const struct front *f, __s64 paysum)
{
	int verdict = hand_off(skb, p, w, f->wscale);

	if (verdict >= 0)
		return verdict;
	return reset_client(skb, p, w, paysum);
}

/* The pool a pin of the front gives the client's address (the longest
 * prefix wins): 0, or -1 if no pin covers it. */
static __always_inline int pinned(const struct front *f, const struct packet *p, __u8 *pool)
{
	struct accept_pin_key k = {.prefixlen = 32 + 128};
	__u8 *v;

	if (!f->pins)
		return -1;
	k.front = bpf_htonl(f->signals);
	__builtin_memcpy(k.addr, p->key.saddr, 16);
	v = bpf_map_lookup_elem(&accept_pins, &k);
	if (!v)
		return -1;
	*pool = *v & 1;
	return 0;
}

/* A 32-bit mix of the client's address and port: the weight's bucket and
 * the backend's index. */
static __always_inline __u32 client_hash(const struct packet *p)
{
	__u32 a, h;

	__builtin_memcpy(&a, &p->key.saddr[12], 4);
	h = a ^ ((__u32)p->key.sport << 16) ^ 0x9e3779b9;
	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	h *= 0x846ca68b;
	h ^= h >> 16;
	return h;
}

#include "grants.h"

/* Step 2: the client's first data segment. */
static __noinline int first_segment(struct __sk_buff *skb, const struct packet *p, struct opt_walk *w,
					 const struct front *f)
{
	__u32 plen, slot, hash, n, isn, tsval, cookie, client_isn;
	const struct backend_addr *b;
	struct opening *op;
	struct first *pay;
	struct grant g;
	struct tuple *bkey;
	struct ref ref;
	struct pair *pair;
	struct accept_work *wk = work();
	struct seg *s;
	__s64 paysum;
	int rule;
	__u8 pool, bits;

	if (!wk)
		return TC_ACT_SHOT;
	s = &wk->s;
	if (check_cookie(skb, p, w->h))
		return TC_ACT_UNSPEC; /* not a cookie of ours: the stack's */
	plen = p->l3_len - (p->l4 - p->l3) - w->hlen;
	if (plen == 0) {
		/* The cookie's check is linear in seq and ack: a later segment
		 * of a handed connection whose two sides sent nearly as many
		 * bytes passes it too. Its socket's, then. */
		if ((w->h[13] & TCP_FIN) || has_socket(skb, p))
			return TC_ACT_UNSPEC;
		count(STAT_ACCEPT_ACK_DROP);
		return TC_ACT_SHOT;
	}
	if (!w->o.ts)
		return TC_ACT_UNSPEC; /* the stack's own cookie */
	/* Only a segment whose cookie proves pays for the lookup. */
	if (has_socket(skb, p)) {
		count(STAT_ACCEPT_SOCKET);
		return TC_ACT_UNSPEC;
	}
	/* A request that closes its side at once (request and FIN in one
	 * segment): the agent's accept keeps the FIN (the stack alone would
	 * not take the cookie, and reset it). */
	if (w->h[13] & TCP_FIN)
		return undecided(skb, p, w, f, -1);
	pay = &wk->pay;
	op = &wk->op;
	if (plen > FIRST_PAYLOAD_MAX)
		return undecided(skb, p, w, f, -1); /* with no listener: dropped (its payload is not summed) */
	pay->len = plen;
	/* Zero the tail to the next multiple of 4: the checksum's sum reads
	 * whole words. */
	*(__u32 *)&pay->data[(plen & ~3) & (FIRST_MAX - 4)] = 0;
	{
		__u64 n = plen;

		/* Bounded where the verifier sees it (the compiler knows
		 * plen's bound and would drop the mask). */
		asm volatile("" : "+r"(n));
		n &= FIRST_MAX - 1;
		if (n == 0 || bpf_skb_load_bytes(skb, p->l4 + w->hlen, pay->data, n))
			return TC_ACT_SHOT;
	}
	paysum = sum_bytes(pay->data, (plen + 3) & ~3, 0, 1);
	rule = rules_match(pay, &f->rules);
	if (rule < MATCH_NONE || paysum < 0)
		return undecided(skb, p, w, f, paysum);

	hash = client_hash(p);
	if (rule >= 0 && rule < RULES_MAX)
		pool = f->rules.rule[rule & (RULES_MAX - 1)].pool & 1;
	else if (pinned(f, p, &pool))
		pool = hash % 10000 < f->canary_share ? POOL_CANARY : POOL_STABLE;
	if (f->backends[pool] == 0)
		pool ^= 1;
	n = f->backends[pool];
	if (n == 0 || n > FRONT_BACKENDS)
		return undecided(skb, p, w, f, paysum);
	{
		__u64 bi = (hash / 10000) % n, pi = pool;

		/* Masked where the verifier sees it. */
		asm volatile("" : "+r"(bi), "+r"(pi));
		b = &f->backend[pi & 1][bi & (FRONT_BACKENDS - 1)];
	}

	if (take_grant(&g)) {
		int verdict;

		count(STAT_ACCEPT_FULL);
		/* The agent's accept takes it; with no listener, the client
		 * sends it again (a grant may be free by then). */
		verdict = hand_off(skb, p, w, f->wscale);
		return verdict >= 0 ? verdict : TC_ACT_SHOT;
	}
	slot = g.slot;
	pair = bpf_map_lookup_elem(&stitch_pairs, &slot);
	if (!pair)
		goto give_back;

	bits = w->o.tsecr & TS_BITS;
	cookie = get32(w->h, 8) - 1;
	client_isn = get32(w->h, 4) - 1;
	isn = bpf_get_prandom_u32();
	tsval = ts_now();
	__builtin_memset(op, 0, sizeof(*op));
	op->client_isn = client_isn;
	op->cookie = cookie;
	op->gw_isn = isn;
	op->gw_tsval = tsval;
	op->synack_tsval = w->o.tsecr;
	op->client_win = (__u16)w->h[14] << 8 | w->h[15];
	op->ws_ok = (bits & 15) != TS_WS_NONE;
	op->client_ws = op->ws_ok ? bits & 15 : 0;
	op->synack_ws = op->ws_ok ? f->wscale : 0;
	op->pool = pool;
	op->rule = rule >= 0 ? rule : 0xff;
	op->started = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&stitch_openings, &slot, op, BPF_ANY) ||
	    bpf_map_update_elem(&stitch_firsts, &slot, pay, BPF_ANY))
		goto give_back;

	__builtin_memset(pair, 0, sizeof(*pair));
	pair->hold = HOLD_OPENING;
	pair->origin = ORIGIN_ACCEPT;
	__builtin_memcpy(pair->dir[DIR_TO_BACKEND].saddr, f->gw_addr, 16);
	__builtin_memcpy(pair->dir[DIR_TO_BACKEND].daddr, b->addr, 16);
	pair->dir[DIR_TO_BACKEND].sport = g.port;
	pair->dir[DIR_TO_BACKEND].dport = b->port;
	__builtin_memcpy(pair->dir[DIR_TO_CLIENT].saddr, p->key.daddr, 16);
	__builtin_memcpy(pair->dir[DIR_TO_CLIENT].daddr, p->key.saddr, 16);
	pair->dir[DIR_TO_CLIENT].sport = p->key.dport;
	pair->dir[DIR_TO_CLIENT].dport = p->key.sport;

	bkey = &wk->key;
	__builtin_memset(bkey, 0, sizeof(*bkey));
	__builtin_memcpy(bkey->saddr, b->addr, 16);
	__builtin_memcpy(bkey->daddr, f->gw_addr, 16);
	bkey->sport = b->port;
	bkey->dport = g.port;
	ref.pair = slot;
	ref.dir = DIR_TO_CLIENT;
	if (bpf_map_update_elem(&stitch_keys, bkey, &ref, BPF_NOEXIST))
		goto give_back;
	ref.dir = DIR_TO_BACKEND;
	if (bpf_map_update_elem(&stitch_keys, &p->key, &ref, BPF_NOEXIST)) {
		bpf_map_delete_elem(&stitch_keys, bkey);
		goto give_back;
	}

	l3_fields(s, p->ipv6, f->gw_addr, b->addr, 40);
	tcp_fields(s, g.port, b->port, isn, 0, TCP_SYN, 65535, 40);
	syn_options(s, mss_class[(bits >> TS_MSS_SHIFT) & 3], (bits & TS_SACK) != 0, tsval, 0,
		    op->ws_ok, op->client_ws);
	if (resegment(skb, p, w->h, s, paysum, 0, 0))
		return TC_ACT_SHOT; /* the client sends it again; the opening times out */
	count(STAT_ACCEPT_OPENED);
	accept_count_decided(f->signals, pool, rule);
	return forward(skb, p, &pair->dir[DIR_TO_BACKEND]);

give_back:
	/* Clean, as a fresh grant (take_grant takes it as one). */
	if (pair)
		__builtin_memset(pair, 0, sizeof(*pair));
	bpf_map_delete_elem(&stitch_openings, &slot);
	bpf_map_delete_elem(&stitch_firsts, &slot);
	bpf_map_push_elem(&stitch_grants, &g, 0);
	count(STAT_ACCEPT_CLASH);
	return TC_ACT_SHOT;
}

/* The pair goes live: the backend's handshake timed, its first response
 * awaited (signals.h), by the front's signals. */
/* The front of a kernel accept's pair (by the address its client
 * connected to), or NULL if it is gone. */
static __always_inline const struct front *front_of(const struct pair *pair)
{
	const struct dir *tc = &pair->dir[DIR_TO_CLIENT];
	struct front_key fk = {};

	__builtin_memcpy(fk.addr, tc->saddr, 16);
	fk.port = tc->sport;
	return bpf_map_lookup_elem(&stitch_fronts, &fk);
}

static __always_inline void signal_live(struct pair *pair, __u32 slot, const struct opening *op)
{
	struct dir *tc = &pair->dir[DIR_TO_CLIENT];
	struct accept_request *r;
	const struct front *f;
	__u64 now = bpf_ktime_get_ns();

	f = front_of(pair);
	r = bpf_map_lookup_elem(&accept_requests, &slot);
	if (!f || !r)
		return;
	accept_record_connect(f->signals, op->pool, now - op->started);
	r->sent = now;
	r->signals = f->signals;
	r->pool = op->pool;
	__builtin_memcpy(r->slow_ns, f->slow_ns, sizeof(r->slow_ns));
	tc->awaiting = 1;
}

/* A client's packet while its backend's handshake runs: its first segment
 * again (the gateway's SYN or the backend's SYN-ACK was lost, or the
 * backend is slow) sends the SYN again, the same one; anything else is
 * dropped (the client sends it again once the pair is live). */
static __noinline int opening_client(struct __sk_buff *skb, const struct packet *p, struct pair *pair, __u32 slot)
{
	struct opt_walk w = {};
	struct accept_work *wk = work();
	struct opening *op = bpf_map_lookup_elem(&stitch_openings, &slot);
	struct first *pay = bpf_map_lookup_elem(&stitch_firsts, &slot);
	const struct dir *tb = &pair->dir[DIR_TO_BACKEND];
	struct seg *s;
	__s64 paysum;
	__u32 plen;
	__u8 bits;

	count(STAT_ACCEPT_OPENING_DROP);
	if (!wk || !op || !pay || read_header(skb, p, &w) || !w.o.ts)
		return TC_ACT_SHOT;
	plen = p->l3_len - (p->l4 - p->l3) - w.hlen;
	if (get32(w.h, 4) != op->client_isn + 1 || plen != pay->len || plen == 0 || plen > FIRST_PAYLOAD_MAX)
		return TC_ACT_SHOT;
	paysum = sum_bytes(pay->data, (plen + 3) & ~3, 0, 1);
	bits = w.o.tsecr & TS_BITS;
	s = &wk->s;
	l3_fields(s, p->ipv6, tb->saddr, tb->daddr, 40);
	tcp_fields(s, tb->sport, tb->dport, op->gw_isn, 0, TCP_SYN, 65535, 40);
	syn_options(s, mss_class[(bits >> TS_MSS_SHIFT) & 3], (bits & TS_SACK) != 0, op->gw_tsval, 0, op->ws_ok,
		    op->client_ws);
	if (paysum < 0 || resegment(skb, p, w.h, s, paysum, 0, 0))
		return TC_ACT_SHOT;
	count(STAT_ACCEPT_SYN_RESENT);
	return forward(skb, p, tb);
}

/* The backend refused (a reset answering the gateway's SYN) or cannot be
 * joined (no timestamps): the client is reset (its first segment's
 * acknowledgement is the cookie's), the pair ends, the front's pool
 * counts a reset. The backend's packet becomes the client's reset. */
static __always_inline int opening_failed(struct __sk_buff *skb, const struct packet *p, struct pair *pair, __u32 slot,
					  const struct opening *op, struct opt_walk *w, struct seg *s)
{
	const struct dir *tc = &pair->dir[DIR_TO_CLIENT];
	const struct front *f = front_of(pair);
	__u32 plen = p->l3_len - (p->l4 - p->l3) - w->hlen;

	if (f)
		accept_count_reset(f->signals, op->pool);
	ended(pair, slot);
	count(STAT_ACCEPT_BACKEND_FAIL);
	if (plen) /* a payload this does not sum */
		return TC_ACT_SHOT;
	l3_fields(s, p->ipv6, tc->saddr, tc->daddr, 20);
	tcp_fields(s, tc->sport, tc->dport, op->cookie + 1, 0, TCP_RST, 0, 20);
	if (resegment(skb, p, w->h, s, 0, 0, 0))
		return TC_ACT_SHOT;
	return forward(skb, p, tc);
}

/* Step 3, in stitch_tc: a packet of a pair whose backend handshake is
 * under way. The client's are dropped (it sends them again once the pair
 * is live); the backend's SYN-ACK makes the pair live. */
static __noinline int open_verdict(struct __sk_buff *skb, const struct packet *p, struct pair *pair, __u32 slot,
				   enum dir_index dir)
{
	struct opt_walk w = {};
	struct opening *op;
	struct first *pay;
	struct accept_work *wk = work();
	struct seg *s;
	struct dir *tb, *tc;
	__u32 b_isn, plen, win;
	__u8 flags, neg_ws;

	if (!wk)
		return TC_ACT_SHOT;
	s = &wk->s;
	op = bpf_map_lookup_elem(&stitch_openings, &slot);
	pay = bpf_map_lookup_elem(&stitch_firsts, &slot);
	if (!op || !pay || read_header(skb, p, &w))
		return TC_ACT_SHOT;
	flags = w.h[13];
	/* Only what answers the gateway's SYN (its ACK is the ISN + 1). */
	if (!(flags & TCP_ACK) || get32(w.h, 8) != op->gw_isn + 1)
		return TC_ACT_SHOT;
	if (flags & TCP_RST)
		return opening_failed(skb, p, pair, slot, op, &w, s);
	if (!(flags & TCP_SYN))
		return TC_ACT_SHOT;
	if (!w.o.ts) /* the client's segments carry timestamps the backend did not agree to */
		return opening_failed(skb, p, pair, slot, op, &w, s);
	b_isn = get32(w.h, 4);
	plen = pay->len;
	if (plen == 0 || plen > FIRST_PAYLOAD_MAX)
		return TC_ACT_SHOT;

	/* Window scaling holds on the backend's connection if both SYNs
	 * had the option (the gateway's had it if the client's did). */
	neg_ws = op->ws_ok && w.o.has_ws;
	win = ((__u32)op->client_win << (op->client_ws & 15)) >> (neg_ws ? op->client_ws & 15 : 0);
	if (win > 0xffff)
		win = 0xffff;
	tb = &pair->dir[DIR_TO_BACKEND];
	tc = &pair->dir[DIR_TO_CLIENT];
	l3_fields(s, p->ipv6, tb->saddr, tb->daddr, 32 + plen);
	tcp_fields(s, tb->sport, tb->dport, op->gw_isn + 1, b_isn + 1, TCP_ACK | TCP_PSH, win, 32);
	ts_option(s, 20, op->gw_tsval, w.o.tsval);
	if (resegment(skb, p, w.h, s, 0, pay, plen))
		return TC_ACT_SHOT;

	/* The pair's deltas (see stitch.c): the client's bytes move from its
	 * ISN to the gateway's toward the backend, the backend's from its
	 * ISN to the cookie. */
	tb->seq_delta = op->gw_isn - op->client_isn;
	tb->ack_delta = b_isn - op->cookie;
	tb->ts_base = op->gw_tsval;
	tb->wscale_in = op->client_ws;
	tb->wscale_out = neg_ws ? op->client_ws : 0;
	tb->seen_ack = op->cookie + 1;
	tb->acked = 1;
	tc->seq_delta = op->cookie - b_isn;
	tc->ack_delta = op->client_isn - op->gw_isn;
	tc->ts_base = op->synack_tsval;
	tc->wscale_in = neg_ws ? w.o.ws : 0;
	tc->wscale_out = op->synack_ws;
	tc->seen_ack = op->gw_isn + 1;
	tc->acked = 1;
	signal_live(pair, slot, op);
	__sync_fetch_and_add(&tb->packets, 1);
	pair->hold = HOLD_LIVE;
	/* The payload is in this packet now; a copy lost on the way is
	 * sent again by the client (its segment is not acknowledged). */
	bpf_map_delete_elem(&stitch_firsts, &slot);
	bpf_map_delete_elem(&stitch_openings, &slot);
	count(STAT_ACCEPT_LIVE);
	return forward(skb, p, tb);
}

/* stitch_accept's decision for a TCP packet to a front with no pair. */
static __always_inline int accept(struct __sk_buff *skb, struct packet *p)
{
	struct front_key fk = {};
	const struct front *f;
	struct opt_walk w = {};
	__u8 flags;

	__builtin_memcpy(fk.addr, p->key.daddr, 16);
	fk.port = p->key.dport;
	f = bpf_map_lookup_elem(&stitch_fronts, &fk);
	if (!f || header_len(skb, p) || read_header(skb, p, &w))
		return TC_ACT_UNSPEC;
	flags = w.h[13];
	if ((flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_SYN)
		return syn_cookie(skb, p, &w, f);
	if ((flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_ACK)
		return first_segment(skb, p, &w, f);
	return TC_ACT_UNSPEC;
}
