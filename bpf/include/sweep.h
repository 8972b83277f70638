/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The timeout sweep: the programs that find the connects and requests that
 * outlived their service's timeout, from the deadline wheel (sweep_wheel)
 * or by walking the flow table (sweep_timeouts), and count them as errors.
 * They share no code with the packet path but the tracking helpers
 * (track.h) that file and judge deadlines, so they have a file of their
 * own, included by steer.c (bpf2go builds one source file).
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "track.h"
#include "steer.h"

/* Flows the last full sweep visited: the flow table's fill (an LRU map
 * keeps no count of its own). Written by sweep_timeouts, read by the agent. */
__u64 sweep_visited;

/* Pending records the last full sweep found in use (the pending table's
 * fill). */
__u64 sweep_pending;

/* Idle epochs after which the sweep empties a pending record that waits
 * on nothing: a handshake's SYN-ACK answered (or its connect timed out)
 * but no confirming ACK, a UDP exchange the client never followed up. At
 * least 3 s (an epoch is 1 s or more): a confirming ACK is one round trip
 * behind its SYN-ACK. Pending records are stamped once, when made. */
#define PENDING_LINGER 4

/* A flow waiting on the request (or connect) that started at t_start: past
 * its service's timeout it is counted once as a timeout error and closed;
 * before it, with refile, its deadline is filed in the wheel (again). */
static __always_inline void judge_wait(struct flow *f, const struct flow_key *key, __u64 t_start,
				       __u64 now, int refile)
{
	__u32 id = f->svc_id;
	__u64 deadline = t_start + svc_timeout(id);

	if (now <= deadline) {
		if (refile)
			file_deadline(key, deadline, now, t_start);
		return;
	}
	f->state = FLOW_IDLE;
	count(STAT_TIMEOUT);
	count_error(id, f->pool, ERR_TIMEOUT);
}

/* Set by the agent before a full sweep: 1 files every open request that
 * is not late yet in the wheel (after requests could not be filed, or
 * before the wheel was set up), 0 leaves the wheel alone. */
__u32 sweep_refile;

/* Idle epochs after which the sweep removes f, a flow of a live service:
 * a TCP flow reset or closed by both ends lingers briefly, one closed by
 * one end a while longer; any other flow as long as its service's
 * idleTimeout says (0: never). */
static __always_inline __u8 idle_limit_of(const struct flow *f, const struct flow_key *key)
{
	const __u8 both = FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND;
	struct svc_params *sp;
	__u32 id = f->svc_id;

	if (key->proto == IPPROTO_TCP) {
		if ((f->flags & FLOW_F_RESET) || (f->flags & both) == both)
			return linger_closed;
		if (f->flags & both)
			return linger_half_closed;
	}
	sp = bpf_map_lookup_elem(&params, &id);
	return sp ? sp->idle_limit : 0;
}

/* Set by the agent once its first Apply wrote the services: before that
 * the frontends a flow is checked against may not be written yet, and the
 * sweep removes nothing. */
__u32 sweep_expire;

/* Set by the agent when the idle clock's epoch changed (and at its start,
 * when it cannot know the epoch the stamps were made in): the walk stamps
 * every flow with the clock instead of judging its idleness, so that no
 * flow is removed for a stamp of another epoch. */
__u32 sweep_restamp;

/* One flow of the full sweep: gone if its service is, or if it stayed
 * idle past its limit; else its open request or connect is judged. A
 * flow's idle time is the idle clock's advance since its latest packet,
 * mod 256 epochs: the agent keeps limits at most 200 and walks the table
 * well within the other 56, and a wrap can only make a flow look younger,
 * never remove it early. bpf_for_each_map_elem allows deleting the
 * element it visits. */
static long sweep_flow(void *map, struct flow_key *key, struct flow *f, __u64 *now)
{
	__u64 t_start = f->t_start_ns;
	__u8 limit, idle;

	if (sweep_restamp) {
		stamp_idle(f);
		goto judge;
	}
	if (!sweep_expire)
		goto judge;
	if (!flow_of_live_service(key, f)) {
		if (bpf_map_delete_elem(map, key) == 0)
			count(STAT_FLOW_STALE);
		return 0;
	}
	limit = idle_limit_of(f, key);
	idle = (__u8)(idle_epoch - f->pad);
	if (limit && idle >= limit && f->state == FLOW_IDLE) {
		if (bpf_map_delete_elem(map, key) == 0)
			count(STAT_FLOW_EXPIRED);
		return 0;
	}
judge:

	/* A flow whose request started after the sweep did is not late (and
	 * was filed by the program that started it). Refiled twice at worst:
	 * the second visit finds it answered. */
	if (f->state != FLOW_IDLE && *now > t_start)
		judge_wait(f, key, t_start, *now, sweep_refile);
	return 0;
}

/* One record of the pending table in the full sweep: an open connect or
 * first request is judged; a record waiting on nothing for
 * PENDING_LINGER epochs is emptied (a new flow would take its place
 * anyway, but an empty record goes first and the count stays true). */
