/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel accept's hand-off (included by accept.h): a first segment the
 * kernel cannot decide on (the head not whole in it, not HTTP/1.x, over
 * one MSS, no backend) goes to the agent's listener, which accepts the
 * connection as if the stack had answered the SYN itself: the segment
 * gets a request socket built from what the cookie SYN-ACK and the
 * client agreed on (bpf_sk_assign_tcp_reqsk, Linux 6.9+, made for SYN
 * cookies of BPF), and the stack, taking it (cookie_v4_check), makes the
 * connection, in the listener's accept queue, with the segment's payload
 * already received. Its local address is the front's (VIP:port) and its
 * sequence numbers continue the cookie's, so the client sees no seam.
 *
 * The listeners (stitch_listener, key 0 IPv4, key 1 IPv6) are the agent's
 * transparent ones, put there by pkg/stitch (Kernel.SetListenerOf); the stack takes
 * the request only with net.ipv4.tcp_syncookies set (1 or 2) in the
 * listener's namespace, and delivers the segment only if the front's
 * address is local (a `local` route). A retransmission of a handed-off
 * segment (its cookie still proves) finds the connection's socket
 * (has_socket) and goes on to the stack.
 */
#pragma once

/* The kernel's socket, opaque here. Defined, not only declared:
 * cilium/ebpf checks the kfunc's prototype against the kernel's, kind by
 * kind (only the kind counts), and a forward declaration is not a struct. */
struct sock {
	__u8 opaque;
};

/* include/net/tcp.h's, as the kernel's BTF has it (20 bytes): the kfunc
 * refuses another size, or reserved bytes not zero. */
struct bpf_tcp_req_attrs {
	__u32 rcv_tsval; /* the client's TSval: the new socket's ts_recent */
	__u32 rcv_tsecr; /* the cookie SYN-ACK's TSval: its clock goes on from there */
	__u16 mss;
	__u8 rcv_wscale; /* the shift the SYN-ACK advertised */
	__u8 snd_wscale; /* the client's */
	__u8 ecn_ok;
	__u8 wscale_ok;
	__u8 sack_ok;
	__u8 tstamp_ok;
	__u8 usec_ts_ok;
	__u8 reserved[3];
};

extern int bpf_sk_assign_tcp_reqsk(struct __sk_buff *skb, struct sock *sk, struct bpf_tcp_req_attrs *attrs,
				   int attrs__sz) __ksym;

/* The agent's IPv4 listener, key 0. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2); /* 0: the IPv4 listener, 1: the IPv6 one */
} stitch_listener SEC(".maps");

/* Has the segment's tuple a socket of its own (established, closing or in
 * TIME_WAIT; a listener, which the lookup also answers with, does not
 * count)? A first segment handed off once, then sent again, has. */
static __always_inline int has_socket(struct __sk_buff *skb, const struct packet *p)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	int own;

	if (p->ipv6) {
		__builtin_memcpy(t.ipv6.saddr, p->key.saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, p->key.daddr, 16);
		t.ipv6.sport = p->key.sport;
		t.ipv6.dport = p->key.dport;
		sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	} else {
		__builtin_memcpy(&t.ipv4.saddr, &p->key.saddr[12], 4);
		__builtin_memcpy(&t.ipv4.daddr, &p->key.daddr[12], 4);
		t.ipv4.sport = p->key.sport;
		t.ipv4.dport = p->key.dport;
		sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return 0;
	/* A listener is not the connection's; nor is a TIME_WAIT socket of
	 * the tuple's previous connection (the client may reuse its port
	 * within it, behind a NAT): this connection is ours to decide. */
	own = sk->state != BPF_TCP_LISTEN && sk->state != BPF_TCP_TIME_WAIT;
	bpf_sk_release(sk);
	return own;
}

/* Hand the client's first segment (with timestamps: w->o) to the
 * listener, the SYN-ACK having advertised the window shift synack_ws.
 * Returns TC_ACT_OK (the stack delivers it to the new connection), or -1:
 * no listener, or the kernel refused. */
static __noinline int hand_off(struct __sk_buff *skb, const struct packet *p, const struct opt_walk *w,
				__u8 synack_ws)
{
	struct bpf_tcp_req_attrs attrs = {};
	struct bpf_sock *sk;
	__u32 family = p->ipv6 ? 1 : 0;
	__u8 bits;
	int err;

	if (!w->o.ts)
		return -1;
	bits = w->o.tsecr & TS_BITS;
	attrs.rcv_tsval = w->o.tsval;
	attrs.rcv_tsecr = w->o.tsecr;
	attrs.mss = mss_class[(bits >> TS_MSS_SHIFT) & 3];
	attrs.tstamp_ok = 1;
	attrs.sack_ok = (bits & TS_SACK) != 0;
	if ((bits & 15) != TS_WS_NONE) {
		attrs.wscale_ok = 1;
		attrs.snd_wscale = bits & 15;
		attrs.rcv_wscale = synack_ws > 14 ? 14 : synack_ws;
	}
	sk = bpf_map_lookup_elem(&stitch_listener, &family);
	if (!sk)
		return -1;
	err = bpf_sk_assign_tcp_reqsk(skb, (struct sock *)sk, &attrs, sizeof(attrs));
	bpf_sk_release(sk);
	if (err)
		return -1;
	count(STAT_ACCEPT_HANDED);
	return TC_ACT_OK;
}
