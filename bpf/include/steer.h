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
	 * buckets to the canary, so keys move stable -> canary, never back. */
	if (bucket_hash % WEIGHT_SCALE < svc->weight)
		return POOL_CANARY;
	return POOL_STABLE;
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

/*
 * Client side: decide where a packet to a service goes. On DECIDE_FORWARD
 * *out holds the flow (backend, pool, service) and *new_flow says whether
 * this packet created it.
 */
static __always_inline int decide_client(void *data, void *data_end, const struct packet *pkt,
					 struct flow *out, int *new_flow)
{
	struct endpoint sk = {
		.port = pkt->tuple.dport,
		.proto = pkt->tuple.proto,
	};
	struct service *svc;
	struct flow_key fk;
	struct flow *f;
	__u64 update = BPF_NOEXIST;

	*new_flow = 0;
	addr_copy(sk.addr, pkt->tuple.dst);
	svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc) {
		count(STAT_PASS_NOT_SERVICE);
		return DECIDE_PASS;
	}

	fk = pkt->tuple;
	fk.kind = svc->key;
	if (svc->key == KEY_GTPU_INNER) {
		/* A UE is its inner source address; GTP-U messages that are not
		 * G-PDUs (echo, error indication) go by their 5-tuple. */
		if (parse_gtpu_inner(data, data_end, pkt, GTPU_INNER_SRC, fk.src) == 0)
			fk.sport = 0;
		else
			fk = pkt->tuple;
	}

	/* A bare SYN always starts a flow: skipping the lookup saves a
	 * flow-table miss on every new connection (the costliest part of the
	 * new-flow path), and a client port that came round again is steered
	 * afresh. A retransmitted SYN hashes to the same backend unless the
	 * service's tables changed in between, and no live connection ever
	 * sends a bare SYN. */
	if (pkt->tuple.proto == IPPROTO_TCP && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN) {
		count(STAT_FLOW_SYN);
		update = BPF_ANY;
	} else {
		f = bpf_map_lookup_elem(&flows, &fk);
		if (f) {
			*out = *f;
			count(STAT_FLOW_HIT);
			return DECIDE_FORWARD;
		}
	}

	__builtin_memset(out, 0, sizeof(*out));
	if (pick_backend(svc, &fk, out) != 0) {
		count(STAT_DROP_NO_BACKEND);
		return DECIDE_DROP;
	}
	if (bpf_map_update_elem(&flows, &fk, out, update) != 0) {
		/* Another CPU created the flow first (BPF_NOEXIST): follow it,
		 * so both CPUs send the flow to the same backend. */
		f = bpf_map_lookup_elem(&flows, &fk);
		if (!f) {
			count(STAT_FLOW_INSERT_FAIL);
			return DECIDE_DROP;
		}
		*out = *f;
		count(STAT_FLOW_HIT);
		return DECIDE_FORWARD;
	}
	*new_flow = 1;
	count(STAT_FLOW_NEW);
	return DECIDE_FORWARD;
}

/* Backend side: is this a reply of a steered flow? It is if it comes from
 * a backend endpoint and the flow it answers is in the flows map, steered
 * to this very backend. Returns the service's view of the endpoint, or 0. */
static __always_inline struct reply *decide_backend(void *data, void *data_end,
						    const struct packet *pkt)
{
	struct endpoint ep = {
		.port = pkt->tuple.sport,
		.proto = pkt->tuple.proto,
	};
	struct flow_key fk = {
		.dport = 0,
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
	/* The key the client's packets were steered by, seen from this side. */
	fk.kind = r->kind;
	addr_copy(fk.dst, r->vip);
	fk.dport = r->vip_port;
	fk.sport = pkt->tuple.dport;
	addr_copy(fk.src, pkt->tuple.dst);
	if (r->kind == KEY_GTPU_INNER) {
		if (parse_gtpu_inner(data, data_end, pkt, GTPU_INNER_DST, fk.src) == 0)
			fk.sport = 0;
		else
			fk.kind = KEY_FLOW; /* echo and friends were keyed by the tuple */
	}
	f = bpf_map_lookup_elem(&flows, &fk);
	if (!f || f->backend.port != pkt->tuple.sport || !addr_equal(f->backend.addr, pkt->tuple.src)) {
		count(STAT_PASS_NOT_REPLY);
		return 0;
	}
	count(STAT_REPLY_HIT);
	return r;
}
