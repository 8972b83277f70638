/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps the steering programs keep their state in, and the global
 * variables the agent sets (before load: const volatile; at run time:
 * volatile), which libbpf keeps in maps of their own (.rodata, .bss), each
 * beside the maps it concerns. The counter helpers are here too: every path
 * of every program counts through them.
 *
 * Their keys and values are in types.h, shared with Go.
 */
#pragma once

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "types.h"

/*
 * Maps. Sizes here are placeholders: the Go loader sets max_entries from
 * the agent's configuration before loading.
 */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Not preallocated: an update allocates a new element and swaps it in
	 * under RCU, so a reader never sees a value half old, half new. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct endpoint);
	__type(value, struct service);
	__uint(max_entries, 1024);
} services SEC(".maps");

/*
 * The frontend filter: a quick answer, before any hash lookup, to "may this
 * packet be for a service?" and, if so, "how are that service's flows
 * keyed?". A destination (address, port, protocol) hashes to one byte
 * (frontend_slot); the byte is 0 if no service's frontend hashes there,
 * 1 + its key kind if the services there share one kind, FILTER_MIXED if
 * not. 0 is exact (the agent keeps the filter a superset of the services
 * map while it changes both), anything else a hint: a packet that collides
 * with a service takes the full path. Eight slots a word keep the filter
 * small (FILTER_SLOTS bytes) and so in the cache.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* slot / 8 */
	__type(value, __u64); /* byte slot % 8: 0, 1 + enum key_kind, FILTER_MIXED */
	__uint(max_entries, FILTER_SLOTS / 8);
} frontend_filter SEC(".maps");

/* struct frontend by service id: see types.h. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* service id */
	__type(value, struct frontend);
	__uint(max_entries, 1024);
} frontends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct endpoint);
	__type(value, struct reply);
	__uint(max_entries, 4096);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Tables are big and few are live: allocate on demand. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct table_key);
	__type(value, struct table);
	__uint(max_entries, 4096);
} tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pin_key);
	__type(value, __u8); /* enum pool */
	__uint(max_entries, 65536);
} pins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow);
	__uint(max_entries, 262144);
} flows SEC(".maps");

/*
 * Pending flows: those not confirmed yet, kept apart so that they cannot
 * evict a confirmed one. A TCP flow is pending from its SYN until the
 * client acknowledges the backend's SYN-ACK (the acknowledgement number
 * proves the client saw it, which a spoofed source cannot); a UDP flow
 * until the client sends again after the backend answered. Then the record
 * moves to flows. A flood of spoofed SYNs or datagrams churns this table
 * only. It is not a hash map but an array of buckets of PENDING_WAYS
 * records (pending.h says why and how): a legitimate handshake survives a
 * flood if fewer than PENDING_WAYS flood packets land in its bucket before
 * it completes. The loader sets max_entries and pending_buckets alike.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct pending_bucket);
	__uint(max_entries, 16384);
} pending SEC(".maps");

/* The pending map's size in buckets, set at load. */
const volatile __u32 pending_buckets = 16384;

/* The next-hop cache: direct-mapped, per CPU. Per CPU, a slot has one
 * writer (programs do not nest on a CPU's receive path), so a reader never
 * sees it half written; direct-mapped, a lookup is an index and one key
 * comparison instead of a hash-table walk. A collision costs a FIB lookup. */
#define NH_SLOTS 4096
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct nh_slot);
	__uint(max_entries, NH_SLOTS);
} nexthops SEC(".maps");

/* Set before load: 0 turns request tracking (latency histograms, error
 * signals) off; the verifier then removes that code. Benchmarks compare. */
const volatile __u8 tracking = 1;

/* Bumped by the agent whenever a route, neighbour or link changes: every
 * cached next hop older than the bump is looked up again. */
volatile __u32 route_gen;

/* The agent's coarse wall clock for flow ages: unix seconds / 16, mod
 * 65536 and never 0, set every second. A new flow records it (its
 * backend's born): its age, to 16 s, up to 12 days. */
volatile __u16 flow_clock;

/* The idle clock: the agent advances it by one every idle epoch (a second
 * or more, see the datapath's idleEpoch), mod 256. A flow's packets stamp
 * it into flow.pad (written only when it changed); the sweep tells a flow
 * idle for n epochs by the difference. */
volatile __u8 idle_epoch;

/* Idle epochs after which the sweep removes a TCP flow that was reset, or
 * whose both ends sent a FIN (linger_closed), or only one end
 * (linger_half_closed). Set by the agent with the epoch's length. */
volatile __u8 linger_closed = 10;
volatile __u8 linger_half_closed = 60;

/* The kernel's tick (1 / HZ) in ns: the agent sets it at load from the
 * resolution of CLOCK_MONOTONIC_COARSE. The default is HZ 250's. */
const volatile __u64 jiffy_ns = 4000000;

/* How long a cached next hop is trusted without a bump (the agent may be
 * down): one second of a stale MAC at most. */
#ifdef GRAYLANE_UPGRADE_TEST
/* The upgrade test's "newer program" (bpf2go SteerUpgrade, build tag
 * graylane_upgrade_test): a changed constant, as a tuning release would
 * bring, with every map layout unchanged. */
