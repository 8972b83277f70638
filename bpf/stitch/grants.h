/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel accept's grants: a new connection's pair slot and gateway
 * port, an ended pair's taken back once it has lingered, else a fresh one
 * from the agent's queue. Included by accept.h.
 */
#pragma once

/* How long an ended pair keeps its keys before its slot and port are
 * reused (the loader sets it: Options.AcceptLinger): the last ACK of
 * the close passes. One that comes later (a client far away closing
 * first, a retransmitted FIN) meets the gateway's stack, which resets
 * its sender: a close that ends in a reset, nothing worse. The grants
 * must cover the new-connection rate times this. */
volatile const __u64 accept_linger_ns = 25000000;

/* Delete the key of t if it still names slot (a client's new connection
 * on the same port may have its own by now). */
static __always_inline void forget_key(struct tuple *t, __u32 slot)
{
	struct ref *ref = bpf_map_lookup_elem(&stitch_keys, t);

	if (ref && ref->pair == slot)
		bpf_map_delete_elem(&stitch_keys, t);
}

/* The oldest ended pair's slot and port, once it has lingered: its keys
 * go, and g is its grant. Returns -1 if there is none yet. */
static __noinline int reuse_ended(struct grant *g)
{
	__u32 zero = 0, slot;
	struct accept_work *wk = bpf_map_lookup_elem(&accept_scratch, &zero);
	struct ended_slot e;
	struct pair *pair;
	struct tuple *t;
	const struct dir *tb, *tc;
	__u64 now = bpf_ktime_get_ns();

	if (!wk)
		return -1;
	t = &wk->key;

	if (bpf_map_peek_elem(&stitch_ended, &e) || now - e.at < accept_linger_ns)
		return -1;
	if (bpf_map_pop_elem(&stitch_ended, &e))
		return -1;
	if (now - e.at < accept_linger_ns) { /* another CPU took the one seen */
		bpf_map_push_elem(&stitch_ended, &e, 0);
		return -1;
	}
	slot = e.slot;
	pair = bpf_map_lookup_elem(&stitch_pairs, &slot);
	if (!pair || pair->origin != ORIGIN_ACCEPT_ENDED)
		return -1; /* a second word for a slot in use again: dropped */
	tb = &pair->dir[DIR_TO_BACKEND];
	tc = &pair->dir[DIR_TO_CLIENT];
	__builtin_memcpy(t->saddr, tc->daddr, 16); /* the client's packets */
	__builtin_memcpy(t->daddr, tc->saddr, 16);
	t->sport = tc->dport;
	t->dport = tc->sport;
	forget_key(t, slot);
	__builtin_memcpy(t->saddr, tb->daddr, 16); /* the backend's */
	__builtin_memcpy(t->daddr, tb->saddr, 16);
	t->sport = tb->dport;
	t->dport = tb->sport;
	forget_key(t, slot);
	if (pair->hold == HOLD_OPENING) { /* it never went live */
		bpf_map_delete_elem(&stitch_firsts, &slot);
		bpf_map_delete_elem(&stitch_openings, &slot);
	}
	g->slot = slot;
	g->port = tb->sport;
	pair->origin = ORIGIN_ACCEPT;
	return 0;
}

/* A grant for a new connection: an ended pair's first, else a fresh one. */
static __always_inline int take_grant(struct grant *g)
{
	if (!reuse_ended(g))
		return 0;
	return bpf_map_pop_elem(&stitch_grants, g) ? -1 : 0;
}

