/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The types shared with the Go data path: the keys and values of the maps,
 * and the enums both sides index or compare by. bpf2go exports every one to
 * Go (bpf2go.sh lists them), so neither side keeps a hand-written copy of the
 * other's layout. Nothing here allocates: the maps are in maps.h.
 *
 * Addresses are always 16 bytes; IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d). One layout serves both families, and Go's
 * netip.Addr.As16() produces exactly this form.
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>

#include "hist_bounds.h"

/* Pools of a service; per-pool state is indexed by these. */
enum pool {
	POOL_STABLE = 0,
	POOL_CANARY = 1,
	POOL_COUNT = 2,
};

/* What the split hashes to put a new flow into a pool. */
enum key_kind {
	KEY_FLOW = 0,       /* the 5-tuple */
	KEY_CLIENT = 1,     /* the source address */
	KEY_GTPU_INNER = 2, /* the inner source address of a GTP-U G-PDU */
};

enum limits {
	/* Weights are in basis points: a key is canary iff its bucket < weight. */
	WEIGHT_SCALE = 10000,
	/* Maglev lookup table size: prime, and >= 32x the pool size limit so
	 * that every backend's share is within a few percent of its weight. */
	MAGLEV_SIZE = 8191,
	MAX_BACKENDS = 256,
	/* Latency thresholds per service whose exceedances are counted exactly. */
	MAX_THRESHOLDS = 4,
};

/* service.flags */
enum service_flags {
	SVC_F_PINS = 1 << 0, /* the service has pins: look them up for new flows */
	SVC_F_RATE = 1 << 1, /* new canary flows are capped: take a token (rates) */
	/* An L7 service (spec.match rules): the agent accepts its connections
	 * itself (bpf/l7's l7_assign hands them to its listener) and dials the
	 * backends, so the client programs pass its new flows untouched
	 * (STAT_PASS_L7); its flows from before it had rules keep going. */
	SVC_F_L7 = 1 << 2,
};

/* flow.flags */
enum flow_flags {
	FLOW_F_MIRROR = 1 << 0,    /* copy every packet of the flow to the mirror interface */
	FLOW_F_SEQ_KNOWN = 1 << 1, /* TCP: flow.req_end holds a client sequence number */
	FLOW_F_RESET = 1 << 2,     /* the backend reset the flow (counted once) */
	FLOW_F_FIN_CLIENT = 1 << 3,  /* TCP: the client sent a FIN */
	FLOW_F_FIN_BACKEND = 1 << 4, /* TCP: the backend sent a FIN */
	/* Two bits: the capture epoch (1..CAPTURE_EPOCHS) the flow was sampled
	 * in, 0 if it was not. A packet goes to the capture ring only while
	 * its flow's epoch is the service's current one, so the flows an
	 * earlier capture sampled are not copied into a later one. */
	FLOW_F_CAPTURE = 3 << 5,
	/* A pending flow (the pending map) the backend has answered: for TCP
	 * its SYN-ACK was seen and req_end holds the acknowledgement that
	 * confirms the flow; for UDP a reply came. */
	FLOW_F_ANSWERED = 1 << 7,
};

/* Mirroring and capture (mirror.h). */
enum mirror_limits {
	CAPTURE_EPOCH_SHIFT = 5, /* of FLOW_F_CAPTURE in flow.flags */
	CAPTURE_EPOCHS = 3,
	/* The most bytes of a packet one capture record holds: a jumbo frame
	 * whole; a GSO packet is cut here (the record keeps its length). */
	CAPTURE_SNAP_MAX = 16384,
	/* skb->mark of an interface copy on its way out (high byte), with the
	 * service id in the low 24 bits, for tc_mirror_out to find its snaplen. */
	MIRROR_MARK = 0x6d000000,
	MIRROR_MARK_MASK = 0xff000000,
};

