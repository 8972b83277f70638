/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Request tracking: what the programs learn from a flow's packets besides
 * where they go. A connect is timed from the SYN to the SYN-ACK, a request
 * from its first payload to the backend's first answer, into the pool's
 * histograms; each wait is filed in the deadline wheel, where the timeout
 * sweep (sweep.h) finds it; resets, ICMP errors and HTTP 5xx responses
 * count as errors; a closed TCP flow's entry is deleted (track_close).
 * Kept apart from the steering decision (steer.h), which calls it only to
 * start a new flow's clock: all of it but track_close is off with
 * tracking = 0, and the verifier then drops that code.
 */
#pragma once

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "hist_bounds.h"
#include "maps.h"
#include "parse.h"

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
 * untranslated. An RST from either end deletes nothing at once: the ends
 * ignore one outside their window, and deleting on it would let a blind
 * RST move an open flow. It marks the flow (FLOW_F_RESET), and the sweep
 * removes a marked flow that then stays idle for linger_closed; data after
 * it clears the mark (the connection lived on). Nor does a close while a
 * connect or a request is unanswered delete: the flow stays for the
 * timeout sweep to count it, as before closes deleted anything. A half
 * close lingers too (linger_half_closed, see sweep.h).
 */
static __always_inline void track_close(struct flow *f, const struct flow_key *key, const struct packet *pkt,
					__u8 fin)
{
	const __u8 both = FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND;

	if (pkt->tuple.proto != IPPROTO_TCP)
		return;
	if (pkt->tcp_flags & TCP_FLAG_RST) {
		if (!(f->flags & FLOW_F_RESET))
			f->flags |= FLOW_F_RESET;
		return;
	}
	if ((f->flags & FLOW_F_RESET) && pkt->payload_len)
		f->flags &= ~FLOW_F_RESET;
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
