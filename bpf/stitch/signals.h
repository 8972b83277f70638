/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel accept's signals: what the agent's proxy counts of the L7
 * connections it accepts (flows and rule hits by pool, connect and first
 * response latency, 5xx), counted by the programs for the connections
 * they accept themselves, by the front's signals index (the agent adds
 * them to its service's series: the same metric names, the breaker sees
 * them). Included by accept.h.
 */
#pragma once

#include "../include/hist_bounds.h"

enum { ACCEPT_THRESHOLDS = 4 };

/* Per front x pool (key: signals * 2 + pool), per CPU. */
struct accept_counts {
	__u64 flows;          /* decided into the pool (the backend's SYN sent) */
	__u64 http_5xx;       /* first responses "HTTP/1.x 5.." */
	__u64 resets;         /* backends that refused the gateway's SYN */
	__u64 hits[RULES_MAX]; /* decided by rule i */
};

/* A latency histogram, as the steering programs keep theirs: bucket 0 the
 * zero bucket, bucket k the native schema-3 bucket HIST_MIN_INDEX + k - 1. */
struct accept_hist {
	__u64 buckets[HIST_BOUNDS];
	__u64 sum_ns;
};

/* Per front x pool, shared (atomic adds): the backend's handshake as the
 * gateway times it, and the first response after the first request. */
struct accept_latency {
	struct accept_hist connect, response;
	__u64 slow[ACCEPT_THRESHOLDS]; /* responses slower than the front's slow_ns[i] */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct accept_counts);
	__uint(max_entries, 512); /* 256 fronts x 2 pools */
} accept_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct accept_latency);
	__uint(max_entries, 512);
} accept_latencies SEC(".maps");

/* What the first response of a live pair is timed and judged against (by
 * slot; looked up only while the pair's dir[DIR_TO_CLIENT].awaiting). */
struct accept_request {
	__u64 sent;       /* bpf_ktime_get_ns when the request went to the backend */
	__u32 signals;    /* the front's */
	__u32 pool;
	__u64 slow_ns[ACCEPT_THRESHOLDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct accept_request);
	__uint(max_entries, 65536); /* the loader sets it: the pair slots */
} accept_requests SEC(".maps");

/* The bucket of a duration (see bpf/include/track.h's hist_bucket, which
 * this repeats for the stitch's object: a branch-free binary search). */
static __always_inline __u32 accept_bucket(__u64 d)
{
	__u32 lo = 0;

#pragma unroll
	for (__u32 step = HIST_BOUNDS_PADDED / 2; step; step >>= 1) {
		__u64 below = (__u64)((__s64)(hist_bounds[(lo + step - 1) & (HIST_BOUNDS_PADDED - 1)] - d) >> 63);

		lo += step & below;
	}
	return lo < HIST_BOUNDS ? lo : HIST_BOUNDS - 1;
}

static __always_inline void accept_observe(struct accept_hist *h, __u64 d)
{
	__u32 b = accept_bucket(d);

	if (b >= HIST_BOUNDS)
		return;
	__sync_fetch_and_add(&h->buckets[b], 1);
	__sync_fetch_and_add(&h->sum_ns, d);
}

/* A connection decided into pool, by rule (-1: none). */
static __always_inline void accept_count_decided(__u32 signals, __u32 pool, int rule)
{
	__u32 key = signals * 2 + (pool & 1);
	struct accept_counts *c = bpf_map_lookup_elem(&accept_counters, &key);

	if (!c)
		return;
	c->flows++;
	if (rule >= 0 && rule < RULES_MAX)
		c->hits[rule & (RULES_MAX - 1)]++;
}

/* A backend refused the connection decided into pool. */
static __always_inline void accept_count_reset(__u32 signals, __u32 pool)
{
	__u32 key = signals * 2 + (pool & 1);
	struct accept_counts *c = bpf_map_lookup_elem(&accept_counters, &key);

	if (c)
		c->resets++;
}

/* The backend's handshake done after d. */
static __noinline int accept_record_connect(__u32 signals, __u32 pool, __u64 d)
{
	__u32 key = signals * 2 + (pool & 1);
	struct accept_latency *l = bpf_map_lookup_elem(&accept_latencies, &key);

	if (l)
		accept_observe(&l->connect, d);
	return 0;
}

/* The first response of slot's connection: its status line's first bytes
 * in status (HTTP_STATUS_LEN of them, or fewer: not judged). */
#define HTTP_STATUS_LEN 10

static __noinline int accept_record_response(__u32 slot, const __u8 *status, __u32 have)
{
	struct accept_request *r = bpf_map_lookup_elem(&accept_requests, &slot);
	struct accept_latency *l;
	struct accept_counts *c;
	__u32 key;
	__u64 d;

	if (!r || !r->sent) /* a pair another Kernel made live: its request is not known here */
		return 0;
	d = bpf_ktime_get_ns() - r->sent;
	key = r->signals * 2 + (r->pool & 1);
	l = bpf_map_lookup_elem(&accept_latencies, &key);
	if (l) {
		accept_observe(&l->response, d);
#pragma unroll
		for (int i = 0; i < ACCEPT_THRESHOLDS; i++)
			if (r->slow_ns[i] && d > r->slow_ns[i])
				__sync_fetch_and_add(&l->slow[i], 1);
	}
	if (have >= HTTP_STATUS_LEN && status[0] == 'H' && status[1] == 'T' && status[2] == 'T' && status[3] == 'P' &&
	    status[4] == '/' && status[5] == '1' && status[6] == '.' && status[8] == ' ' && status[9] == '5') {
		c = bpf_map_lookup_elem(&accept_counters, &key);
		if (c)
			c->http_5xx++;
	}
	return 0;
}
