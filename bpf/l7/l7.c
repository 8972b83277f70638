//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Delayed binding for L7 services: the gateway accepts the client's TCP
 * connection itself, the agent reads the first request's head and connects
 * to the backend it picks, then the two sockets are spliced in the kernel.
 *
 *   l7_assign   tc ingress on the client-facing interface: a TCP packet to
 *               an L7 frontend (l7_frontends) is assigned to its
 *               connection's socket if there is one, else to the agent's
 *               transparent listener (l7_listener), with bpf_sk_assign.
 *               Anything else is left alone: TC_ACT_UNSPEC, which in a
 *               TCX chain runs the next program (the steering programs may
 *               be attached to the same hook) and at the end of the chain
 *               passes the packet to the stack. An assigned packet ends the
 *               chain (TC_ACT_OK): it is the stack's to deliver.
 *   l7_lookup   sk_lookup of the gateway's network namespace: where the
 *               kernel looks for a listener for a TCP packet to a local
 *               address, it names the transparent listener for an L7
 *               frontend. l7_assign gives a SYN to the listener itself; the
 *               one SYN it cannot place is one that reuses the tuple of a
 *               connection the gateway holds in TIME_WAIT (the gateway closes
 *               first whenever the backend does, forwarding its FIN). That
 *               SYN goes to the time-wait socket, and the kernel takes it as
 *               a new connection only if a listener lookup for VIP:port finds
 *               one, which without l7_lookup none does: the time-wait socket
 *               answers an ACK, the client resets it and retransmits its SYN
 *               8-16 ms later. Measured as the L7 first request's p99.
 *   l7_splice   sk_skb stream verdict of l7_socks: every skb a spliced
 *               socket receives is redirected to the egress of its peer
 *               (l7_peers gives the peer's cookie, l7_targets the socket),
 *               unless the socket is held (see Backpressure).
 *
 * Backpressure: a skb redirected to a peer's egress waits in the peer's
 * psock queue, charged to no socket's receive buffer, until a kworker
 * sends it; the kernel does not bound that queue, so a backend that stops
 * reading would let a client fill the gateway's memory. Nor can a
 * direction be paused by taking its socket out of l7_socks: skbs the
 * kernel is handing to the verdict at that moment find no program and are
 * dropped, their bytes already acknowledged. So when a socket's peer holds
 * more than max_inflight bytes unacknowledged, l7_splice marks the socket
 * held (struct peer) and passes its later skbs to its own queue
 * (SK_PASS), where they are charged to its receive buffer, so that TCP's
 * window stops the sender; the agent, woken by that data, copies the rest
 * of that direction in user space, in order, once the peer's send queue
 * has taken what was redirected.
 *
 * Why two socket maps: the verdict program is attached to l7_socks, and a
 * socket's verdict starts running the moment it joins that map. Its peer
 * must already be a valid redirect target then, or the first bytes would be
 * dropped. So the agent first puts both sockets in l7_targets (no programs),
 * then both in l7_socks; the verdict redirects through l7_targets.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "l7.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Sizes here are placeholders: pkg/l7splice sets max_entries before load. */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct frontend_key);
	__type(value, struct frontend);
	__uint(max_entries, 1024);
} l7_frontends SEC(".maps");

/* The agent's transparent listening sockets (value: a socket fd on update). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, LISTENER_SLOTS);
} l7_listener SEC(".maps");

/* Spliced sockets by cookie; l7_splice is attached here. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 8192);
} l7_socks SEC(".maps");

/* The same sockets, by cookie, as redirect targets only (no programs). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 8192);
} l7_targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64); /* socket cookie */
	__type(value, struct peer);
	__uint(max_entries, 8192);
} l7_peers SEC(".maps");

/* Bytes a spliced socket's peer may hold unacknowledged (its send queue
 * and psock backlog) before l7_splice holds the socket; 0: never. Set at
 * load. */
volatile const __u64 max_inflight = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STAT_COUNT);
} l7_stats SEC(".maps");

static __always_inline void add(enum stat s, __u64 n)
{
	__u32 key = s;
	__u64 *v = bpf_map_lookup_elem(&l7_stats, &key);

	if (v)
		*v += n;
}

/* What l7_assign needs of a packet: the socket tuple and the frontend key. */
struct tcp_packet {
	struct bpf_sock_tuple tuple;
	__u32 ipv6; /* the tuple is tuple.ipv6 */
	struct frontend_key key;
};

enum parsed {
	PARSED_TCP = 0,
	PARSED_OTHER,  /* not TCP over IP: not ours */
	PARSED_ODD,    /* IP we do not parse (fragments, IPv6 extension headers) */
};