/* Where a flow is in its request/response cycle. */
enum flow_state {
	FLOW_IDLE = 0,       /* nothing outstanding */
	FLOW_CONNECTING = 1, /* TCP: SYN forwarded, no SYN-ACK yet */
	FLOW_AWAITING = 2,   /* a request went to the backend, no answer yet */
};

/* Error signals, counted per service x pool. */
enum err_kind {
	ERR_RESET = 0,    /* RST from the backend */
	ERR_HTTP_5XX = 1, /* app http: the response starts "HTTP/1.x 5" */
	ERR_ICMP = 2,     /* destination unreachable from or about a backend */
	ERR_TIMEOUT = 3,  /* no SYN-ACK or no response within the service's timeout */
	ERR_COUNT = 4,
};

/* Application protocols the data path looks into. */
enum app {
	APP_NONE = 0,
	APP_HTTP = 1,
};

/* Latency kinds of the histograms. */
enum latency_kind {
	LAT_CONNECT = 0,  /* SYN forwarded -> SYN-ACK seen */
	LAT_RESPONSE = 1, /* request payload forwarded -> first response payload seen */
	LAT_COUNT = 2,
};

/* An address, port and protocol: the key of the services map (what clients
 * send to) and of the backends map (what backends answer from). */
struct endpoint {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 pad;
};

/* Value of the services map. The whole value is replaced by one map update,
 * so a weight change, or a switch to a freshly written lookup table, is seen
 * by the programs all at once. */
struct service {
	__u32 id;          /* index of per-service state (counters, tables, pins) */
	__u16 weight;      /* canary share of new keys, basis points */
	__u8 key;          /* enum key_kind */
	__u8 flags;        /* enum service_flags */
	__u8 table_gen[POOL_COUNT]; /* live buffer of each pool's lookup table */
	__u8 table_ok[POOL_COUNT];  /* 1 if the pool has backends */
};

/* A backend address and port. */
struct backend {
	__u8 addr[16];
	__be16 port;
	/* 0 in the tables; in a flow's copy, when the flow was born: the
	 * flow_clock of its first packet (0: born before the clock existed). */
	__u16 born;
};

/* Key of the tables map. Each pool has two buffers (gen 0 and 1): Go
 * writes the idle one and then flips service.table_gen, so a program never
 * sees a half-written table. */
struct table_key {
	__u32 svc_id;
	__u8 pool;
	__u8 gen;
	__u16 pad;
};

/* A pool's Maglev lookup table, self-contained: lut[] indexes backends[]. */
struct table {
	__u32 backends_len;
	struct backend backends[MAX_BACKENDS];
	__u8 lut[MAGLEV_SIZE];
};

/* Key of the flows map: a client's packet to a VIP as it appears on the
 * wire, plus the service's key kind. For services keyed by gtpu-inner, a
 * flow is a UE: src is the inner source address and sport is 0, so a UE
 * stays on its backend whichever base station (outer source) carries it. */
struct flow_key {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 kind; /* enum key_kind of the service */
	__u16 pad;
};

/* Value of the flows map: where a live flow goes, and where it is in its
 * request/response cycle. The state fields are written only when the state
 * changes (and while a multi-segment request streams in), never on every
 * packet of an established flow. Room to grow: the mirror feature uses
 * FLOW_F_MIRROR. */
struct flow {
	struct backend backend;
	__u32 svc_id;
	__u8 pool;
	__u8 flags;    /* enum flow_flags */
	__u8 state;    /* enum flow_state */
	/* The idle_epoch of the flow's latest packet (either direction): the
	 * sweep expires flows idle for longer than their limit. Named pad
	 * because it was one: pinned flow tables of older agents keep their
	 * layout, so an upgrade adopts their entries. */
	__u8 pad;
	/* TCP: the client sequence number just past the request data seen; a
	 * client segment before it is a retransmission, not a new request.
	 * In a pending flow the backend answered (FLOW_F_ANSWERED): the
	 * acknowledgement number that confirms it (its SYN-ACK's seq + 1). */
	__u32 req_end;
	/* When the SYN was forwarded (CONNECTING) or the request started
	 * (AWAITING), bpf_ktime_get_ns. */
	__u64 t_start_ns;
};

