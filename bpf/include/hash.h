/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Bob Jenkins' lookup3 over 32-bit words (the kernel's jhash2), fully
 * unrolled for the fixed key sizes we hash. The seeds are constants, not per
 * host: every gateway of a fleet must put a key in the same bucket so that a
 * client moved between gateways by ECMP keeps its pool.
 */
#pragma once

#include <linux/types.h>

#include "types.h"

#define HASH_SEED 0x67726179u /* "gray" */

/* Two independent 32-bit hashes of one key from one jhash run (c and b of
 * lookup3's final state, as Jenkins' hashlittle2 returns them): one picks
 * the weight bucket, the other the Maglev slot, so the backend inside a
 * pool does not correlate with the bucket. */
struct hash2 {
	__u32 bucket;
	__u32 slot;
};

static __always_inline __u32 rol32(__u32 word, unsigned int shift)
{
	return (word << shift) | (word >> ((-shift) & 31));
}

#define JHASH_MIX(a, b, c)                    \
	do {                                  \
		a -= c; a ^= rol32(c, 4);  c += b; \
		b -= a; b ^= rol32(a, 6);  a += c; \
		c -= b; c ^= rol32(b, 8);  b += a; \
		a -= c; a ^= rol32(c, 16); c += b; \
		b -= a; b ^= rol32(a, 19); a += c; \
		c -= b; c ^= rol32(b, 4);  b += a; \
	} while (0)

#define JHASH_FINAL(a, b, c)                  \
	do {                                  \
		c ^= b; c -= rol32(b, 14); \
		a ^= c; a -= rol32(c, 11); \
		b ^= a; b -= rol32(a, 25); \
		c ^= b; c -= rol32(b, 16); \
		a ^= c; a -= rol32(c, 4);  \
		b ^= a; b -= rol32(a, 14); \
		c ^= b; c -= rol32(b, 24); \
	} while (0)

/* jhash2 of 4 words (a 16-byte address). */
static __always_inline struct hash2 jhash_4words(const __u32 *k, __u32 seed)
{
	__u32 a, b, c;

	a = b = c = 0xdeadbeef + (4 << 2) + seed;
	a += k[0];
	b += k[1];
	c += k[2];
	JHASH_MIX(a, b, c);
	a += k[3];
	JHASH_FINAL(a, b, c);
	return (struct hash2){ .bucket = c, .slot = b };
}

/* jhash2 of 10 words (a struct flow_key). */
static __always_inline struct hash2 jhash_10words(const __u32 *k, __u32 seed)
{
	__u32 a, b, c;

	a = b = c = 0xdeadbeef + (10 << 2) + seed;
	a += k[0];
	b += k[1];
	c += k[2];
	JHASH_MIX(a, b, c);
	a += k[3];
	b += k[4];
	c += k[5];
	JHASH_MIX(a, b, c);
	a += k[6];
	b += k[7];
	c += k[8];
	JHASH_MIX(a, b, c);
	a += k[9];
	JHASH_FINAL(a, b, c);
	return (struct hash2){ .bucket = c, .slot = b };
}

/* Which address decides the pool of a new flow, for pins and for the
 * client/gtpu-inner hashes. For the 5-tuple it is the client address. */
static __always_inline const __u8 *key_address(const struct flow_key *fk)
{
	return fk->src;
}

/* Hash a flow's key for one purpose (seed): the whole tuple for KEY_FLOW,
 * the key address alone for KEY_CLIENT and KEY_GTPU_INNER. */
_Static_assert(sizeof(struct flow_key) == 40, "jhash_10words hashes a 40-byte flow key");

static __always_inline struct hash2 hash_key(const struct flow_key *fk)
{
	if (fk->kind == KEY_FLOW)
		return jhash_10words((const __u32 *)fk, HASH_SEED);
	return jhash_4words((const __u32 *)key_address(fk), HASH_SEED);
}