static __always_inline void v4_mapped(__u8 dst[16], __be32 v4)
{
	__u32 *w = (__u32 *)dst;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	w[3] = v4;
}

static __always_inline enum parsed parse_v4(void *l3, void *end, struct tcp_packet *p)
{
	struct iphdr *ip = l3;
	struct tcphdr *tcp;

	if ((void *)(ip + 1) > end)
		return PARSED_ODD;
	if (ip->protocol != IPPROTO_TCP)
		return PARSED_OTHER;
	if (ip->ihl < 5 || (ip->frag_off & bpf_htons(0x3fff)))
		return PARSED_ODD; /* options are fine; fragments are not */
	tcp = l3 + ip->ihl * 4;
	if ((void *)(tcp + 1) > end)
		return PARSED_ODD;
	p->tuple.ipv4.saddr = ip->saddr;
	p->tuple.ipv4.daddr = ip->daddr;
	p->tuple.ipv4.sport = tcp->source;
	p->tuple.ipv4.dport = tcp->dest;
	v4_mapped(p->key.addr, ip->daddr);
	p->key.port = tcp->dest;
	return PARSED_TCP;
}

static __always_inline enum parsed parse_v6(void *l3, void *end, struct tcp_packet *p)
{
	struct ipv6hdr *ip6 = l3;
	struct tcphdr *tcp;

	if ((void *)(ip6 + 1) > end)
		return PARSED_ODD;
	if (ip6->nexthdr != IPPROTO_TCP)
		return ip6->nexthdr == IPPROTO_UDP ? PARSED_OTHER : PARSED_ODD;
	tcp = (void *)(ip6 + 1);
	if ((void *)(tcp + 1) > end)
		return PARSED_ODD;
	__builtin_memcpy(p->tuple.ipv6.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->tuple.ipv6.daddr, &ip6->daddr, 16);
	p->tuple.ipv6.sport = tcp->source;
	p->tuple.ipv6.dport = tcp->dest;
	p->ipv6 = 1;
	__builtin_memcpy(p->key.addr, &ip6->daddr, 16);
	p->key.port = tcp->dest;
	return PARSED_TCP;
}

static __always_inline enum parsed parse(struct __sk_buff *skb, struct tcp_packet *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return PARSED_OTHER;
	p->key.proto = IPPROTO_TCP;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return parse_v4(eth + 1, end, p);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return parse_v6(eth + 1, end, p);
	return PARSED_OTHER;
}

/*
 * The connection's own socket, if it has one that is not a listener: an
 * established socket, a request socket (the handshake's last ACK) or a
 * time-wait one. NULL otherwise; the caller releases what it gets.
 */
