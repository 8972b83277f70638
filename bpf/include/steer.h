/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The steering decision, independent of XDP or TC: which backend a packet
 * to a service goes to (client side), and what a backend's reply must look
 * like to its client (backend side).
 */
#pragma once

#include "maps.h"
#include "hash.h"
#include "parse.h"

enum decision {
	DECIDE_PASS = 0, /* not ours: hand the packet on untouched */
	DECIDE_FORWARD,  /* rewrite and forward */
	DECIDE_DROP,     /* a service packet with nowhere to go */
};

/* Which address decides the pool of a new flow, for pins and for the
 * client/gtpu-inner hashes. For the 5-tuple it is the client address. */
static __always_inline const __u8 *key_address(const struct flow_key *fk)
{
	return fk->src;
}

/* Hash a flow's key for one purpose (seed): the whole tuple for KEY_FLOW,
 * the key address alone for KEY_CLIENT and KEY_GTPU_INNER. */
_Static_assert(sizeof(struct flow_key) == 40, "jhash_10words hashes a 40-byte flow key");

static __always_inline struct hash2 hash_key(const struct flow_key *fk)
{
	if (fk->kind == KEY_FLOW)
		return jhash_10words((const __u32 *)fk, HASH_SEED);
	return jhash_4words((const __u32 *)key_address(fk), HASH_SEED);
}

#define NSEC_PER_SEC 1000000000ULL

/* Take a token from the service's bucket: 1 if the flow may go to the
 * canary. The clock is read before the lock (no helper calls inside it);
 * a refill is capped at one second, which also keeps the product below
 * 2^64 (per_sec is at most 10^7). */
static __always_inline int take_token(__u32 svc_id)
{
	struct rate *r = bpf_map_lookup_elem(&rates, &svc_id);
	__u64 now = bpf_ktime_get_ns(), elapsed, t, cap;
	int ok = 1;

	if (!r)
		return 1;
	bpf_spin_lock(&r->lock);
	if (r->per_sec) {
		elapsed = now > r->last_ns ? now - r->last_ns : 0;
		if (elapsed > NSEC_PER_SEC)
			elapsed = NSEC_PER_SEC;
		cap = (__u64)r->burst * NSEC_PER_SEC;
		t = r->tokens + elapsed * r->per_sec;
		if (t > cap)
			t = cap;
		ok = t >= NSEC_PER_SEC;
		if (ok)
			t -= NSEC_PER_SEC;
		r->tokens = t;
		r->last_ns = now;
	}
	bpf_spin_unlock(&r->lock);
	return ok;
}

static __always_inline int pool_of_new_flow(const struct service *svc, const struct flow_key *fk,
					    __u32 bucket_hash)
{
	if (svc->flags & SVC_F_PINS) {
		struct pin_key pk = {
			.prefixlen = 32 + 128,
			.svc_id = svc->id,
		};
		__u8 *pool;

		addr_copy(pk.addr, key_address(fk));
		pool = bpf_map_lookup_elem(&pins, &pk);
		if (pool) {
			count(STAT_PINNED);
			return *pool & 1;
		}
	}
	/* Canary iff bucket < weight: raising the weight only ever adds
	 * buckets to the canary, so keys move stable -> canary, never back.
	 * Under a rate cap the weight still decides who is eligible; a token
	 * decides who goes (pins are exempt: they are explicit). */
	if (bucket_hash % WEIGHT_SCALE >= svc->weight)
		return POOL_STABLE;
	if ((svc->flags & SVC_F_RATE) && !take_token(svc->id)) {
		count(STAT_RATE_LIMITED);
		return POOL_STABLE;
	}
	return POOL_CANARY;
}

/* Pick a backend for a new flow. Returns 0 on success. */
static __always_inline int pick_backend(const struct service *svc, const struct flow_key *fk,
					struct flow *f)
{
	struct table_key tk = { .svc_id = svc->id };
	struct hash2 h = hash_key(fk);
	struct table *t;
	__u32 slot;
	__u8 pool, idx;