static __always_inline void sweep_pending_rec(struct pending_ref ref, __u64 now)
{
	struct pending_rec *r = pending_rec_of(ref);
	__u32 *tag = pending_tag_at(ref);
	struct flow *f;
	__u64 t_start;

	if (!r || !tag || !*tag)
		return;
	f = &r->flow;
	t_start = f->t_start_ns;
	if (f->state != FLOW_IDLE && now > t_start)
		judge_wait(f, &r->key, t_start, now, sweep_refile);
	if (sweep_restamp) {
		stamp_idle(f);
	} else if (sweep_expire && f->state == FLOW_IDLE && (__u8)(idle_epoch - f->pad) >= PENDING_LINGER) {
		pending_clear(ref);
		return;
	}
	sweep_pending++;
}

static long sweep_pending_bucket(void *map, __u32 *idx, struct pending_bucket *b, __u64 *now)
{
#pragma unroll
	for (int i = 0; i < PENDING_WAYS; i++)
		sweep_pending_rec((struct pending_ref){ .b = b, .w = i }, *now);
	return 0;
}

/*
 * The timeout sweeps. The agent runs them through BPF_PROG_TEST_RUN (they
 * are XDP programs never attached), so timeouts cost no timer per request:
 * an hrtimer would cost a start and a cancel on every request and response.
 * They are not map iterators because iterators are tracing programs, which
 * locked-down and sandboxed kernels refuse to load.
 *
 * sweep_timeouts walks the whole flow table (bpf_for_each_map_elem): when
 * the wheel could not file every request, and every few seconds to count
 * the flows. Its cost grows with the table's fill (≈ 300 ns a flow).
 */
SEC("xdp")
int sweep_timeouts(struct xdp_md *ctx)
{
	__u64 now = bpf_ktime_get_ns();

	sweep_visited = bpf_for_each_map_elem(&flows, sweep_flow, &now, 0);
	sweep_pending = 0;
	bpf_for_each_map_elem(&pending, sweep_pending_bucket, &now, 0);
	return XDP_PASS;
}

/* One filed request of a slot of the wheel. A global function: the
 * verifier checks it once, not once per iteration of the loop below. */
__attribute__((noinline)) int visit_filed(__u32 key, __u64 now)
{
	struct wheel_entry *e = bpf_map_lookup_elem(&wheel, &key);
	struct pending_ref ref;
	struct pending_rec *r;
	struct flow *f;

	if (!e)
		return 0;
	f = bpf_map_lookup_elem(&flows, &e->key);
	if (!f) {
		r = pending_find(&e->key, &ref); /* a connect */
		f = r ? &r->flow : 0;
	}
	/* Answered since, or the flow went on to another request (or is gone):
	 * nothing is late. Not late yet: filed at the horizon, or the
	 * service's timeout grew; filed again (in a later slot than this). */
	if (f && f->state != FLOW_IDLE && f->t_start_ns == e->t_start_ns)
		judge_wait(f, &e->key, e->t_start_ns, now, 1);
	return 0;
}

/* The epoch sweep_wheel visits, and which WHEEL_CHUNK entries of its slot
 * (chunk 0 first); the agent sets them before each run. The run of the
 * last chunk of a slot sets the slot up for its next round. */
__u64 sweep_epoch;
__u32 sweep_chunk;
__u32 sweep_last_chunk;

/*
 * sweep_wheel visits the slot of one past epoch (sweep_epoch), a chunk at
 * a time: only the requests whose deadlines fell in it, at a cost that
 * grows with the request rate instead of the table's fill. Then it sets
 * the slot up for its next round, WHEEL_SLOTS epochs on. Requests are
 * filed only in the current epoch or later, so none is filed in a slot
 * while it is visited.
 */
SEC("xdp")
int sweep_wheel(struct xdp_md *ctx)
{
	__u64 now = bpf_ktime_get_ns(), epoch = sweep_epoch;
	__u32 slot = epoch & (WHEEL_SLOTS - 1), first = sweep_chunk * WHEEL_CHUNK, n;
	struct wheel_head *head = bpf_map_lookup_elem(&wheel_heads, &slot);

	if (!head || head->epoch > epoch)
		return XDP_PASS; /* set up for a later round already */
	if (head->epoch == epoch) {
		n = head->n < wheel_cap ? head->n : wheel_cap;
		for (__u32 i = 0; i < WHEEL_CHUNK; i++) {
			if (first + i >= n)
				break;
			visit_filed(slot * wheel_cap + first + i, now);
		}
	}
	if (!sweep_last_chunk)
		return XDP_PASS;
	/* Empty first, then open for the next round: a request that sees the
	 * new epoch must not see the old count. */
	*(volatile __u64 *)&head->n = 0;
	*(volatile __u64 *)&head->epoch = epoch + WHEEL_SLOTS;
	return XDP_PASS;
}
