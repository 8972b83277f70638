/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The types stitch.c shares with Go (pkg/stitch): the keys and values of
 * its maps. bpf2go exports every one (see bpf2go.sh). Addresses are 16
 * bytes, IPv4 stored IPv4-mapped (::ffff:a.b.c.d), Go's netip.Addr.As16().
 */
#pragma once

#include <linux/types.h>

#include "rules.h"

/* Key of stitch_keys: a TCP packet's tuple as it arrives at the gateway
 * (the client's to the VIP, or the backend's to the gateway's socket). */
struct tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
};

enum dir_index {
	DIR_TO_BACKEND = 0, /* the client's packets: to the backend */
	DIR_TO_CLIENT = 1,  /* the backend's packets: to the client */
};

/* Value of stitch_keys: which pair, which direction. */
struct ref {
	__u32 pair; /* index in stitch_pairs */
	enum dir_index dir;
};

/* How one direction's packets are rewritten. Sequence numbers are moved
 * from the space of the socket that received them to that of the socket
 * that sent on the other side (see stitch.c). */
struct dir {
	__u8 saddr[16]; /* the packet leaves with this source */
	__u8 daddr[16]; /* and this destination */
	__be16 sport;
	__be16 dport;
	__u32 seq_delta; /* added to the sequence number */
	__u32 ack_delta; /* added to the acknowledgement number and SACK edges */
	/* Timestamps: TSval gets ts_delta, learned from this direction's
	 * first packet so that it starts just above ts_base, the clock of
	 * the gateway's socket the receiver talked to (its PAWS check). */
	__u32 ts_base;
	__u32 ts_delta;
	__u8 ts_learned; /* ts_delta is set */
	__u8 wscale_in;  /* the sender's window shift */
	__u8 wscale_out; /* the shift the receiver applies */
	__u8 fin;        /* 1 once the sender sent a FIN */
	__u8 rst;        /* 1 once the sender sent a RST */
	__u8 acked;      /* seen_ack is set (live pairs: always) */
	/* DIR_TO_CLIENT of a kernel accept's pair: its first response is
	 * awaited, to be timed and judged (signals.h). */
	__u8 awaiting;
	__u8 pad;
	/* The last acknowledgement number the sender sent, in the receiving
	 * socket's send space: held, piggybacked on data the hold dropped
	 * too (the stitch waits for it); live, from the socket's state at
	 * the stitch on (the agent's resets carry it). */
	__u32 seen_ack;
	__u64 packets;
	__u64 bytes;
};

/* Values of struct pair's hold. */
enum hold {
	HOLD_LIVE = 0,
	HOLD_QUIET = 1,   /* the agent is making its sockets quiet (Join) */
	HOLD_OPENING = 2, /* the kernel accept waits for the backend's SYN-ACK (accept.h) */
};

/* Value of stitch_pairs: a stitched connection, both directions. */
struct pair {
	struct dir dir[2];
	/* HOLD_QUIET while the agent makes the sockets quiet: nothing is rewritten;
	 * pure ACKs, FINs and resets go on to the sockets, data and SYNs are
	 * dropped (their senders send them again once the pair is live), and
	 * each direction's acknowledgement is recorded. */
	__u32 hold;
	__u32 origin; /* enum origin: who made the pair (and ends it) */
};

/* Values of struct pair's origin. */
enum origin {
	ORIGIN_JOIN = 0,           /* the agent's Join: its Wait ends the pair */
	ORIGIN_ACCEPT = 1,         /* the kernel accept's, live or opening */
	ORIGIN_ACCEPT_ENDED = 2,   /* the kernel accept's, ended: its grant is queued */
	ORIGIN_ACCEPT_CLAIMED = 3, /* being taken for a new connection */
};


/* A held pair's data segment, from its IP header on, as the hold drops it:
 * the agent sends it on itself once the pair is live (see held() in
 * stitch.c). Larger segments (GRO) are only dropped. */
enum { HELD_MAX = 2048 };

struct held_packet {
	__u32 pair; /* the held pair's slot */
	__u32 len;  /* bytes of data used */
	__u8 data[HELD_MAX];
};