	pool = pool_of_new_flow(svc, fk, h.bucket);
	/* An empty pool is only possible transiently (validation forbids
	 * sending flows to it); prefer the other pool to a drop. */
	if (!svc->table_ok[pool & 1])
		pool ^= 1;
	if (!svc->table_ok[pool & 1])
		return -1;
	tk.pool = pool & 1;
	tk.gen = svc->table_gen[pool & 1];
	t = bpf_map_lookup_elem(&tables, &tk);
	if (!t)
		return -1;
	slot = h.slot % MAGLEV_SIZE;
	/* The verifier does not bound the result of a modulo; hide the value
	 * from the compiler so the explicit check below survives. */
	asm volatile("" : "+r"(slot));
	if (slot >= MAGLEV_SIZE)
		return -1;
	idx = t->lut[slot];
	if (idx >= t->backends_len)
		return -1;
	f->backend = t->backends[idx];
	f->svc_id = svc->id;
	f->pool = pool & 1;
	return 0;
}

/* ------------------------------------------------ request tracking */

/* Serial number arithmetic (RFC 1982): a is before b. */
static __always_inline int seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

/* An atomic add that returns the old value (BPF_ATOMIC | BPF_FETCH, Linux
 * 5.12). Written out because clang emits it only for -mcpu=v3, whose code
 * the verifier refuses elsewhere in these programs. */
static __always_inline __u64 fetch_add_u64(__u64 *p, __u64 v)
{
	asm volatile("%[v] = atomic_fetch_add((u64 *)(%[p] + 0), %[v])" : [v] "+r"(v) : [p] "r"(p) : "memory");
	return v;
}

/* The default of struct service's timeout (spec.timeout). */
#define DEFAULT_TIMEOUT_NS 5000000000ULL

/* A service's timeout (spec.timeout). */
static __always_inline __u64 svc_timeout(__u32 svc_id)
{
	struct svc_params *sp = bpf_map_lookup_elem(&params, &svc_id);

	return sp && sp->timeout_ns ? sp->timeout_ns : DEFAULT_TIMEOUT_NS;
}

/* File a request that started at t_start, on the flow fk, in the deadline
 * wheel (see wheel_heads): in the slot of its deadline's epoch, or of the
 * horizon's if that is farther. now is the clock's reading. */
static __always_inline void file_deadline(const struct flow_key *fk, __u64 deadline, __u64 now,
					  __u64 t_start)
{
	__u64 epoch = deadline >> WHEEL_SHIFT, horizon = (now >> WHEEL_SHIFT) + WHEEL_SLOTS - 2;
	struct wheel_head *head;
	struct wheel_entry *e;
	__u64 idx;
	__u32 slot, key;

	if (epoch > horizon)
		epoch = horizon;
	slot = epoch & (WHEEL_SLOTS - 1);
	head = bpf_map_lookup_elem(&wheel_heads, &slot);
	if (!head || head->epoch != epoch)
		goto overflow;
	idx = fetch_add_u64(&head->n, 1);
	if (idx >= wheel_cap)
		goto overflow;
	key = slot * wheel_cap + (__u32)idx;
	e = bpf_map_lookup_elem(&wheel, &key);
	if (!e)
		goto overflow;
	e->key = *fk;
	e->t_start_ns = t_start;
	return;
overflow:
	count(STAT_WHEEL_UNFILED);
	/* Read first: every CPU writing the flag would bounce its line. */
	if (!wheel_overflow)
		wheel_overflow = 1;
}

/* The flow starts waiting (a connect or a request) now: its clock starts,
 * and its deadline is filed in the wheel. */
static __always_inline void start_wait(struct flow *f, const struct flow_key *fk, enum flow_state state)
{
	__u64 now = bpf_ktime_get_ns();

	f->state = state;
	f->t_start_ns = now;
	file_deadline(fk, now + svc_timeout(f->svc_id), now, now);
}

