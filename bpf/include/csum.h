/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Incremental Internet checksum updates (RFC 1624). XDP frames always carry
 * complete checksums; the TC programs use these too where they can read an
 * skb's checksum state, and the kernel's helpers where they cannot (see
 * tc_rewrite in steer.c).
 *
 * Sums are 32-bit one's-complement accumulators over the words as they lie
 * in memory; the result is independent of host byte order (RFC 1071).
 */
#pragma once

#include <linux/types.h>

static __always_inline __u32 csum_add(__u32 sum, __u32 addend)
{
	sum += addend;
	return sum + (sum < addend);
}

static __always_inline __u32 csum_sub(__u32 sum, __u32 addend)
{
	return csum_add(sum, ~addend);
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The difference that replacing 16 bytes (4 words) from -> to makes. */
static __always_inline __u32 csum_diff16(const __u32 *from, const __u32 *to)
{
	__u32 diff = 0;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		diff = csum_sub(diff, from[i]);
		diff = csum_add(diff, to[i]);
	}
	return diff;
}

/* Apply a difference to a stored checksum field. */
static __always_inline void csum_apply(__u16 *check, __u32 diff)
{
	*check = csum_fold(csum_add(~(__u32)*check, diff));
}

/* Apply a difference to a partial checksum's field, as the kernel does
 * for CHECKSUM_PARTIAL (inet_proto_csum_replace*): the field holds the
 * folded pseudo-header sum, not complemented, which offload completes. */
static __always_inline void csum_apply_partial(__u16 *check, __u32 diff)
{
	*check = ~csum_fold(csum_add((__u32)*check, diff));
}

/* csum_apply (csum_apply_partial if partial) for a UDP checksum: 0 means
 * "no checksum" (IPv4) and must stay 0; a computed 0 is sent as 0xffff
 * (what bpf_l4_csum_replace does with BPF_F_MARK_MANGLED_0). */
static __always_inline void csum_apply_udp(__u16 *check, __u32 diff, int partial)
{
	if (*check == 0)
		return;
	if (partial)
		csum_apply_partial(check, diff);
	else
		csum_apply(check, diff);
	if (*check == 0)
		*check = 0xffff;
}
