/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * explain: why a client's new flows go where they go, answered from the
 * maps the data path steers by and by the very code it steers with
 * (choose_new_flow), without its side effects: no counter, no token
 * taken, no flow inserted. A file of its own, included by steer.c (bpf2go
 * builds one source file), like the sweeps.
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "steer.h"

/* The service's rate bucket as the next new canary flow would find it. */
static __always_inline void explain_rate(struct explanation *ex, __u32 svc_id)
{
	struct rate *r = bpf_map_lookup_elem(&rates, &svc_id);

	if (!r)
		return;
	ex->rate_per_sec = r->per_sec;
	ex->rate_burst = r->burst;
	if (r->per_sec)
		ex->rate_tokens = rate_tokens_at(r, bpf_ktime_get_ns());
}

/*
 * Never attached: the agent runs it (BPF_PROG_TEST_RUN) on a frame that
 * holds a struct explanation, which it answers in place. An XDP program,
 * as the sweeps are: a syscall program (whose context is plain memory)
 * must be sleepable, and sleepable programs may not read the pins trie.
 * The service is looked up as decide_client looks it up, by the key's
 * destination, and the key is completed as it completes it. An L7
 * service (SVC_F_L7 in svc_flags) is answered like any other: the data
 * path passes its new connections to the agent, and the choice is what
 * the pins and the weight give one that no match rule decides.
 */
SEC("xdp")
int explain(struct xdp_md *ctx)
{
	struct explanation *ex = (void *)(long)ctx->data;
	struct endpoint sk = {};
	struct service *svc;
	struct flow_key fk;
	struct choice c;

	if ((void *)(ex + 1) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	fk = ex->key;
	sk.port = fk.dport;
	sk.proto = fk.proto;
	addr_copy(sk.addr, fk.dst);
	svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc) {
		ex->status = EXPLAIN_NO_SERVICE;
		return XDP_PASS;
	}
	fk.kind = svc->key;
	fk.pad = 0;
	if (svc->key == KEY_GTPU_INNER)
		fk.sport = 0; /* a UE: its inner address alone */
	ex->key = fk;
	ex->svc_id = svc->id;
	ex->weight = svc->weight;
	ex->svc_flags = svc->flags;
	if (svc->flags & SVC_F_RATE)
		explain_rate(ex, svc->id);
	if (choose_new_flow(svc, &fk, 0, &c) != 0) {
		ex->status = EXPLAIN_NO_BACKEND;
		return XDP_PASS;
	}
	ex->status = EXPLAIN_OK;
	ex->bucket = c.h.bucket % WEIGHT_SCALE;
	ex->slot = c.h.slot % MAGLEV_SIZE;
	ex->reason = c.why;
	ex->chosen = c.chosen;
	ex->pool = c.pool;
	ex->token = c.token;
	ex->table_gen = svc->table_gen[c.pool & 1];
	ex->backend_idx = c.idx;
	ex->backends_len = c.t->backends_len;
	ex->backend = c.t->backends[c.idx];
	return XDP_PASS;
}