/* A client packet with payload on a flow: the start of a request, more of
 * one, or a retransmission. A request starts with the first payload on a
 * flow with nothing outstanding, or the first after the backend answered;
 * TCP data that ends at or before what the flow has already seen is a
 * retransmission and starts nothing. */
static __always_inline void track_client(struct flow *f, const struct packet *pkt,
					 const struct flow_key *fk)
{
	if (!tracking || !pkt->payload_len)
		return;
	if (pkt->tuple.proto == IPPROTO_TCP) {
		__u32 end = pkt->tcp_seq + pkt->payload_len;

		if ((f->flags & FLOW_F_SEQ_KNOWN) && !seq_before(f->req_end, end)) {
			if (f->state != FLOW_AWAITING)
				count(STAT_RETRANSMIT);
			return;
		}
		f->req_end = end;
		f->flags |= FLOW_F_SEQ_KNOWN;
		if (f->state == FLOW_AWAITING)
			return; /* more of the request, or a pipelined one */
	} else if (f->state == FLOW_AWAITING) {
		return;
	}
	start_wait(f, fk, FLOW_AWAITING);
	count(STAT_REQUEST);
}

/* A new flow's first packet sets where its cycle starts. */
static __always_inline void start_tracking(struct flow *f, const struct packet *pkt,
					   const struct flow_key *fk)
{
	f->state = FLOW_IDLE;
	f->flags = 0;
	f->req_end = 0;
	f->t_start_ns = 0;
	if (!tracking)
		return;
	if (pkt->tuple.proto == IPPROTO_TCP &&
	    (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN) {
		start_wait(f, fk, FLOW_CONNECTING);
		f->req_end = pkt->tcp_seq + 1; /* the first data byte */
		f->flags = FLOW_F_SEQ_KNOWN;
		return;
	}
	track_client(f, pkt, fk);
}

/* The bucket of a duration: the first whose bound is >= d, clamped to the
 * last. A branch-free binary search: each step adds its width when the
 * bound below it is still under d, so the verifier sees one path, not one
 * per bucket. Durations stay far below 2^62 ns, so the sign of bound - d
 * tells bound < d. */
static __always_inline __u32 hist_bucket(__u64 d)
{
	__u32 lo = 0;

#pragma unroll
	for (__u32 step = HIST_BOUNDS_PADDED / 2; step; step >>= 1) {
		__u64 below = (__u64)((__s64)(hist_bounds[(lo + step - 1) & (HIST_BOUNDS_PADDED - 1)] - d) >> 63);

		lo += step & below;
	}
	return lo < HIST_BOUNDS ? lo : HIST_BOUNDS - 1;
}

/* Record a duration in a pool's histogram (and, for responses, its
 * threshold counters). A global function: the verifier checks it once, on
 * its own, instead of once for every path that reaches a call. */
__attribute__((noinline)) int record_latency(__u32 svc_id, __u32 pool, __u32 kind, __u64 d)
{
	__u32 key = svc_id * POOL_COUNT + (pool & 1);
	struct pool_latency *pl = bpf_map_lookup_elem(&latency, &key);
	struct svc_params *sp;
	struct hist *h;
	__u32 b;

	if (!pl)
		return 0;
	h = &pl->lat[kind & 1];
	b = hist_bucket(d);
	if (b >= HIST_BOUNDS)
		return 0;
	__sync_fetch_and_add(&h->buckets[b], 1);
	__sync_fetch_and_add(&h->sum_ns, d);
	if (kind != LAT_RESPONSE)
		return 0;
	sp = bpf_map_lookup_elem(&params, &svc_id);
	if (!sp)
		return 0;
#pragma unroll
	for (int i = 0; i < MAX_THRESHOLDS; i++) {
		if (sp->slow_ns[i] && d > sp->slow_ns[i])
			__sync_fetch_and_add(&pl->slow[i], 1);
	}
	return 0;
}

/* Bytes of a response's payload that http_5xx reads. */
#define HTTP_STATUS_PEEK 10

/* Does the payload start an HTTP/1.x status line with a 5xx code? */
static __always_inline int http_5xx(void *data, void *data_end, const struct packet *pkt)
{
	__u32 off = pkt->payload_off;
	__u8 *p;

	asm volatile("" : "+r"(off));
	if (off > 511)
		return 0;
	p = data + off;
	if ((void *)(p + HTTP_STATUS_PEEK) > data_end)
		return 0;
	return p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P' && p[4] == '/' && p[5] == '1' &&
	       p[6] == '.' && p[8] == ' ' && p[9] == '5';
}

/* A backend packet on a flow: its SYN-ACK ends the connect, its first
 * payload after a request ends the request, its RST is an error. */
static __always_inline void track_backend(void *data, void *data_end, struct flow *f,
					  const struct packet *pkt)
{
	struct svc_params *sp;
	__u32 id = f->svc_id;
	__u64 d;

	if (!tracking)
		return;
	if (pkt->tuple.proto == IPPROTO_TCP) {
		if (pkt->tcp_flags & TCP_FLAG_RST) {
			if (!(f->flags & FLOW_F_RESET)) {
				f->flags |= FLOW_F_RESET;
				count_error(id, f->pool, ERR_RESET);
			}
			return;
		}
		if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == (TCP_FLAG_SYN | TCP_FLAG_ACK)) {
			if (f->state == FLOW_CONNECTING) {
				f->state = FLOW_IDLE;
				record_latency(id, f->pool, LAT_CONNECT, bpf_ktime_get_ns() - f->t_start_ns);
			}
			return;
		}
	}
	if (!pkt->payload_len || f->state != FLOW_AWAITING)
		return;
	f->state = FLOW_IDLE;
	d = bpf_ktime_get_ns() - f->t_start_ns;
	record_latency(id, f->pool, LAT_RESPONSE, d);
	count(STAT_RESPONSE);
	sp = bpf_map_lookup_elem(&params, &id);
	if (sp && sp->app == APP_HTTP && http_5xx(data, data_end, pkt))
		count_error(id, f->pool, ERR_HTTP_5XX);
}

