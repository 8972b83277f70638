/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Mirroring and capture of whole sampled flows.
 *
 * A flow is sampled once, at its first packet: a hash of its key
 * independent of the split's bucket (so the sample does not lean toward
 * either pool, see mirror_bucket_of) falls in a bucket 0..9999, and the flow is
 * copied to the mirror interface if the bucket is below the service's
 * interface share, to the capture ring if below its capture share. The
 * decision stays in the flow entry's flags, so every packet of a sampled
 * flow, both ways, is copied, and no packet of another; a share changed
 * later concerns new flows only, as a weight does.
 *
 * Copies show the packet as the client saw it: the client's packets
 * before their destination is rewritten, the backend's after their source
 * is (client <-> VIP). The interface copy is bpf_clone_redirect's, at the
 * tc hook only: XDP has no clone (such packets are counted, not copied,
 * see STAT_MIRROR_XDP). Capture copies go to one BPF ring buffer through
 * a per-CPU scratch record (the ring's reserve wants a constant size; the
 * scratch lets a record be as long as its packet).
 */
#pragma once

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "hash.h"

#define MIRROR_SEED 0x6d697272u /* "mirr": independent of HASH_SEED */

/* A capture record as built before it goes to the ring. */
struct capture_rec {
	struct capture_hdr hdr;
	__u8 data[CAPTURE_SNAP_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct capture_rec);
	__uint(max_entries, 1);
} capture_scratch SEC(".maps");

/*
 * The flow's mirror bucket, 0..WEIGHT_SCALE-1, from h, the hash of its key
 * the split computed (hash_key). Where that hash covers the whole flow key
 * (the 5-tuple; for gtpu-inner the UE, which is the flow), the bucket is
 * its second output, h.slot, the one the weight's bucket does not use,
 * reduced by its high bits (multiply-shift): independent of the pool, and
 * of the Maglev slot (h.slot's residue mod MAGLEV_SIZE), and no second
 * hash on the new-flow path. A service keyed by the client address hashes
 * only the address: there the whole flow key is hashed under MIRROR_SEED,
 * so that a client's flows are sampled one by one.
 */
static __always_inline __u32 mirror_bucket_of(const struct flow_key *fk, const struct hash2 *h)
{
	__u32 x = h->slot;

	if (fk->kind == KEY_CLIENT)
		x = jhash_10words((const __u32 *)fk, MIRROR_SEED).slot;
	return ((__u64)x * WEIGHT_SCALE) >> 32;
}

/* The mirror bucket of a flow known by its key only (a capture record). */
static __always_inline __u32 mirror_bucket(const struct flow_key *fk)
{
	struct hash2 h = hash_key(fk);

	return mirror_bucket_of(fk, &h);
}

/* Decide, for a new flow f with key fk and hash h, whether it is copied. */
static __always_inline void mirror_sample(struct flow *f, const struct flow_key *fk, const struct hash2 *h)
{
	__u32 id = f->svc_id, b;
	struct mirror *m = bpf_map_lookup_elem(&mirrors, &id);

	if (!m || !(m->iface_share | m->capture_share))
		return;
	b = mirror_bucket_of(fk, h);
	if (b < m->iface_share && m->ifindex)
		f->flags |= FLOW_F_MIRROR;
	if (b < m->capture_share && m->capture_epoch)
		f->flags |= (m->capture_epoch << CAPTURE_EPOCH_SHIFT) & FLOW_F_CAPTURE;
	if (f->flags & (FLOW_F_MIRROR | FLOW_F_CAPTURE))
		count(STAT_MIRROR_SAMPLED);
}

static __always_inline struct mirror_stats *mirror_stats_of(__u32 svc_id, __u8 pool)
{
	__u32 key = svc_id * POOL_COUNT + (pool & 1);

	return bpf_map_lookup_elem(&mirror_counters, &key);
}

/* Is a packet of a flow with these flags due in the running capture? */
static __always_inline int capture_due(const struct mirror *m, __u8 flags)
{
	return m->capture_epoch && ((flags & FLOW_F_CAPTURE) >> CAPTURE_EPOCH_SHIFT) == m->capture_epoch;
}

/* The scratch record, its header filled, and how many bytes of a packet
 * of len bytes it takes; 0 if there is no scratch or nothing to take. */
static __always_inline struct capture_rec *capture_start(const struct mirror *m, const struct flow_key *fk,
							 __u32 svc_id, __u8 pool, enum direction dir,
							 __u32 len, __u32 ifindex, __u32 *snap)
{
	__u32 zero = 0, n = m->capture_snap;
	struct capture_rec *rec = bpf_map_lookup_elem(&capture_scratch, &zero);

	if (!rec)
		return 0;
	if (n > len)
		n = len;
	if (n > CAPTURE_SNAP_MAX)
		n = CAPTURE_SNAP_MAX;
	rec->hdr.ts_ns = bpf_ktime_get_ns();
	rec->hdr.svc_id = svc_id;
	rec->hdr.len = len;
	rec->hdr.ifindex = ifindex;
	rec->hdr.snap = n;
	rec->hdr.bucket = mirror_bucket(fk);
	rec->hdr.pool = pool;
	rec->hdr.dir = dir;
	*snap = n;
	return rec;
}

/* snap (1..CAPTURE_SNAP_MAX) in a form the verifier sees is in range: a
 * compare does not survive the compiler, a mask does. */