/* The pending table's shape (see pending.h): PENDING_WAYS records a
 * bucket. */
enum pending_limits {
	PENDING_WAYS = 4,
};

/* A pending flow and its key. key.proto 0 marks an empty record (every
 * real key is TCP or UDP). */
struct pending_rec {
	struct flow_key key;
	struct flow flow;
};

/* Value of the pending map: one bucket of records. next counts the
 * bucket's replacements: the record it points at (mod PENDING_WAYS) is
 * the oldest written, the next to go when no record is empty. tag[i] is 0
 * for an empty record, else a word of its key's hash (odd): a SYN reads
 * the tags, one cache line, not the records, to find its way. */
struct pending_bucket {
	__u32 next;
	__u32 tag[PENDING_WAYS];
	__u32 pad;
	struct pending_rec way[PENDING_WAYS];
};

/* Value of the backends map: the service a backend endpoint serves. A reply
 * from it is translated back (VIP as source) only if the flow it answers is
 * in the flows map, so traffic to the backend that did not come through the
 * VIP (health checks, monitoring) passes untouched. An endpoint belongs to
 * one pool of one service (validation enforces it). */
struct reply {
	__u8 vip[16];
	__be16 vip_port;
	__u8 pool;
	__u8 kind; /* enum key_kind of the service: how its flows are keyed */
	__u32 svc_id;
};

/* Key of a next-hop cache slot: where a rewritten packet goes, and from
 * which interface it came (policy routing may depend on it). */
struct nh_key {
	__u8 addr[16];
	__u32 ifindex;
};

/* Value of the nexthops cache: what bpf_fib_lookup said, reused for
 * NEXTHOP_TTL_NS or until the agent bumps route_gen on a route, neighbour
 * or link change, whichever comes first. */
struct nexthop {
	__u64 expires; /* in jiffies (bpf_jiffies64) */
	__u32 gen;
	__u32 ifindex;
	__u32 mtu;
	__u8 dmac[6];
	__u8 smac[6];
};

/* A slot of the next-hop cache. */
struct nh_slot {
	struct nh_key key;
	struct nexthop nh;
};

/* Key of the pins LPM trie: prefixlen counts the 32 bits of svc_id plus the
 * address bits (an IPv4 prefix /n is stored IPv4-mapped, 96 + n bits). */
struct pin_key {
	__u32 prefixlen;
	__u32 svc_id;
	__u8 addr[16];
};

/* Traffic directions of the per-pool counters. */
enum direction {
	DIR_TO_BACKEND = 0,
	DIR_TO_CLIENT = 1,
	DIR_COUNT = 2,
};

/* Per service x pool counters (per CPU; Go sums the CPUs). */
struct pool_stats {
	__u64 packets[DIR_COUNT];
	__u64 bytes[DIR_COUNT];
	__u64 flows; /* new flows steered into the pool */
	__u64 errors[ERR_COUNT];
	/* TCP data of a flow with no entry, steered by the hash alone: a live
	 * flow whose entry was evicted (or expired) */
	__u64 misses;
};

/* Per service settings the programs read by service id (the services map is
 * keyed by frontend). Written by Go. */
struct svc_params {
	__u64 timeout_ns;                /* a request unanswered this long is a timeout */
	__u64 slow_ns[MAX_THRESHOLDS];   /* count responses slower than these; 0: unused */
	__u8 app;                        /* enum app */
	/* Idle epochs (see idle_epoch) after which the sweep removes an idle
	 * flow of the service; 0: never (spec.idleTimeout) */
	__u8 idle_limit;
	__u8 pad[6];
};

/* A latency histogram: bucket 0 is the zero bucket, bucket k the native
 * schema-3 bucket HIST_MIN_INDEX + k - 1 (see hist_bounds.h). */