/* Indexes of the per-CPU stats array. */
enum stat {
	STAT_STITCHED = 0,  /* packets rewritten and redirected */
	STAT_NO_ROUTE = 1,  /* rewritten, but the FIB had no way out: dropped */
	STAT_BAD_HEADER = 2, /* a stitched tuple's packet that could not be read or written: dropped */
	STAT_HELD_DROP = 3,  /* held: a data or SYN segment dropped */
	STAT_REUSED = 4,     /* a SYN on an ended pair's tuple: a new connection, passed; the key goes */
	STAT_SYN_DROP = 5,   /* a SYN on a live pair's tuple: dropped */
	STAT_HELD_KEPT = 6,  /* held: a data segment dropped and kept for the agent */
	/* The kernel accept (accept.h). */
	STAT_ACCEPT_SYN = 7,        /* a SYN to a front answered with a cookie */
	STAT_ACCEPT_SYN_PASSED = 8, /* a SYN without timestamps: left to the stack */
	STAT_ACCEPT_ACK_DROP = 9,   /* a pure ACK of a cookie: dropped (no state yet) */
	STAT_ACCEPT_OPENED = 10,    /* a first request decided: the backend's SYN sent */
	STAT_ACCEPT_LIVE = 11,      /* the backend answered: the request sent, the pair live */
	STAT_ACCEPT_FULL = 12,      /* no grant (slot and port) free: the first segment dropped */
	STAT_ACCEPT_RESET = 13,     /* a first segment the kernel cannot decide on, no listener took it: the client reset */
	STAT_ACCEPT_OPENING_DROP = 14, /* the client's packets while the backend's handshake runs */
	STAT_ACCEPT_BACKEND_FAIL = 15, /* the backend refused (reset) or disagreed on options */
	STAT_ACCEPT_CLASH = 16,     /* a grant's tuple still in use: given back, the segment dropped */
	STAT_ACCEPT_HANDED = 17,     /* a first segment the kernel cannot decide on: handed to the listener */
	STAT_ACCEPT_SOCKET = 18,     /* a first segment whose tuple has a socket (sent again after a hand-off): passed */
	STAT_ACCEPT_SYN_RESENT = 19, /* the client's first segment again while opening: the backend's SYN sent again */
	STAT_COUNT = 20,
};

/* The kernel accept (accept.h): frontends whose new connections the
 * program answers itself, with a SYN cookie, and joins to a backend it
 * connects to from the first request's head. */
struct front_key {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
};

struct backend_addr {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
};

enum pool_index {
	POOL_STABLE = 0,
	POOL_CANARY = 1,
};

enum { FRONT_BACKENDS = 8 };

/* Value of stitch_fronts. */
struct front {
	__u8 gw_addr[16]; /* the gateway's address toward the backends */
	struct backend_addr backend[2][FRONT_BACKENDS]; /* by enum pool_index */
	__u32 backends[2];   /* used entries of backend[pool] */
	__u32 canary_share;  /* of 10 000: connections no rule decides */
	__u16 mss;           /* advertised to clients */
	__u8 wscale;         /* window shift advertised to clients */
	__u8 pad;
	__u32 signals;       /* index of its signals (signals.h), by pool; its pins' */
	__u32 pins;          /* how many pins it has in accept_pins (0: none to look up) */
	__u64 slow_ns[4];    /* the service's latency thresholds; 0: unused */
	struct rules rules;  /* header rules, in order (rules.h) */
};

/* Key of accept_pins (an LPM trie): prefixlen counts the 32 bits of front
 * (big-endian) and the prefix's bits of addr (IPv4-mapped: 96 + its
 * length). */
struct accept_pin_key {
	__u32 prefixlen;
	__be32 front;
	__u8 addr[16];
};

/* An entry of stitch_grants: a pair slot and the gateway port toward the
 * backend that one new connection may take (the agent fills the queue
 * and gives them back when the connection ends). */
struct grant {
	__u32 slot;
	__be16 port;
	__u16 pad;
};

/* Value of stitch_openings (by slot): what the backend's SYN-ACK needs to
 * make the pair live. Sequence numbers are host order. */
struct opening {
	__u32 client_isn;   /* the client's first byte is client_isn + 1 */
	__u32 cookie;       /* the gateway's ISN toward the client */
	__u32 gw_isn;       /* the gateway's ISN toward the backend */
	__u32 gw_tsval;     /* the TSval of the gateway's SYN to the backend */
	__u32 synack_tsval; /* the TSval of the cookie SYN-ACK (the client's PAWS base) */
	__u16 client_win;   /* the window field of the client's first segment */
	__u8 client_ws;     /* the client's window shift; 0 if it has none */
	__u8 synack_ws;     /* the shift the cookie SYN-ACK advertised; 0 if none */
	__u8 ws_ok;         /* the client's SYN had a window shift (so ours did) */
	__u8 pool;          /* enum pool_index */
	__u8 rule;          /* the rule that decided, 0xff none */
	__u8 pad;
	__u64 started;      /* bpf_ktime_get_ns at the first segment */
};
