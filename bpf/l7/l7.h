/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The types l7.c shares with Go (pkg/l7splice): the keys and values of its
 * maps and the enums both sides index by. bpf2go exports every one (see
 * bpf2go.sh); neither side keeps a hand-written copy of the other's layout.
 *
 * Addresses are 16 bytes, IPv4 stored IPv4-mapped (::ffff:a.b.c.d), as in
 * the steering programs' struct endpoint: Go's netip.Addr.As16() is exactly
 * this form.
 */
#pragma once

#include <linux/types.h>

/* Key of l7_frontends: a destination the gateway terminates itself. */
struct frontend_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto; /* IPPROTO_TCP */
	__u8 pad;
};

/* Value of l7_frontends. */
struct frontend {
	__u32 listener; /* key of the listening socket in l7_listener */
	__u32 flags;    /* none yet; 0 */
};

/*
 * Value of l7_peers, keyed by a spliced socket's cookie: where the bytes
 * that socket receives go, and how many went. The counters are updated
 * atomically by the verdict program, read by Go.
 */
struct peer {
	__u64 peer;    /* the peer socket's cookie: its key in l7_targets */
	__u64 bytes;   /* bytes received on this socket and redirected */
	__u64 packets; /* skbs redirected */
	/* The peer's bytes written (acknowledged + queued) when the splice
	 * began, counted like its bytes_acked: base + bytes - bytes_acked is
	 * what the gateway holds for the peer to send, its backlog included. */
	__u64 base;
	/* Set by l7_splice, never cleared: the peer held more than
	 * max_inflight, and from then on this socket's skbs stay in its own
	 * receive queue (SK_PASS) for user space to copy. */
	__u32 held;
	__u32 pad;
	__u64 held_bytes; /* bytes passed to user space since */
};

enum limits {
	/* l7_listener slots: the agent uses one per address family. */
	LISTENER_SLOTS = 16,
	/* skb->mark of a backend's packet to one of the gateway's own
	 * sockets (l7_return); the agent routes it locally by this mark. */
	L7_RETURN_MARK = 0x6c37,
};

/* Indexes of the per-CPU stats array. */
enum stat {
	/* l7_assign (tc ingress, client side) */
	STAT_FRONTEND = 0,        /* TCP packets to an L7 frontend */
	STAT_ASSIGN_ESTABLISHED,  /* assigned to the connection's own socket */
	STAT_ASSIGN_LISTENER,     /* assigned to the transparent listener */
	STAT_NO_LISTENER,         /* no listener in the frontend's slot: passed */
	STAT_ASSIGN_FAILED,       /* bpf_sk_assign failed: dropped */
	STAT_UNPARSED,            /* IP/TCP the program does not parse: passed */
	/* l7_lookup (sk_lookup, the gateway's namespace) */
	STAT_LOOKUP_LISTENER,     /* a listener lookup for a frontend answered */
	STAT_LOOKUP_FAILED,       /* bpf_sk_assign refused the listener */
	/* l7_return (tc ingress, backend side) */
	STAT_RETURN_MARKED,       /* a backend's packet to a gateway socket, marked */
	/* l7_splice (sk_skb stream verdict) */
	STAT_SPLICE_PACKETS,      /* skbs redirected to the peer socket */
	STAT_SPLICE_BYTES,        /* their bytes */
	STAT_SPLICE_NO_PEER,      /* socket without an l7_peers entry: dropped */
	STAT_SPLICE_NO_TARGET,    /* peer gone from l7_targets: dropped */
	STAT_SPLICE_EMPTY,        /* zero-length skb (a bare FIN): dropped */
	STAT_SPLICE_CONGESTED,    /* a socket's peer passed max_inflight */
	STAT_SPLICE_HELD,         /* skbs of held sockets, passed to user space */
	STAT_SPLICE_HELD_BYTES,   /* their bytes */
	STAT_COUNT,
};

/* Names every enum above in one type so that it reaches BTF, from which
 * bpf2go generates the Go constants. Never read or written. */
struct enums {
	enum limits limits;
	enum stat stat;
};
struct enums *unused_enums __attribute__((unused));
