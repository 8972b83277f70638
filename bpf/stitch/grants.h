/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel accept's grants: a new connection's pair slot and gateway
 * port, the oldest free one (stitch_grants, stitch.c). An ended pair's
 * grant waits behind every other free one, its keys kept meanwhile (the
 * close's last ACKs pass); when it comes round its pair is taken back.
 * Included by accept.h.
 */
#pragma once

/* The agent's requests to end pairs it found overdue (pkg/stitch
 * accept.go, ScanAccepted: an opening its backend never answered, an idle
 * pair): the program ends them itself, so that only the programs move a
 * pair between states. */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__type(value, __u32); /* slot */
	__uint(max_entries, 65536); /* the loader sets it */
} stitch_expire SEC(".maps");

/* Delete the key of t if it still names slot (a client's new connection
 * on the same port may have its own by now). */
static __always_inline void forget_key(struct tuple *t, __u32 slot)
{
	struct ref *ref = bpf_map_lookup_elem(&stitch_keys, t);

	if (ref && ref->pair == slot)
		bpf_map_delete_elem(&stitch_keys, t);
}

/* Forget an ended pair taken back: its keys, and what an opening kept. */
static __always_inline void forget(struct pair *pair, __u32 slot, __u32 hold, struct tuple *t)
{
	const struct dir *tb = &pair->dir[DIR_TO_BACKEND], *tc = &pair->dir[DIR_TO_CLIENT];

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
	if (hold == HOLD_OPENING) { /* it never went live */
		bpf_map_delete_elem(&stitch_firsts, &slot);
		bpf_map_delete_elem(&stitch_openings, &slot);
	}
}

/* End a couple of the pairs the agent asked to end. */
static __always_inline void expire_some(void)
{
	for (int i = 0; i < 2; i++) {
		struct pair *pair;
		__u32 slot;

		if (bpf_map_pop_elem(&stitch_expire, &slot))
			return;
		pair = bpf_map_lookup_elem(&stitch_pairs, &slot);
		if (pair)
			ended(pair, slot);
	}
}

/* A grant for a new connection: the oldest free one. A fresh slot (its
 * pair all zero) is taken as it is; an ended pair's is taken back from
 * it (the swap decides who, against another CPU); a word for a slot in
 * use again is dropped. Returns -1 if none is free. */
static __always_inline int take_grant(struct grant *g)
{
	__u32 zero = 0;
	struct accept_work *wk = bpf_map_lookup_elem(&accept_scratch, &zero);

	if (!wk)
		return -1;
	expire_some();
	for (int i = 0; i < 4; i++) {
		struct pair *pair;
		__u64 *w, cur;
		__u32 slot;

		if (bpf_map_pop_elem(&stitch_grants, g))
			return -1;
		slot = g->slot;
		pair = bpf_map_lookup_elem(&stitch_pairs, &slot);
		if (!pair)
			continue;
		w = state_word(pair);
		cur = *(volatile __u64 *)w;
		if (cur == 0)
			return 0;
		if (cur >> 32 != ORIGIN_ACCEPT_ENDED ||
		    __sync_val_compare_and_swap(w, cur, STATE(cur & 0xffffffff, ORIGIN_ACCEPT_CLAIMED)) != cur)
			continue;
		forget(pair, slot, cur & 0xffffffff, &wk->key);
		return 0;
	}
	return -1;
}