static __always_inline struct bpf_sock *own_socket(struct __sk_buff *skb, struct tcp_packet *p)
{
	struct bpf_sock *sk;

	/* The tuple's size must be a constant for the verifier. */
	if (p->ipv6)
		sk = bpf_skc_lookup_tcp(skb, &p->tuple, sizeof(p->tuple.ipv6), BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_skc_lookup_tcp(skb, &p->tuple, sizeof(p->tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return NULL;
	if (sk->state == BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

SEC("tc")
int l7_assign(struct __sk_buff *skb)
{
	struct tcp_packet p = {};
	struct frontend *fe;
	struct bpf_sock *sk;
	enum stat assigned;
	__u32 slot;
	long err;

	switch (parse(skb, &p)) {
	case PARSED_TCP:
		break;
	case PARSED_ODD:
		add(STAT_UNPARSED, 1);
		return TC_ACT_UNSPEC;
	default:
		return TC_ACT_UNSPEC;
	}
	fe = bpf_map_lookup_elem(&l7_frontends, &p.key);
	if (!fe)
		return TC_ACT_UNSPEC;
	add(STAT_FRONTEND, 1);
	slot = fe->listener;

	sk = own_socket(skb, &p);
	assigned = STAT_ASSIGN_ESTABLISHED;
	if (!sk) {
		sk = bpf_map_lookup_elem(&l7_listener, &slot);
		assigned = STAT_ASSIGN_LISTENER;
		if (!sk) {
			add(STAT_NO_LISTENER, 1);
			return TC_ACT_UNSPEC;
		}
		if (sk->state != BPF_TCP_LISTEN) {
			bpf_sk_release(sk);
			add(STAT_NO_LISTENER, 1);
			return TC_ACT_UNSPEC;
		}
	}
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		add(STAT_ASSIGN_FAILED, 1);
		return TC_ACT_SHOT;
	}
	add(assigned, 1);
	return TC_ACT_OK;
}

/*
 * l7_return: tc ingress on a backend-facing interface, with l7.source:
 * client. The agent connects to a backend from the client's address (an
 * IP_TRANSPARENT socket bound to it), so the backend answers the client's
 * address and the stack, left alone, would forward the answer to the
 * client. A packet that belongs to one of the gateway's own sockets (its
 * tuple finds an established or connecting one) is marked, and the
 * agent's policy rule (fwmark L7_RETURN_MARK) routes marked packets
 * locally, where the stack finds the socket. Other packets are left to the
 * next program and the stack.
 */
SEC("tc")
int l7_return(struct __sk_buff *skb)
{
	struct tcp_packet p = {};
	struct bpf_sock *sk;

	if (parse(skb, &p) != PARSED_TCP)
		return TC_ACT_UNSPEC;
	sk = own_socket(skb, &p);
	if (!sk)
		return TC_ACT_UNSPEC;
	bpf_sk_release(sk);
	skb->mark = L7_RETURN_MARK;
	add(STAT_RETURN_MARKED, 1);
	return TC_ACT_UNSPEC;
}

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

SEC("sk_lookup")
int l7_lookup(struct bpf_sk_lookup *ctx)
{
	struct frontend_key key = {};
	struct frontend *fe;
	struct bpf_sock *sk;
	__u32 *w = (__u32 *)key.addr;
	__u32 slot;
	long err;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	if (ctx->family == AF_INET) {
		v4_mapped(key.addr, ctx->local_ip4);
	} else if (ctx->family == AF_INET6) {
		/* Word by word: the context allows loads, not a memcpy. */
		w[0] = ctx->local_ip6[0];
		w[1] = ctx->local_ip6[1];
		w[2] = ctx->local_ip6[2];
		w[3] = ctx->local_ip6[3];
	} else {
		return SK_PASS;
	}
	key.port = bpf_htons(ctx->local_port); /* host order in the context */
	key.proto = IPPROTO_TCP;
	fe = bpf_map_lookup_elem(&l7_frontends, &key);
	if (!fe)
		return SK_PASS;
	slot = fe->listener;
	sk = bpf_map_lookup_elem(&l7_listener, &slot);
	if (!sk) {
		add(STAT_NO_LISTENER, 1);
		return SK_PASS;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	add(err ? STAT_LOOKUP_FAILED : STAT_LOOKUP_LISTENER, 1);
	return SK_PASS;
}

/* The one field of the kernel's struct tcp_sock l7_splice reads, located
 * by CO-RE against the running kernel's BTF (bpf_tcp_sock() is not
 * available to sk_skb programs, bpf_skc_to_tcp_sock() is). */
struct tcp_sock {
	__u64 bytes_acked;
} __attribute__((preserve_access_index));

/* Whether the peer holds more than max_inflight bytes unacknowledged. */
static __always_inline int congested(struct peer *p)
{
	struct tcp_sock *tp;
	struct bpf_sock *sk;
	__u64 target = p->peer, inflight = 0;

	sk = bpf_map_lookup_elem(&l7_targets, &target);
	if (!sk)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp)
		inflight = p->base + p->bytes - tp->bytes_acked;
	bpf_sk_release(sk);
	return inflight > max_inflight;
}

SEC("sk_skb/stream_verdict")
int l7_splice(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u32 len = skb->len;
	struct peer *p;
	__u64 target;

	p = bpf_map_lookup_elem(&l7_peers, &cookie);
	if (!p) {
		add(STAT_SPLICE_NO_PEER, 1);
		return SK_DROP;
	}
	/* A FIN that carries no data arrives as an empty skb. Redirected, it
	 * would make the peer's sender see a zero-length send, which breaks
	 * its pipe (EPIPE). The FIN itself is already known to TCP: the agent
	 * forwards it with shutdown(2). */
	if (len == 0) {
		add(STAT_SPLICE_EMPTY, 1);
		return SK_DROP;
	}
	if (p->held) {
		__sync_fetch_and_add(&p->held_bytes, len);
		add(STAT_SPLICE_HELD, 1);
		add(STAT_SPLICE_HELD_BYTES, len);
		return SK_PASS;
	}
	target = p->peer;
	if (bpf_sk_redirect_hash(skb, &l7_targets, &target, 0) != SK_PASS) {
		add(STAT_SPLICE_NO_TARGET, 1);
		return SK_DROP;
	}
	__sync_fetch_and_add(&p->bytes, len);
	__sync_fetch_and_add(&p->packets, 1);
	add(STAT_SPLICE_PACKETS, 1);
	add(STAT_SPLICE_BYTES, len);
	if (max_inflight && congested(p)) {
		/* This skb is on its way; the next ones stay here. */
		p->held = 1;
		add(STAT_SPLICE_CONGESTED, 1);
	}
	return SK_PASS;
}