/*
 * The end of a TCP flow: once both ends have sent a FIN, the next bare ACK
 * (the one that acknowledges the second FIN) is its last packet, and its
 * entry is deleted, so that the flow table holds the flows that are open
 * and a new flow takes a free entry instead of evicting one (an eviction
 * doubles the cost of an insert, and takes the least recently used flow,
 * which may be an idle one that is still open). fin is the side's FIN bit.
 * A late packet of the closed flow (a FIN retransmitted because that ACK
 * was lost) finds no entry: from the client it is steered afresh, to the
 * same backend unless the service changed; from the backend it passes
 * untranslated. An RST deletes nothing: the ends ignore one outside their
 * window, and deleting on it would let a blind RST move an open flow. Nor
 * does a close while a connect or a request is unanswered: the flow stays
 * for the timeout sweep to count it, as before closes deleted anything.
 */
static __always_inline void track_close(struct flow *f, const struct flow_key *key, const struct packet *pkt,
					__u8 fin)
{
	const __u8 both = FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND;

	if (pkt->tuple.proto != IPPROTO_TCP)
		return;
	if (pkt->tcp_flags & TCP_FLAG_FIN) {
		if (!(f->flags & fin))
			f->flags |= fin;
		return;
	}
	if ((f->flags & both) == both && (pkt->tcp_flags & TCP_FLAG_ACK) && !pkt->payload_len &&
	    f->state == FLOW_IDLE && bpf_map_delete_elem(&flows, key) == 0)
		count(STAT_FLOW_CLOSED);
}

/* An ICMP destination-unreachable arriving from the backend side about a
 * backend endpoint counts as an error of that backend's pool. */
static __always_inline void track_icmp(void *data, void *data_end, const struct packet *pkt)
{
	struct endpoint ep;
	struct reply *r;

	if (!tracking || parse_icmp_unreachable(data, data_end, pkt, &ep))
		return;
	r = bpf_map_lookup_elem(&backends, &ep);
	if (!r)
		return;
	count(STAT_ICMP_ERROR);
	count_error(r->svc_id, r->pool, ERR_ICMP);
}

