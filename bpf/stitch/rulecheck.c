//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rules.h's matcher alone, for pkg/stitch's tests (rules_test.go): run by
 * BPF_PROG_TEST_RUN on an Ethernet frame carrying IPv4 and TCP, rule_check
 * copies the TCP payload (at most FIRST_MAX bytes) into a per-CPU scratch
 * struct first, matches it against rule_sets[0] and stores the result in
 * rule_result[0]. It returns TC_ACT_OK whatever the result; a frame that
 * is not IPv4/TCP leaves rule_result alone.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rules.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct first);
	__uint(max_entries, 1);
} rule_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct rules);
	__uint(max_entries, 1);
} rule_sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, int);
	__uint(max_entries, 1);
} rule_result SEC(".maps");

SEC("tc")
int rule_check(struct __sk_buff *skb)
{
	__u32 zero = 0, off = sizeof(struct ethhdr), len;
	struct iphdr ip;
	struct tcphdr tcp;
	struct first *f;
	struct rules *r;
	int *res;

	if (skb->protocol != bpf_htons(ETH_P_IP) || bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) ||
	    ip.protocol != IPPROTO_TCP || ip.ihl < 5)
		return TC_ACT_OK;
	len = bpf_ntohs(ip.tot_len);
	off += ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)) || tcp.doff < 5)
		return TC_ACT_OK;
	off += tcp.doff * 4;
	if (len < (ip.ihl + tcp.doff) * 4u)
		return TC_ACT_OK;
	len -= (ip.ihl + tcp.doff) * 4u;

	f = bpf_map_lookup_elem(&rule_scratch, &zero);
	r = bpf_map_lookup_elem(&rule_sets, &zero);
	res = bpf_map_lookup_elem(&rule_result, &zero);
	if (!f || !r || !res)
		return TC_ACT_OK;
	if (len > FIRST_MAX)
		len = FIRST_MAX;
	f->len = len;
	/* The size in 1..FIRST_MAX as the verifier sees it: len itself. */
	if (len && bpf_skb_load_bytes(skb, off, f->data, ((len - 1) & (FIRST_MAX - 1)) + 1))
		return TC_ACT_OK;
	*res = rules_match(f, r);
	return TC_ACT_OK;
}
