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
#include "track.h"
#include "mirror.h"
#include "pending.h"

enum decision {
	DECIDE_PASS = 0, /* not ours: hand the packet on untouched */
	DECIDE_FORWARD,  /* rewrite and forward */
	DECIDE_DROP,     /* a service packet with nowhere to go */
};

#define NSEC_PER_SEC 1000000000ULL

/* The nanotokens a rate bucket holds at now: its tokens plus the refill
 * since its last, capped at one second's (which also keeps the product
 * below 2^64: per_sec is at most 10^7) and at the burst. */
static __always_inline __u64 rate_tokens_at(const struct rate *r, __u64 now)
{
	__u64 elapsed = now > r->last_ns ? now - r->last_ns : 0, t, cap;

	if (elapsed > NSEC_PER_SEC)
		elapsed = NSEC_PER_SEC;
	cap = (__u64)r->burst * NSEC_PER_SEC;
	t = r->tokens + elapsed * r->per_sec;
	return t > cap ? cap : t;
}

/* Take a token from the service's bucket: 1 if the flow may go to the
 * canary. The clock is read before the lock (no helper calls inside it). */
static __always_inline int take_token(__u32 svc_id)
{
	struct rate *r = bpf_map_lookup_elem(&rates, &svc_id);
	__u64 now = bpf_ktime_get_ns(), t;
	int ok = 1;

	if (!r)
		return 1;
	bpf_spin_lock(&r->lock);
	if (r->per_sec) {
		t = rate_tokens_at(r, now);
		ok = t >= NSEC_PER_SEC;
		if (ok)
			t -= NSEC_PER_SEC;
		r->tokens = t;
		r->last_ns = now;
	}
	bpf_spin_unlock(&r->lock);
	return ok;
}

/* Would a token be there for a new canary flow now? Read without the
 * lock and without taking it (explain): a value a concurrent taker is
 * changing may be a token off, which is what "now" means anyway. */
static __always_inline int peek_token(__u32 svc_id)
{
	struct rate *r = bpf_map_lookup_elem(&rates, &svc_id);

	if (!r || !r->per_sec)
		return 1;
	return rate_tokens_at(r, bpf_ktime_get_ns()) >= NSEC_PER_SEC;
}

/* What a new flow's key decides: the data path acts on it (pick_backend),
 * explain reports it. */
struct choice {
	struct hash2 h;
	__u32 idx;    /* the backend's index in the pool's table */
	__u8 why;     /* enum reason: what chose the pool */
	__u8 chosen;  /* the pool the pin or the weight chose */
	__u8 pool;    /* the pool the flow goes to: chosen, unless no token
		       * (REASON_RATE) or chosen has no backends */
	__u8 token;   /* REASON_RATE: a token was taken (take) or is there */
	const struct table *t; /* pool's live table; t->backends[idx] */
};

/*
 * The steering decision of a new flow, in one place for the data path and
 * explain, so that explain cannot drift from what packets get: the key's
 * hash, a pin on its address, else canary iff bucket < weight (raising
 * the weight only ever adds buckets to the canary, so keys move stable ->
 * canary, never back); under a rate cap the weight still decides who is
 * eligible and a token decides who goes (pins are exempt: they are
 * explicit); then the pool's Maglev slot. take is a constant at each call:
 * 1 (the data path) counts and takes the token, 0 (explain) only reads,
 * and the compiler drops the side effects. Returns 0, or -1 when no pool
 * has backends.
 */
static __always_inline int choose_new_flow(const struct service *svc, const struct flow_key *fk,
					   const int take, struct choice *c)
{
	struct table_key tk = { .svc_id = svc->id };
	__u32 slot;
	__u8 pool, *pinned;

	c->h = hash_key(fk);
	c->token = 0;
	if (svc->flags & SVC_F_PINS) {
		struct pin_key pk = {
			.prefixlen = 32 + 128,
			.svc_id = svc->id,
		};

		addr_copy(pk.addr, key_address(fk));
		pinned = bpf_map_lookup_elem(&pins, &pk);
		if (pinned) {
			if (take)
				count(STAT_PINNED);
			c->why = REASON_PIN;
			c->chosen = pool = *pinned & 1;
			goto table;
		}
	}
	c->why = REASON_WEIGHT;
	c->chosen = pool = c->h.bucket % WEIGHT_SCALE < svc->weight ? POOL_CANARY : POOL_STABLE;
	if (pool == POOL_CANARY && (svc->flags & SVC_F_RATE)) {
		c->why = REASON_RATE;
		c->token = take ? take_token(svc->id) : peek_token(svc->id);
		if (!c->token) {
			if (take)
				count(STAT_RATE_LIMITED);
			pool = POOL_STABLE;
		}
	}
table:
	/* An empty pool is only possible transiently (validation forbids
	 * sending flows to it); prefer the other pool to a drop. */
	if (!svc->table_ok[pool & 1])
		pool ^= 1;
	if (!svc->table_ok[pool & 1])
		return -1;
	c->pool = pool & 1;
	tk.pool = pool & 1;
	tk.gen = svc->table_gen[pool & 1];
	c->t = bpf_map_lookup_elem(&tables, &tk);
	if (!c->t)
		return -1;
	slot = c->h.slot % MAGLEV_SIZE;
	/* The verifier does not bound the result of a modulo; hide the value
	 * from the compiler so the explicit check below survives. */
	asm volatile("" : "+r"(slot));
	if (slot >= MAGLEV_SIZE)
		return -1;
	c->idx = c->t->lut[slot];
	if (c->idx >= c->t->backends_len)
		return -1;
	return 0;
}

