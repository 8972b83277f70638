/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The types stitch.c shares with Go (pkg/stitch): the keys and values of
 * its maps. bpf2go exports every one (see bpf2go.sh). Addresses are 16
 * bytes, IPv4 stored IPv4-mapped (::ffff:a.b.c.d), Go's netip.Addr.As16().
 */
#pragma once

#include <linux/types.h>

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
	__u8 pad[2];
	/* The last acknowledgement number the sender sent, in the receiving
	 * socket's send space: held, piggybacked on data the hold dropped
	 * too (the stitch waits for it); live, from the socket's state at
	 * the stitch on (the agent's resets carry it). */
	__u32 seen_ack;
	__u64 packets;
	__u64 bytes;
};

/* Value of stitch_pairs: a stitched connection, both directions. */
struct pair {
	struct dir dir[2];
	/* 1 while the agent makes the sockets quiet: nothing is rewritten;
	 * pure ACKs, FINs and resets go on to the sockets, data and SYNs are
	 * dropped (their senders send them again once the pair is live), and
	 * each direction's acknowledgement is recorded. */
	__u32 hold;
	__u32 pad;
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
	STAT_COUNT = 7,
};