/* One round of the frontend hash: a multiply spreads low bits up, the
 * shift brings high bits down, so no two inputs cancel in one bit range
 * (VIPs of one subnet on a few ports differ just where their address and
 * port bytes overlap). */
static __always_inline __u32 slot_round(__u32 h, __u32 w)
{
	h = (h ^ w) * 0x9E3779B1u;
	return h ^ (h >> 15);
}

/* The frontend filter's slot of a destination (see frontend_filter): the
 * address's four words and the port and protocol, one round each, and a
 * final mix (murmur3's). The agent computes the same (frontendSlot in
 * pkg/datapath). */
static __always_inline __u32 frontend_slot(const __u8 addr[16], __be16 port, __u8 proto)
{
	const __u32 *a = (const __u32 *)addr;
	__u32 h = 0;

	h = slot_round(h, a[0]);
	h = slot_round(h, a[1]);
	h = slot_round(h, a[2]);
	h = slot_round(h, a[3]);
	h = slot_round(h, (__u32)port << 16 | proto);
	h ^= h >> 16;
	h *= 0x85EBCA6Bu;
	h ^= h >> 13;
	h *= 0xC2B2AE35u;
	h ^= h >> 16;
	return h >> (32 - FILTER_SLOT_BITS);
}

/* The frontend filter's byte for the packet's destination. */
static __always_inline __u8 frontend_hint(const struct packet *pkt)
{
	__u32 slot = frontend_slot(pkt->tuple.dst, pkt->tuple.dport, pkt->tuple.proto);
	__u32 word = slot / 8;
	__u64 *w = bpf_map_lookup_elem(&frontend_filter, &word);

	return w ? (__u8)(*w >> (slot % 8 * 8)) : FILTER_MIXED;
}

/* Does the flow with key fk belong to the service that now holds its id? */
static __always_inline int flow_of_live_service(const struct flow_key *fk, const struct flow *f)
{
	__u32 id = f->svc_id;
	struct frontend *fe = bpf_map_lookup_elem(&frontends, &id);

	return fe && addr_equal(fe->addr, fk->dst) && fe->port == fk->dport && fe->proto == fk->proto &&
	       fe->kind == fk->kind;
}

/*
 * Client side: decide where a packet to a service goes. On DECIDE_FORWARD
 * *out holds the flow (backend, pool, service), *key its key in the flow
 * table, and *new_flow says whether this packet created it.
 *
 * The order is for the common packets: one not for any service is told by
 * the frontend filter alone; one of an established flow by the filter and
 * one flow table lookup (its service is checked by id in an array, not
 * looked up by frontend). Only new flows, GTP-U and filter collisions look
 * the service up first.
 */
static __always_inline int decide_client(void *data, void *data_end, const struct packet *pkt,
					 struct flow *out, struct flow **live, int *new_flow,
					 struct flow_key *key)
{
	struct endpoint sk = {
		.port = pkt->tuple.dport,
		.proto = pkt->tuple.proto,
	};
	int bare_syn = pkt->tuple.proto == IPPROTO_TCP &&
		       (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	struct service *svc;
	struct flow *f = 0;
	__u64 update = BPF_NOEXIST;
	__u8 hint = frontend_hint(pkt);
	int probed = 0;

	*new_flow = 0;
	*live = 0;
	if (!hint) {
		count(STAT_PASS_NOT_SERVICE);
		return DECIDE_PASS;
	}
	/* The hint names the key kind of the services in the slot; for the
	 * 5-tuple and client kinds the key is the packet's tuple. (A bare SYN
	 * skips the flow table, see below.) */
	if (!bare_syn && hint <= 1 + KEY_CLIENT) {
		*key = pkt->tuple;
		key->kind = hint - 1;
		f = bpf_map_lookup_elem(&flows, key);
		if (f && flow_of_live_service(key, f))
			goto hit;
		probed = 1;
	}

	addr_copy(sk.addr, pkt->tuple.dst);
	svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc) {
		count(STAT_PASS_NOT_SERVICE);
		return DECIDE_PASS;
	}