struct hist {
	__u64 buckets[HIST_BOUNDS];
	__u64 sum_ns;
};

/* Per service x pool latency, updated with atomic adds: a per-CPU copy
 * would cost HIST_BOUNDS x 8 bytes x 2 kinds x CPUs per pool. */
struct pool_latency {
	struct hist lat[LAT_COUNT];
	__u64 slow[MAX_THRESHOLDS]; /* responses slower than svc_params.slow_ns[i] */
};

/* What happened to packets, per CPU. Tests and benchmarks read these to
 * prove which path a packet took. */
enum stat {
	STAT_PASS_NOT_IP = 0,      /* not IPv4/IPv6 (ARP, VLAN-tagged, ...) */
	STAT_PASS_NOT_L4,          /* not TCP/UDP, or an IPv6 header we do not walk */
	STAT_PASS_FRAGMENT,        /* an IP fragment: no ports to steer by */
	STAT_PASS_MALFORMED,       /* truncated or inconsistent headers */
	STAT_PASS_NOT_SERVICE,     /* no service on this address, port, protocol */
	STAT_PASS_NOT_REPLY,       /* from the backend side, not a reply of a flow */
	STAT_FLOW_HIT,             /* an established flow */
	STAT_FLOW_NEW,             /* a new flow was steered (a pending entry made) */
	STAT_FLOW_SYN,             /* a bare TCP SYN: a pending flow started (or a retransmission followed it) */
	STAT_FLOW_INSERT_FAIL,     /* the flow table refused the entry */
	STAT_PINNED,               /* a new flow's pool was decided by a pin */
	STAT_DROP_NO_BACKEND,      /* a service packet, but no pool has backends */
	STAT_REPLY_HIT,            /* a backend reply translated back */
	STAT_NEXTHOP_MISS,         /* the next hop was not cached: FIB lookup */
	STAT_REQUEST,              /* a request started (client payload on an idle flow) */
	STAT_RESPONSE,             /* a response timed (backend payload on an awaiting flow) */
	STAT_RETRANSMIT,           /* client data before the request end: not a new request */
	STAT_ICMP_ERROR,           /* an ICMP unreachable about a backend */
	STAT_TIMEOUT,              /* a request or connect timed out (sweep) */
	STAT_FWD_REDIRECT,         /* forwarded by the program itself */
	STAT_FWD_STACK,            /* rewritten, handed to the stack to forward */
	STAT_RATE_LIMITED,         /* a new flow the weight gave the canary went to stable: no token */
	STAT_WHEEL_UNFILED,        /* a request the deadline wheel could not take: the next sweep walks the table */
	STAT_CSUM_HELPER,          /* a TC rewrite whose L4 checksum the kernel's helpers fixed (see tc_rewrite) */
	STAT_FLOW_CLOSED,          /* a TCP flow closed (both FINs, then a bare ACK): its entry deleted */
	STAT_MIRROR_SAMPLED,       /* a new flow sampled for the mirror interface or a capture */
	STAT_MIRROR_XDP,           /* a packet to mirror seen at an XDP hook with no tc program to hand it to: not copied */
	STAT_MIRROR_HANDOFF,       /* a packet to mirror that XDP handed to the tc program of its interface */
	STAT_MIRROR_TRUNCATED,     /* an interface copy cut to its snaplen or to the mirror MTU (tc_mirror_out) */
	STAT_FLOW_MISS,            /* TCP data of a flow with no entry: its entry evicted or expired (steered by the hash alone) */
	STAT_PENDING_HIT,          /* a packet of a pending flow (handshake or first exchange not complete) */
	STAT_FLOW_CONFIRMED,       /* a pending flow confirmed: moved into the flow table */
	STAT_FLOW_STRAY,           /* a TCP packet, not a SYN, of no known flow: steered by the hash, no entry made */
	STAT_ACK_UNCONFIRMED,      /* an ACK on a pending TCP flow that does not acknowledge the backend's SYN-ACK */
	STAT_FLOW_EXPIRED,         /* a flow removed by the sweep: idle past its limit, or lingering after a close or reset */
	STAT_FLOW_STALE,           /* a flow removed by the sweep: its service is gone */
	STAT_PASS_L7,              /* a packet to an L7 service (SVC_F_L7) of no flow we steer: passed to the stack, for the agent's listener */
	STAT_PENDING_REPLACED,     /* a new flow took the record of a pending one that had not completed (a full bucket: a flood, or a burst) */
	STAT_COUNT,
};