_Static_assert((CAPTURE_SNAP_MAX & (CAPTURE_SNAP_MAX - 1)) == 0, "a power of two");
static __always_inline __u32 snap_bound(__u32 snap)
{
	snap -= 1;
	asm volatile("" : "+r"(snap));
	return (snap & (CAPTURE_SNAP_MAX - 1)) + 1;
}

/* Hand the record on to the ring, counting it or its drop. */
static __always_inline void capture_finish(struct capture_rec *rec, __u32 snap, __u32 svc_id, __u8 pool)
{
	struct mirror_stats *ms = mirror_stats_of(svc_id, pool);
	__u64 size = sizeof(rec->hdr) + snap;

	/* Bound the size on the register the helper reads. */
	asm volatile("" : "+r"(size));
	if (size > sizeof(*rec))
		return;
	/* No wakeup: the agent polls the ring (a wakeup costs the sending CPU
	 * ~3 us a record while the reader keeps up, see performance.md). */
	if (bpf_ringbuf_output(&capture_ring, rec, size, BPF_RB_NO_WAKEUP) != 0) {
		if (ms)
			ms->capture_dropped += 1;
		return;
	}
	if (ms) {
		ms->captured += 1;
		ms->captured_bytes += rec->hdr.len;
	}
}

/* Copy an skb (tc) to the ring. */
static __always_inline void capture_skb(struct __sk_buff *skb, const struct mirror *m, const struct flow_key *fk,
					__u32 svc_id, __u8 pool, enum direction dir)
{
	__u32 snap = 0;
	struct capture_rec *rec = capture_start(m, fk, svc_id, pool, dir, skb->len, skb->ifindex, &snap);

	if (!rec)
		return;
	if (snap < 1)
		return;
	snap = snap_bound(snap);
	if (bpf_skb_load_bytes(skb, 0, rec->data, snap) != 0)
		return;
	capture_finish(rec, snap, svc_id, pool);
}

/* Copy an XDP frame to the ring. */
static __always_inline void capture_xdp(struct xdp_md *ctx, const struct mirror *m, const struct flow_key *fk,
					__u32 svc_id, __u8 pool, enum direction dir)
{
	__u32 len = ctx->data_end - ctx->data, snap = 0;
	struct capture_rec *rec = capture_start(m, fk, svc_id, pool, dir, len, ctx->ingress_ifindex, &snap);

	if (!rec)
		return;
	if (snap < 1)
		return;
	snap = snap_bound(snap);
	if (bpf_xdp_load_bytes(ctx, 0, rec->data, snap) != 0)
		return;
	capture_finish(rec, snap, svc_id, pool);
}

/*
 * Copy a packet of a sampled flow (tc): a clone out of the mirror
 * interface, a record into the capture ring, as the flow's flags and the
 * service's settings now say. The clone carries a mark that tc_mirror_out,
 * on the mirror interface, reads to cut it to its snaplen; the packet's
 * own mark is restored. Packet pointers are stale afterwards.
 */
static __always_inline void mirror_skb(struct __sk_buff *skb, const struct flow_key *fk, __u8 flags,
				       __u32 svc_id, __u8 pool, enum direction dir)
{
	struct mirror *m = bpf_map_lookup_elem(&mirrors, &svc_id);
	struct mirror_stats *ms;

	if (!m)
		return;
	if ((flags & FLOW_F_MIRROR) && m->ifindex) {
		__u32 mark = skb->mark;
		int err;

		ms = mirror_stats_of(svc_id, pool);
		skb->mark = MIRROR_MARK | (svc_id & ~MIRROR_MARK_MASK);
		err = bpf_clone_redirect(skb, m->ifindex, 0);
		skb->mark = mark;
		if (ms && err) {
			ms->copy_failed += 1;
		} else if (ms) {
			ms->copies += 1;
			ms->copy_bytes += skb->len;
			if (skb->gso_segs > 1 && m->mtu && skb->len > m->mtu + 14)
				ms->copy_gso += 1;
		}
	}
	if (capture_due(m, flags))
		capture_skb(skb, m, fk, svc_id, pool, dir);
}

/*
 * At XDP, for a packet of a flow mirrored to an interface: 1 if the tc
 * program on the packet's interface is there to take it (it then does
 * all: steering, the clone, the capture), so XDP passes it untouched.
 * XDP has no clone; the sampled flows (a small share) take the skb path.
 */
static __always_inline int mirror_handoff(struct xdp_md *ctx, __u8 flags, __u32 svc_id)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct mirror *m;

	if (!(flags & FLOW_F_MIRROR))
		return 0;
	m = bpf_map_lookup_elem(&mirrors, &svc_id);
	if (!m || !m->ifindex || !bpf_map_lookup_elem(&tc_handoff, &ifindex))
		return 0;
	count(STAT_MIRROR_HANDOFF);
	return 1;
}

/* The same at XDP: the ring only (no clone here). */
static __always_inline void mirror_xdp(struct xdp_md *ctx, const struct flow_key *fk, __u8 flags,
				       __u32 svc_id, __u8 pool, enum direction dir)
{
	struct mirror *m = bpf_map_lookup_elem(&mirrors, &svc_id);

	if (!m)
		return;
	if ((flags & FLOW_F_MIRROR) && m->ifindex)
		count(STAT_MIRROR_XDP);
	if (capture_due(m, flags))
		capture_xdp(ctx, m, fk, svc_id, pool, dir);
}