/* Pick a backend for a new flow. Returns 0 on success; *hp is the key's
 * hash (the mirror sample derives from it). */
static __always_inline int pick_backend(const struct service *svc, const struct flow_key *fk,
					struct flow *f, struct hash2 *hp)
{
	struct choice c;

	if (choose_new_flow(svc, fk, 1, &c) != 0)
		return -1;
	*hp = c.h;
	f->backend = c.t->backends[c.idx];
	f->svc_id = svc->id;
	f->pool = c.pool;
	return 0;
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

/* Stamp a live flow with the idle clock: written only when it moved on,
 * so an established flow's entry is written at most once per epoch. */
static __always_inline void stamp_idle(struct flow *f)
{
	__u8 now = idle_epoch;

	if (f->pad != now)
		f->pad = now;
}

/* Does a client packet confirm its pending TCP flow? Only its ACK of the
 * backend's SYN-ACK does: a spoofed source never saw that, so it cannot
 * name the acknowledgement number. */
static __always_inline int confirms(const struct flow *p, const struct packet *pkt)
{
	return (p->flags & FLOW_F_ANSWERED) && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_ACK &&
	       pkt->tcp_ack == p->req_end;
}

/* Move a confirmed pending flow into the flow table. The pending record's
 * tracking state goes with it, but req_end, which held the backend's
 * acknowledgement number, is the client's next sequence number again (the
 * confirming ACK's seq). Returns the entry in the flow table, or 0 if the
 * table refused it (the flow then goes on as pending). */
static __always_inline struct flow *confirm(struct pending_rec *r, struct pending_ref ref,
					    const struct flow_key *key, const struct packet *pkt)
{
	struct flow c = r->flow;
	struct flow *f;

	c.flags &= ~FLOW_F_ANSWERED;
	if (pkt->tuple.proto == IPPROTO_TCP)
		c.req_end = pkt->tcp_seq;
	c.pad = idle_epoch;
	if (bpf_map_update_elem(&flows, key, &c, BPF_ANY) != 0) {
		count(STAT_FLOW_INSERT_FAIL);
		return 0;
	}
	f = bpf_map_lookup_elem(&flows, key);
	if (!f)
		return 0;
	pending_clear(ref);
	count(STAT_FLOW_CONFIRMED);
	return f;
}

/*
 * Client side: decide where a packet to a service goes. On DECIDE_FORWARD
 * *out holds the flow (backend, pool, service), *key its key, *live the
 * entry (in flows or pending) tracking may update, 0 for a stray, and
 * *new_flow says whether this packet created it.
 *
 * State comes only with proof of a peer: a new flow is pending (see the
 * pending map) until confirmed, so that spoofed SYNs and datagrams never
 * evict a confirmed flow, and a TCP packet of no known flow (a stray: a
 * spoofed ACK, or a live flow whose entry was lost) is steered by the hash
 * alone, without an entry. A SYN never touches the flow table.
 *
 * The order is for the common packets: one not for any service is told by
 * the frontend filter alone; one of an established flow by the filter and
 * one flow table lookup (its service is checked by id in an array, not
 * looked up by frontend). Only new flows, GTP-U and filter collisions look
 * the service up first.
 *
 * An L7 service (SVC_F_L7) is told only where a flow would start or be
 * steered without an entry: its bare SYNs, and its packets that find no
 * entry in either table, return DECIDE_PASS. So the established path
 * costs what it did, and the flows the service had while it was L4 go on
 * to their backends until they end.
 */
static __always_inline int decide_client(void *data, void *data_end, const struct packet *pkt,
					 struct flow *out, struct flow **live, int *new_flow,
					 struct flow_key *key)
{
	struct endpoint sk = {
		.port = pkt->tuple.dport,
		.proto = pkt->tuple.proto,
	};
	int tcp = pkt->tuple.proto == IPPROTO_TCP;
	int bare_syn = tcp && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	struct service *svc;
	struct flow *f = 0, *p;
	struct pending_rec *rec;
	struct pending_ref ref;
	struct hash2 h;
	__u8 hint = frontend_hint(pkt);
	int probed = 0, existed;

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