	if (!probed || svc->key != key->kind) {
		*key = pkt->tuple;
		key->kind = svc->key;
		probed = 0;
	}
	if (svc->key == KEY_GTPU_INNER) {
		/* A UE is its inner source address; GTP-U messages that are not
		 * G-PDUs (echo, error indication) go by their 5-tuple. */
		if (parse_gtpu_inner(data, data_end, pkt, GTPU_INNER_SRC, key->src) == 0)
			key->sport = 0;
		else
			*key = pkt->tuple;
	}

	/* A bare SYN always starts a flow: skipping the lookup saves a
	 * flow-table miss on every new connection (the costliest part of the
	 * new-flow path), and a client port that came round again is steered
	 * afresh. A retransmitted SYN hashes to the same backend unless the
	 * service's tables changed in between, and no live connection ever
	 * sends a bare SYN. */
	if (bare_syn) {
		count(STAT_FLOW_SYN);
		update = BPF_ANY;
	} else {
		/* The probe above looked this very key up already. */
		if (!probed)
			f = bpf_map_lookup_elem(&flows, key);
		if (f)
			goto hit;
	}

	__builtin_memset(out, 0, sizeof(*out));
	if (pick_backend(svc, key, out) != 0) {
		count(STAT_DROP_NO_BACKEND);
		return DECIDE_DROP;
	}
	start_tracking(out, pkt, key);
	if (bpf_map_update_elem(&flows, key, out, update) != 0) {
		/* Another CPU created the flow first (BPF_NOEXIST): follow it,
		 * so both CPUs send the flow to the same backend. */
		f = bpf_map_lookup_elem(&flows, key);
		if (!f) {
			count(STAT_FLOW_INSERT_FAIL);
			return DECIDE_DROP;
		}
		goto hit;
	}
	*new_flow = 1;
	count(STAT_FLOW_NEW);
	return DECIDE_FORWARD;
hit:
	*out = *f;
	*live = f;
	count(STAT_FLOW_HIT);
	return DECIDE_FORWARD;
}

/* Backend side: is this a reply of a steered flow? It is if it comes from
 * a backend endpoint and the flow it answers is in the flows map, steered
 * to this very backend. Returns the service's view of the endpoint, or 0;
 * then *live is the flow, and *fk (which it writes whatever it returns)
 * the flow's key. */
static __always_inline struct reply *decide_backend(void *data, void *data_end,
						    const struct packet *pkt, struct flow **live,
						    struct flow_key *fk)
{
	struct endpoint ep = {
		.port = pkt->tuple.sport,
		.proto = pkt->tuple.proto,
	};
	struct reply *r;
	struct flow *f;

	addr_copy(ep.addr, pkt->tuple.src);
	r = bpf_map_lookup_elem(&backends, &ep);
	if (!r) {
		count(STAT_PASS_NOT_REPLY);
		return 0;
	}
	/* The key the client's packets were steered by, seen from this side,
	 * built where the caller keeps it. */
	*fk = (struct flow_key){
		.proto = pkt->tuple.proto,
		.kind = r->kind,
		.dport = r->vip_port,
		.sport = pkt->tuple.dport,
	};
	addr_copy(fk->dst, r->vip);
	addr_copy(fk->src, pkt->tuple.dst);
	if (r->kind == KEY_GTPU_INNER) {
		if (parse_gtpu_inner(data, data_end, pkt, GTPU_INNER_DST, fk->src) == 0)
			fk->sport = 0;
		else
			fk->kind = KEY_FLOW; /* echo and friends were keyed by the tuple */
	}
	f = bpf_map_lookup_elem(&flows, fk);
	if (!f || f->backend.port != pkt->tuple.sport || !addr_equal(f->backend.addr, pkt->tuple.src)) {
		count(STAT_PASS_NOT_REPLY);
		return 0;
	}
	count(STAT_REPLY_HIT);
	*live = f;
	return r;
}