/* Sizes and values of the frontend filter (see frontend_filter in maps.h). */
enum filter_limits {
	FILTER_SLOT_BITS = 16,
	FILTER_SLOTS = 1 << 16,
	FILTER_MIXED = 0xff,
};

/* A service's frontend and key kind, by service id: what a flow's key must
 * show (dst, dport, proto, kind) for the flow to belong to the service that
 * now has its id. With it an established flow is forwarded after one flow
 * table lookup, without the services lookup: a flow of a removed service,
 * or of a service whose id went to another, fails the check and takes the
 * full path. All zero (proto 0) for an unused id. */
struct frontend {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 kind; /* enum key_kind */
};

/* A token bucket that caps a service's new canary flows per second on
 * this node (a release's setRate step; the agent splits the cluster-wide
 * rate over the live nodes). Tokens are counted in billionths so that
 * refilling needs no division: one nanosecond at per_sec flows/s adds
 * per_sec nanotokens. Shared by all CPUs under the lock: a per-CPU bucket
 * would let each CPU admit the whole rate. */
struct rate {
	struct bpf_spin_lock lock;
	__u32 per_sec;  /* the cap; 0: none */
	__u32 burst;    /* flows admitted at once, at most */
	__u64 tokens;   /* nanotokens: 1e9 admits one flow */
	__u64 last_ns;  /* the last refill */
};

/* The deadline wheel's geometry (see wheel_heads in maps.h). */
enum wheel_limits {
	WHEEL_SHIFT = 26,
	WHEEL_SLOTS = 256,
	/* The entries one run of sweep_wheel visits: a slot is visited in
	 * wheel_cap / WHEEL_CHUNK runs, so the verifier's walk of the loop
	 * stays bounded whatever the wheel's size. */
	WHEEL_CHUNK = 1024,
};

/* A slot's head: the epoch it holds now, and how many entries were filed
 * in it (may exceed wheel_cap: those past it were not filed). */
struct wheel_head {
	__u64 epoch;
	__u64 n;
};

/* A filed request: its flow, and when the request started. */
struct wheel_entry {
	struct flow_key key;
	__u64 t_start_ns;
};

/* A service's mirroring on this node, by service id (the mirrors map).
 * Written by the agent: the shares from the desired state (and from the
 * captures running here), the interface resolved on this node. */
struct mirror {
	__u16 iface_share;   /* basis points of new flows copied to ifindex */
	__u16 capture_share; /* basis points of new flows copied to the capture ring */
	__u32 ifindex;       /* the mirror interface here; 0: none (missing) */
	__u32 snaplen;       /* bytes kept of an interface copy; 0: all */
	__u32 mtu;           /* the mirror interface's MTU (tc_mirror_out) */
	__u32 capture_snap;  /* bytes of a packet a capture record holds */
	__u8 capture_epoch;  /* 1..CAPTURE_EPOCHS while a capture runs; 0: none */
	__u8 pad[3];
};

/* Per service x pool counters of mirroring and capture (per CPU). */
struct mirror_stats {
	__u64 copies;          /* packets cloned to the mirror interface */
	__u64 copy_bytes;
	__u64 copy_failed;     /* clones the kernel refused (interface gone) */
	__u64 copy_gso;        /* copies that were GSO packets longer than the
				* mirror MTU: segmented on the way out */
	__u64 captured;        /* packets written to the capture ring */
	__u64 captured_bytes;  /* their length on the wire */
	__u64 capture_dropped; /* packets the full ring had no room for */
};