	/* A bare SYN never looks at the flow table, let alone writes it: it
	 * cannot move a live flow (a SYN with a live flow's tuple is steered
	 * as a new, pending flow; the live one's packets still find their
	 * entry first), and the new-flow path saves a miss. */
	if (bare_syn) {
		if (svc->flags & SVC_F_L7)
			goto l7;
		count(STAT_FLOW_SYN);
		goto fresh;
	}
	/* The probe above looked this very key up already. */
	if (!probed)
		f = bpf_map_lookup_elem(&flows, key);
	if (f)
		goto hit;
	rec = pending_find(key, &ref);
	if (rec) {
		p = &rec->flow;
		/* TCP: confirmed by the ACK of the backend's SYN-ACK. UDP:
		 * by the client's next datagram once the backend answered. */
		if (tcp ? confirms(p, pkt) : (p->flags & FLOW_F_ANSWERED)) {
			f = confirm(rec, ref, key, pkt);
			if (f)
				goto hit;
		} else if (tcp && (pkt->tcp_flags & TCP_FLAG_ACK)) {
			count(STAT_ACK_UNCONFIRMED);
		}
		goto pending_hit;
	}
	/* An L7 service's connections are the agent's: they never get an
	 * entry, so all their packets come here, and pass untouched (to
	 * l7_assign, the next tc program, and the agent's listener). The
	 * flows it had before it turned L7 found their entries above and
	 * keep their backend until they end. */
	if (svc->flags & SVC_F_L7)
		goto l7;
	if (tcp) {
		/* A stray: steered by the hash (to the backend it had, unless
		 * the service changed since), no entry made, nothing taken
		 * from the rate cap. TCP data here is a live connection whose
		 * entry was evicted or expired: counted, per service and pool,
		 * so an operator sees it happen. Bare ACKs, FINs and RSTs are
		 * left out: a closed flow's entry goes at its last ACK, and
		 * stragglers after it are no connection lost. */
		struct choice c;

		count(STAT_FLOW_STRAY);
		if (choose_new_flow(svc, key, 0, &c) != 0) {
			count(STAT_DROP_NO_BACKEND);
			return DECIDE_DROP;
		}
		__builtin_memset(out, 0, sizeof(*out));
		out->backend = c.t->backends[c.idx];
		out->svc_id = svc->id;
		out->pool = c.pool;
		if (pkt->payload_len > 0)
			count_miss(svc->id, c.pool);
		return DECIDE_FORWARD;
	}

fresh:
	__builtin_memset(out, 0, sizeof(*out));
	if (pick_backend(svc, key, out, &h) != 0) {
		count(STAT_DROP_NO_BACKEND);
		return DECIDE_DROP;
	}
	out->backend.born = flow_clock;
	out->pad = idle_epoch;
	start_tracking(out, pkt, key);
	mirror_sample(out, key, &h);
	rec = pending_add(key, key->kind == KEY_FLOW ? h : pending_hash(key), out, &existed);
	if (!rec) {
		count(STAT_FLOW_INSERT_FAIL);
		return DECIDE_DROP;
	}
	if (existed) {
		/* A retransmitted SYN, or another CPU made the record
		 * first: follow it, so that every packet of the flow goes
		 * to the same backend. */
		p = &rec->flow;
		goto pending_hit;
	}
	*new_flow = 1;
	count(STAT_FLOW_NEW);
	return DECIDE_FORWARD;
pending_hit:
	*out = *p;
	*live = p;
	count(STAT_PENDING_HIT);
	return DECIDE_FORWARD;
hit:
	stamp_idle(f);
	*out = *f;
	*live = f;
	count(STAT_FLOW_HIT);
	return DECIDE_FORWARD;
l7:
	count(STAT_PASS_L7);
	return DECIDE_PASS;
}

/* A backend's packet on a pending flow: a TCP SYN-ACK makes the client's
 * ACK of it the confirmation (its acknowledgement number is kept); any UDP
 * reply lets the client's next datagram confirm. */
static __always_inline void pending_answered(struct flow *p, const struct packet *pkt)
{
	if (pkt->tuple.proto == IPPROTO_TCP) {
		if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != (TCP_FLAG_SYN | TCP_FLAG_ACK))
			return;
		p->req_end = pkt->tcp_seq + 1;
	} else if (p->flags & FLOW_F_ANSWERED) {
		return;
	}
	p->flags |= FLOW_F_ANSWERED;
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
	struct pending_rec *rec;
	struct pending_ref ref;
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
	if (f && f->backend.port == pkt->tuple.sport && addr_equal(f->backend.addr, pkt->tuple.src)) {
		stamp_idle(f);
		goto reply;
	}
	/* Not a confirmed flow of this backend: perhaps a pending one (a
	 * SYN-ACK, a first UDP reply), also when a SYN with a live flow's
	 * tuple went to another backend than the live flow's. */
	rec = pending_find(fk, &ref);
	f = rec ? &rec->flow : 0;
	if (!f || f->backend.port != pkt->tuple.sport || !addr_equal(f->backend.addr, pkt->tuple.src)) {
		count(STAT_PASS_NOT_REPLY);
		return 0;
	}
	pending_answered(f, pkt);
	if (pkt->tuple.proto == IPPROTO_UDP)
		pending_done(ref);
reply:
	count(STAT_REPLY_HIT);
	*live = f;
	return r;
}
