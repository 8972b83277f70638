/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The pending table: where a new flow waits for its proof (see the pending
 * map in maps.h), set-associative instead of a hash map.
 *
 * Why: a SYN is the packet an attacker sends at will, and every SYN makes
 * a pending record. An LRU hash insert (a bucket lock, the free list, the
 * LRU list, a copy of key and value into a node anywhere in memory) costs
 * about Katran's whole new flow here, and under a flood it evicts on every
 * insert. A record here is written in place: the key's hash picks a
 * bucket of PENDING_WAYS records, a SYN takes the record with its key (a
 * retransmission), else an empty one, else a finished one (an answered
 * UDP exchange), else the bucket's oldest (FIFO, by the bucket's
 * counter). A bucket spans a few cache lines; nothing is
 * locked, nothing allocated, and the cost is the same whether the table
 * is empty or flooded.
 *
 * What it gives up: a handshake survives until PENDING_WAYS more new flows
 * land in its bucket before it completes (the LRU kept it until the whole
 * table's size had), so size the table for the flood rate x round trip
 * (flowTable/4 records by default). Records are not locked: two CPUs
 * writing one bucket at once (two new flows with the same bucket within
 * nanoseconds) may lose one of them, which then goes on as a stray. The
 * tag is cleared before a record is written and set after, so a reader
 * that matches a tag and key reads that key's flow, or one being replaced
 * by a newer one whose backend then does not match (its reply passes, as
 * for an evicted record). The tags (a word of the key's hash each) sit
 * together at the bucket's head: a SYN reads one cache line to find its
 * way and writes one record.
 *
 * A record leaves when its flow is confirmed (moved to flows), or when the
 * sweep finds it idle and waiting on nothing (sweep.h).
 */
#pragma once

#include "maps.h"
#include "hash.h"

/* A key's hash: jhash over the whole key (its ports too, also for
 * services keyed by client address, whose weight hash leaves them out).
 * .bucket picks the bucket, .slot makes the tag. For 5-tuple keys this is
 * the weight hash itself, so the new-flow path passes it in instead of
 * hashing twice. */
static __always_inline struct hash2 pending_hash(const struct flow_key *fk)
{
	return jhash_10words((const __u32 *)fk, HASH_SEED);
}

/* A tag's bit that marks a finished record: a UDP exchange the backend
 * answered, which waits only for the client to send again (a one-shot
 * exchange, a DNS query, never does). A full bucket gives up such a
 * record first, and without counting it: a busy request/response service
 * does not look like a flood, and its answered exchanges do not push live
 * handshakes out. */
#define PENDING_TAG_DONE 2u

/* The tag of a key with hash h: never 0, which marks an empty record, and
 * without PENDING_TAG_DONE, which comparisons leave out. */
static __always_inline __u32 pending_tag(struct hash2 h)
{
	return (h.slot | 1) & ~PENDING_TAG_DONE;
}

static __always_inline struct pending_bucket *pending_bucket_of(struct hash2 h)
{
	__u32 idx = h.bucket % pending_buckets;

	return bpf_map_lookup_elem(&pending, &idx);
}

/* Are two flow keys equal? Word by word, the words that differ most often
 * first: the ports, then the last word of each address (an IPv4 address
 * is the last word of its mapped form). */
static __always_inline int key_equal(const struct flow_key *a, const struct flow_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[8] == y[8] && x[3] == y[3] && x[9] == y[9] && x[7] == y[7] && x[0] == y[0] &&
	       x[1] == y[1] && x[2] == y[2] && x[4] == y[4] && x[5] == y[5] && x[6] == y[6];
}

/* The way of bucket b that holds key fk (of tag tag), or -1: the search
 * both global functions below make. */
static __always_inline int way_of(const struct pending_bucket *b, const struct flow_key *fk, __u32 tag)
{
	for (int i = 0; i < PENDING_WAYS; i++) {
		if ((b->tag[i] & ~PENDING_TAG_DONE) == tag && key_equal(&b->way[i].key, fk))
			return i;
	}
	return -1;
}

/* The way of bucket b that holds key fk (of tag tag), or -1. Global
 * functions, like pending_place below: the verifier checks each once, not
 * its loop's branches once per path of every caller (inlined into the
 * steering programs, they made them too large to verify). A global
 * function returns only a scalar, so the callers index the bucket
 * themselves. */
__attribute__((noinline)) int pending_way(const struct pending_bucket *b, const struct flow_key *fk, __u32 tag)
{
	return b && fk ? way_of(b, fk, tag) : -1;
}

/* Flag of pending_place's answer: the key had its record already. */
#define PENDING_EXISTED 0x100

/* The way of bucket b that a new record of key fk (of tag tag) takes: the
 * one that holds fk already (with PENDING_EXISTED), else an empty one,
 * else a finished one (PENDING_TAG_DONE), else the bucket's oldest
 * (counted: a pending flow replaced). -1 on no bucket. */
__attribute__((noinline)) int pending_place(struct pending_bucket *b, const struct flow_key *fk, __u32 tag)
{
	__u32 n;
	int i;

	if (!b || !fk)
		return -1;
	i = way_of(b, fk, tag);
	if (i >= 0)
		return i | PENDING_EXISTED;
	for (i = 0; i < PENDING_WAYS; i++) {
		if (!b->tag[i])
			return i;
	}
	for (i = 0; i < PENDING_WAYS; i++) {
		if (b->tag[i] & PENDING_TAG_DONE)
			return i;
	}
	n = b->next;
	b->next = n + 1;
	count(STAT_PENDING_REPLACED);
	return n % PENDING_WAYS;
}

/* A record of the pending table: its bucket and way. */
struct pending_ref {
	struct pending_bucket *b;
	int w;
};

/* The record ref points at, or 0 if it points at none. */
static __always_inline struct pending_rec *pending_rec_of(struct pending_ref ref)
{
	if (!ref.b || (__u32)ref.w >= PENDING_WAYS)
		return 0;
	/* The mask, though redundant, is what the verifier bounds the
	 * index by whatever the compiler made of the check above. */
	return &ref.b->way[ref.w & (PENDING_WAYS - 1)];
}

/* The tag of the record ref points at, or 0 if it points at none. */
static __always_inline __u32 *pending_tag_at(struct pending_ref ref)
{
	if (!ref.b || (__u32)ref.w >= PENDING_WAYS)
		return 0;
	return &ref.b->tag[ref.w & (PENDING_WAYS - 1)];
}

/* The pending record of key fk, or 0; *ref says where it is (for
 * pending_clear). */
static __always_inline struct pending_rec *pending_find(const struct flow_key *fk, struct pending_ref *ref)
{
	struct hash2 h = pending_hash(fk);

	ref->b = pending_bucket_of(h);
	ref->w = ref->b ? pending_way(ref->b, fk, pending_tag(h)) : -1;
	return pending_rec_of(*ref);
}

/* A store barrier for the compiler (x86 and arm64 keep the order of
 * stores to one line for other CPUs as far as a reader here needs: see
 * the file's comment). */
#define pending_barrier() asm volatile("" ::: "memory")

/* Mark the record ref points at finished (PENDING_TAG_DONE). */
static __always_inline void pending_done(struct pending_ref ref)
{
	__u32 *tag = pending_tag_at(ref);

	if (tag)
		*tag |= PENDING_TAG_DONE;
}

/* Empty the record ref points at (its flow confirmed, or idle). */
static __always_inline void pending_clear(struct pending_ref ref)
{
	struct pending_rec *r = pending_rec_of(ref);
	__u32 *tag = pending_tag_at(ref);

	if (!r || !tag)
		return;
	*tag = 0;
	r->key.proto = 0;
}

/*
 * Make the pending record of key fk (whose pending_hash is h) hold f. If
 * fk has a record already (a retransmitted SYN, or another CPU was
 * first), that record is returned unchanged and *existed is 1: the flow
 * follows it. Returns 0 only if the bucket cannot be read.
 */
static __always_inline struct pending_rec *pending_add(const struct flow_key *fk, struct hash2 h,
						       const struct flow *f, int *existed)
{
	struct pending_ref ref = { .b = pending_bucket_of(h) };
	__u32 tag = pending_tag(h), *tagp;
	struct pending_rec *r;
	int w;

	*existed = 0;
	if (!ref.b)
		return 0;
	w = pending_place(ref.b, fk, tag);
	if (w >= 0 && (w & PENDING_EXISTED)) {
		*existed = 1;
		ref.w = w & ~PENDING_EXISTED;
		return pending_rec_of(ref);
	}
	ref.w = w;
	r = pending_rec_of(ref);
	tagp = pending_tag_at(ref);
	if (!r || !tagp)
		return 0;
	/* Tag off, the flow, the key, tag on: see the file's comment. */
	*tagp = 0;
	pending_barrier();
	r->flow = *f;
	r->key = *fk;
	pending_barrier();
	*tagp = tag;
	return r;
}