/* The head of a capture record in the ring; snap bytes of the packet
 * follow, as the client saw it (client <-> VIP addresses). */
struct capture_hdr {
	__u64 ts_ns;    /* bpf_ktime_get_ns when the program saw the packet */
	__u32 svc_id;
	__u32 len;      /* the packet's length */
	__u32 ifindex;  /* the interface it arrived on */
	__u16 snap;     /* bytes of it in the record */
	__u16 bucket;   /* the flow's mirror bucket (0..WEIGHT_SCALE-1): a capture
			 * at a lower share than the ring's keeps bucket < its own */
	__u8 pool;
	__u8 dir;       /* enum direction */
	__u8 pad[6];
};

/* What chose a new flow's pool (steer.h: choose_new_flow). */
enum reason {
	REASON_WEIGHT = 0, /* the key's bucket against the weight */
	REASON_PIN = 1,    /* a pin on the key's address */
	REASON_RATE = 2,   /* the bucket made the key eligible for the canary
			    * under a rate cap: a token decides */
};

/* How an explain run ended (explanation.status). */
enum explain_status {
	EXPLAIN_OK = 0,
	EXPLAIN_NO_SERVICE = 1, /* no service on the key's destination */
	EXPLAIN_NO_BACKEND = 2, /* no pool has backends: new flows are dropped */
};

/*
 * The question and answer of the explain program (explain.h): the frame
 * the agent runs it on (BPF_PROG_TEST_RUN). The agent writes key, the
 * program the rest, from the maps the data path steers by.
 */
struct explanation {
	/* In: a client's packet to a VIP as the data path keys it (the
	 * program sets kind from the service, and sport 0 for gtpu-inner).
	 * Out: the key the decision hashed. */
	struct flow_key key;
	struct backend backend; /* the backend a new flow goes to now */
	__u32 svc_id;
	/* The service's rate cap on this node (SVC_F_RATE; per_sec 0: none):
	 * the nanotokens (1e9 admits one flow) the next new canary flow
	 * would find. */
	__u64 rate_tokens;
	__u32 rate_per_sec;
	__u32 rate_burst;
	__u32 bucket;       /* the key's weight bucket: 0..WEIGHT_SCALE-1 */
	__u32 slot;         /* the key's Maglev slot: 0..MAGLEV_SIZE-1 */
	__u32 backend_idx;  /* the backend's index in the pool's table */
	__u32 backends_len; /* the backends of the pool's table */
	__u16 weight;       /* the service's weight, basis points */
	__u8 status;        /* enum explain_status */
	__u8 reason;        /* enum reason */
	__u8 chosen;        /* the pool the pin or the weight chose */
	__u8 pool;          /* the pool a new flow goes to now */
	__u8 token;         /* REASON_RATE: 1 if a token is there now */
	__u8 svc_flags;     /* enum service_flags */
	__u8 table_gen;     /* the live buffer of pool's table */
	__u8 pad[7];
};

/* Names every enum above in one type so that it reaches BTF, from which
 * bpf2go generates the Go constants. Never read or written. */
struct enums {
	enum pool pool;
	enum key_kind key_kind;
	enum service_flags service_flags;
	enum flow_flags flow_flags;
	enum direction direction;
	enum stat stat;
	enum limits limits;
	enum flow_state flow_state;
	enum err_kind err_kind;
	enum app app;
	enum latency_kind latency_kind;
	enum wheel_limits wheel_limits;
	enum filter_limits filter_limits;
	enum mirror_limits mirror_limits;
	enum pending_limits pending_limits;
	enum reason reason;
	enum explain_status explain_status;
	/* Not an enum, but only ever cast to (the explain program's frame):
	 * named here for the same reason. */
	struct explanation explanation;
};
struct enums *unused_enums __attribute__((unused));