#define NEXTHOP_TTL_NS 500000000ULL
#else
#define NEXTHOP_TTL_NS 1000000000ULL
#endif

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* svc_id * POOL_COUNT + pool */
	__type(value, struct pool_stats);
	__uint(max_entries, 2048);
} pool_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* service id */
	__type(value, struct svc_params);
	__uint(max_entries, 1024);
} params SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* svc_id * POOL_COUNT + pool */
	__type(value, struct pool_latency);
	__uint(max_entries, 2048);
} latency SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* service id */
	__type(value, struct rate);
	__uint(max_entries, 1024);
} rates SEC(".maps");

/*
 * The deadline wheel: where the timeout sweep finds the requests (and
 * connects) that may time out, instead of walking the whole flow table.
 * A request is filed, when it starts, in the slot of the epoch its
 * deadline falls in (an epoch: WHEEL_SHIFT bits of bpf_ktime_get_ns, 67 ms);
 * the sweep visits only the slots whose epoch has passed, and the entries
 * whose flow still waits on that very request (same t_start_ns) are late.
 * A slot is reused every WHEEL_SLOTS epochs (17 s); a deadline farther
 * out is filed at the horizon and filed again when its slot comes due.
 * A slot holds wheel_cap entries (set at load from the flow table's size,
 * a multiple of WHEEL_CHUNK): a request that finds its slot full, or
 * not yet set up for its epoch, is not filed and sets wheel_overflow, and
 * the next sweep walks the whole table instead, as it also does every few
 * seconds to count the flows.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* slot: epoch % WHEEL_SLOTS */
	__type(value, struct wheel_head);
	__uint(max_entries, WHEEL_SLOTS);
} wheel_heads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* slot * wheel_cap + index */
	__type(value, struct wheel_entry);
	__uint(max_entries, WHEEL_SLOTS * WHEEL_CHUNK); /* the loader sets WHEEL_SLOTS * wheel_cap */
} wheel SEC(".maps");

/* Entries per slot; the loader sets it and sizes the wheel map to match. */
const volatile __u32 wheel_cap = WHEEL_CHUNK;

/* Set by a request that could not be filed: the next sweep walks the
 * whole flow table. Cleared by the agent before such a walk. */
volatile __u32 wheel_overflow;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* enum stat */
	__type(value, __u64);
	__uint(max_entries, STAT_COUNT);
} stats SEC(".maps");

static __always_inline void count(enum stat s)
{
	__u32 key = s;
	__u64 *v = bpf_map_lookup_elem(&stats, &key);

	if (v)
		*v += 1;
}

static __always_inline void count_error(__u32 svc_id, __u8 pool, enum err_kind kind)
{
	__u32 key = svc_id * POOL_COUNT + (pool & 1);
	struct pool_stats *ps = bpf_map_lookup_elem(&pool_counters, &key);

	if (ps && kind < ERR_COUNT)
		ps->errors[kind] += 1;
}

/* A new flow, counted alone: its packets are counted where they are
 * forwarded (see mirror_handoff). */
static __always_inline void count_new_flow(__u32 svc_id, __u8 pool)
{
	__u32 key = svc_id * POOL_COUNT + (pool & 1);
	struct pool_stats *ps = bpf_map_lookup_elem(&pool_counters, &key);

	if (ps)
		ps->flows += 1;
}

/* TCP data of a flow with no entry: a live flow lost its entry. */
static __always_inline void count_miss(__u32 svc_id, __u8 pool)
{
	__u32 key = svc_id * POOL_COUNT + (pool & 1);
	struct pool_stats *ps = bpf_map_lookup_elem(&pool_counters, &key);

	count(STAT_FLOW_MISS);
	if (ps)
		ps->misses += 1;
}

static __always_inline void count_pool(__u32 svc_id, __u8 pool, enum direction dir, __u64 bytes,
				       int new_flow)
{
	__u32 key = svc_id * POOL_COUNT + (pool & 1);
	struct pool_stats *ps = bpf_map_lookup_elem(&pool_counters, &key);

	if (!ps)
		return;
	ps->packets[dir & 1] += 1;
	ps->bytes[dir & 1] += bytes;
	if (new_flow)
		ps->flows += 1;
}

/* Mirroring and capture (mirror.h): each service's settings on this node,
 * by service id, and their counters by svc_id * POOL_COUNT + pool. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* service id */
	__type(value, struct mirror);
	__uint(max_entries, 1024);
} mirrors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* svc_id * POOL_COUNT + pool */
	__type(value, struct mirror_stats);
	__uint(max_entries, 2048);
} mirror_counters SEC(".maps");

/* The capture ring: records of struct capture_hdr + packet bytes, read by
 * the agent. One ring for all CPUs, so records come out nearly in time
 * order; the loader sets its size (a power of two of pages). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} capture_ring SEC(".maps");

/* The interfaces whose XDP program hands the packets of flows mirrored to
 * an interface over to a tc program on the same interface (XDP cannot
 * clone): ifindex -> 1, written by the agent once that tc program is
 * attached, cleared before it goes. Without an entry XDP steers such
 * packets itself and counts them, uncopied (STAT_MIRROR_XDP). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);  /* ifindex */
	__type(value, __u8);
	__uint(max_entries, 256);
} tc_handoff SEC(".maps");
