/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header rules in the kernel: which of a service's header rules the first
 * request of a new connection matches, judged from the bytes of its first
 * TCP segment, so that a tc program can route the connection by a header
 * without a user-space proxy. The semantics are pkg/match's (match.go):
 *
 *   - Rules are tried in order; the first that matches any header line
 *     wins (rules_match returns its index).
 *   - Header names are compared case-insensitively (a rule's name is
 *     stored lower case; the request's name bytes are lowered). A header
 *     that appears several times matches when any one of its values does.
 *   - A value is the field line's value with leading and trailing spaces
 *     and tabs removed, matched whole (not split on commas).
 *     RULE_EXACT: equal bytes, case-sensitive. RULE_PREFIX: the value
 *     starts with the rule's. RULE_PRESENT: any value, even empty. As in
 *     match.go, an exact or prefix rule with an empty value never matches.
 *   - A rule whose name starts with ':' (the pseudo-headers :method,
 *     :path, :authority, :scheme) never matches here: they are filled from
 *     the request line in user space, and the caller does not put such
 *     rules in the kernel. Nor does a rule with a name_len out of
 *     1..RULE_NAME_MAX, a value_len over RULE_VALUE_MAX or an unknown kind.
 *
 * What is a head here (stricter than pkg/httphead, which the caller falls
 * back to): the request line is TOKEN SP TARGET SP HTTP/1.x CRLF, at its
 * very first byte (no empty lines before it); each header line is a token,
 * a colon, and a value without control characters other than tab (bytes
 * 0x80 and up are allowed); lines end in CRLF only (a bare LF or a bare CR
 * is malformed); an empty line (CRLF) ends the head. obs-fold (a line
 * starting with a space or tab) and whitespace before the colon are
 * malformed. Bytes after the head (a body, a pipelined request) are not
 * looked at.
 *
 * The walk is a byte-level state machine, one bpf_loop step per byte of
 * at most FIRST_MAX: for the header name being read, a bitmask of the
 * rules whose names still match it; for the value, a bitmask of the rules
 * whose value bytes still match it, and where its last non-blank byte was
 * (the trailing blanks trimmed). Positions are kept as the offsets where
 * a name or value began, never as counters; every index into the
 * segment is masked (& (FIRST_MAX - 1)) and every index into a rule's
 * name or value checked against the array's size, so every access is in
 * bounds whatever the verifier knows of the offset.
 *
 * What the verifier needs (kernel 6.18): it checks a bpf_loop callback
 * again for each state it is entered with, until that state is within
 * one seen before, and inside a loop it merges paths only when they are
 * exactly equal. So the step keeps no state of its own that the verifier
 * could tell apart: the walk's state is in a per-CPU map value
 * (rules_walk; what is loaded from a map value is an unknown number every
 * time), and the per-rule comparisons, whose branches would otherwise
 * split each step into up to 2^RULES_MAX paths with different constant
 * masks, are global functions, which the verifier checks once, on their
 * own, taking what they return as unknown. rulecheck.c's program is then
 * checked in about 2,700 instructions, a few milliseconds. (With the state
 * on the stack it takes some 65,000; with the comparisons inlined,
 * 280,000; with both, more than the 1,000,000 allowed.)
 *
 * A program that includes this file gets the map rules_walk and the
 * global functions rm_names, rm_name_end, rm_values, rm_line_end and
 * rm_valid with it. The per-CPU walk state is not reentrant: rules_match
 * is for tc (or XDP) programs, which one CPU does not run nested.
 */
#pragma once

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

enum { FIRST_MAX = 2048 };           /* bytes of the first segment kept */
struct first {                       /* the first segment's TCP payload */
	__u32 len;                       /* bytes used (<= FIRST_MAX) */
	__u32 pad;
	__u8 data[FIRST_MAX];
};
enum { RULES_MAX = 8, RULE_NAME_MAX = 32, RULE_VALUE_MAX = 64 };
enum rule_kind { RULE_EXACT = 0, RULE_PREFIX = 1, RULE_PRESENT = 2 };
struct rule {
	__u8 name[RULE_NAME_MAX];   /* header name, lower case */
	__u8 value[RULE_VALUE_MAX];
	__u8 name_len;              /* 1..RULE_NAME_MAX */
	__u8 value_len;             /* 0..RULE_VALUE_MAX */
	__u8 kind;                  /* enum rule_kind */
	__u8 pool;                  /* 0 stable, 1 canary (not used by the matcher) */
};
struct rules {
	__u32 count;                /* rules used, <= RULES_MAX */
	__u32 pad;
	struct rule rule[RULES_MAX];
};
/* Results of rules_match */
enum { MATCH_NONE = -1, MATCH_INCOMPLETE = -2, MATCH_MALFORMED = -3 };

_Static_assert((FIRST_MAX & (FIRST_MAX - 1)) == 0, "FIRST_MAX masks indexes");
_Static_assert((RULE_NAME_MAX & (RULE_NAME_MAX - 1)) == 0, "RULE_NAME_MAX masks indexes");
_Static_assert((RULE_VALUE_MAX & (RULE_VALUE_MAX - 1)) == 0, "RULE_VALUE_MAX masks indexes");
_Static_assert(RULES_MAX <= 8, "rule bitmasks are a __u8");

/* Where the walk is. */
enum rm_state {
	RM_METHOD0,  /* the method's first byte */
	RM_METHOD,   /* in the method */
	RM_TARGET0,  /* the target's first byte */
	RM_TARGET,   /* in the target */
	RM_VERSION,  /* "HTTP/1.x\r\n", byte at - start */
	RM_LINE,     /* a header line's first byte, or the CR of the empty line */
	RM_NAME,     /* in a header name */
	RM_OWS,      /* the blanks after the colon */
	RM_VALUE,    /* in a value */
	RM_LF,       /* the LF after a header line's CR */
	RM_END,      /* the LF of the empty line */
};

/* The walk's state: in a per-CPU map value, not on the stack, so that
 * the verifier sees the same (unknown) state at every step (see the top). */
struct rm_walk {
	__u32 state;  /* enum rm_state */
	__u32 start;  /* where the name, value or version began */
	__u32 vend;   /* one past the value's last non-blank byte */
	__s32 result; /* what rules_match returns, once the walk stops */
	__u8 valid;   /* rules that can match at all */
	__u8 live;    /* rules whose names match the name read so far (then: the whole name) */
	__u8 vlive;   /* exact and prefix rules of live whose values match the value so far */
	__u8 hit;     /* rules that matched a header line */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct rm_walk);
	__uint(max_entries, 1);
} rules_walk SEC(".maps");

/* bpf_loop's context (on the stack): pointers only, the same every step. */
struct rm_ctx {
	const struct first *f;
	const struct rules *r;
	struct rm_walk *w;
};

/* tchar (RFC 9110, 5.6.2) as two bitmaps: bytes 0..63 and 64..127. */
#define RM_TCHAR_LO 0x03ff6cfa00000000ULL
#define RM_TCHAR_HI 0x57ffffffc7fffffeULL
/* "HTTP/1." little-endian: byte n is (RM_VERSION_LE >> 8n) & 0xff. */
#define RM_VERSION_LE 0x2e312f50545448ULL

static __always_inline int rm_tchar(__u8 c)
{
	if (c < 64)
		return (RM_TCHAR_LO >> c) & 1;
	if (c < 128)
		return (RM_TCHAR_HI >> (c - 64)) & 1;
	return 0;
}

/* Control characters other than tab (as pkg/httphead's isCtl). */
static __always_inline int rm_ctl(__u8 c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static __always_inline int rm_blank(__u8 c)
{
	return c == ' ' || c == '\t';
}

/* Stop the walk with res. */
static __always_inline long rm_stop(struct rm_walk *w, int res)
{
	w->result = res;
	return 1;
}

/*
 * The comparisons with the rules: global functions, not static ones. The
 * verifier checks a global function once, on its own (where branches
 * prune as in any function), and takes what it returns as an unknown
 * number. Inlined in the bpf_loop step, each rule's branches would split
 * the step's paths, whose states differ by constant masks and are never
 * merged inside a loop that is still being checked: 2^8 paths a step.
 */

/* The rules of live whose names have c (lowered) at k. */
__attribute__((noinline)) __u32 rm_names(const struct rules *r, __u32 live, __u32 k, __u32 c)
{
	if (!r || k >= RULE_NAME_MAX)
		return 0;
#pragma unroll
	for (int i = 0; i < RULES_MAX; i++) {
		const struct rule *ru = &r->rule[i];

		if ((live & (1u << i)) && (k >= ru->name_len || ru->name[k] != c))
			live &= ~(1u << i);
	}
	return live;
}

/* The name ended (its colon) at length n: of live, the rules with names
 * of that length (bits 0..7), and of those the exact and prefix rules,
 * whose values are compared next (bits 8..15). */
__attribute__((noinline)) __u32 rm_name_end(const struct rules *r, __u32 live, __u32 n)
{
	__u32 vlive = 0;

	if (!r)
		return 0;
#pragma unroll
	for (int i = 0; i < RULES_MAX; i++) {
		const struct rule *ru = &r->rule[i];

		if (!(live & (1u << i)))
			continue;
		if (ru->name_len != n)
			live &= ~(1u << i);
		else if (ru->kind != RULE_PRESENT)
			vlive |= 1u << i;
	}
	return (live & 0xff) | vlive << 8;
}

/* The rules of vlive whose values have c at k, or are shorter than k + 1
 * (whether the request's value is then too long is judged at its end). */
__attribute__((noinline)) __u32 rm_values(const struct rules *r, __u32 vlive, __u32 k, __u32 c)
{
	if (!r)
		return 0;
	if (k >= RULE_VALUE_MAX)
		return vlive;
#pragma unroll
	for (int i = 0; i < RULES_MAX; i++) {
		const struct rule *ru = &r->rule[i];

		if ((vlive & (1u << i)) && k < ru->value_len && ru->value[k] != c)
			vlive &= ~(1u << i);
	}
	return vlive;
}

/* A header line ended, its value vlen bytes long (trimmed): the rules it
 * matches, of live (name matched) and vlive (value bytes matched). */
__attribute__((noinline)) __u32 rm_line_end(const struct rules *r, __u32 live, __u32 vlive, __u32 vlen)
{
	__u32 hit = 0;

	if (!r)
		return 0;
#pragma unroll
	for (int i = 0; i < RULES_MAX; i++) {
		const struct rule *ru = &r->rule[i];

		if (!(live & (1u << i)))
			continue;
		if (ru->kind == RULE_PRESENT ||
		    ((vlive & (1u << i)) && ((ru->kind == RULE_EXACT && vlen == ru->value_len) ||
					     (ru->kind == RULE_PREFIX && vlen >= ru->value_len))))
			hit |= 1u << i;
	}
	return hit;
}

/* The rules that can match at all (see the top). */
__attribute__((noinline)) __u32 rm_valid(const struct rules *r)
{
	__u32 valid = 0;

	if (!r)
		return 0;
#pragma unroll
	for (int i = 0; i < RULES_MAX; i++) {
		const struct rule *ru = &r->rule[i];

		if (i >= r->count || ru->name_len == 0 || ru->name_len > RULE_NAME_MAX || ru->name[0] == ':' ||
		    ru->value_len > RULE_VALUE_MAX)
			continue;
		if (ru->kind == RULE_PRESENT || ((ru->kind == RULE_EXACT || ru->kind == RULE_PREFIX) && ru->value_len))
			valid |= 1u << i;
	}
	return valid;
}

/* The lowest rule of hit, or MATCH_NONE. */
static __always_inline int rm_first_hit(__u32 hit)
{
#pragma unroll
	for (int i = 0; i < RULES_MAX; i++)
		if (hit & (1u << i))
			return i;
	return MATCH_NONE;
}

static __always_inline __u8 rm_lower(__u8 c)
{
	return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

/* One byte: at is its offset (bpf_loop's index). Returns 1 to stop. */
static long rm_step(__u32 at, void *ctx)
{
	const struct rm_ctx *x = ctx;
	const struct first *f = x->f;
	const struct rules *r = x->r;
	struct rm_walk *w = x->w;
	__u32 state, k, m;
	__u8 c;

	if (!f || !r || !w)
		return 1;
	c = f->data[at & (FIRST_MAX - 1)];
	state = w->state;

	switch (state) {
	case RM_METHOD0:
	case RM_METHOD:
		if (rm_tchar(c)) {
			w->state = RM_METHOD;
			return 0;
		}
		if (c == ' ' && state == RM_METHOD) {
			w->state = RM_TARGET0;
			return 0;
		}
		return rm_stop(w, MATCH_MALFORMED);
	case RM_TARGET0:
	case RM_TARGET:
		if (c == ' ' && state == RM_TARGET) {
			w->state = RM_VERSION;
			w->start = at + 1;
			return 0;
		}
		if (c == ' ' || c == '\t' || rm_ctl(c))
			return rm_stop(w, MATCH_MALFORMED);
		w->state = RM_TARGET;
		return 0;
	case RM_VERSION:
		k = at - w->start;
		if (k < 7) {
			if (c != ((RM_VERSION_LE >> (8 * k)) & 0xff))
				return rm_stop(w, MATCH_MALFORMED);
		} else if (k == 7) {
			if (c < '0' || c > '9')
				return rm_stop(w, MATCH_MALFORMED);
		} else if (k == 8) {
			if (c != '\r')
				return rm_stop(w, MATCH_MALFORMED);
		} else {
			if (c != '\n')
				return rm_stop(w, MATCH_MALFORMED);
			w->state = RM_LINE;
		}
		return 0;
	case RM_LINE:
		if (c == '\r') {
			w->state = RM_END;
			return 0;
		}
		if (!rm_tchar(c))
			return rm_stop(w, MATCH_MALFORMED);
		w->state = RM_NAME;
		w->start = at;
		w->live = w->valid;
		if (w->live)
			w->live = rm_names(r, w->live, 0, rm_lower(c));
		return 0;
	case RM_NAME:
		if (c == ':') {
			w->state = RM_OWS;
			if (w->live) {
				m = rm_name_end(r, w->live, at - w->start);
				w->live = m;
				w->vlive = m >> 8;
			}
			return 0;
		}
		if (!rm_tchar(c))
			return rm_stop(w, MATCH_MALFORMED);
		if (w->live)
			w->live = rm_names(r, w->live, at - w->start, rm_lower(c));
		return 0;
	case RM_OWS:
		if (rm_blank(c))
			return 0;
		if (c == '\r') {
			w->start = at;
			w->vend = at;
			w->state = RM_LF;
			return 0;
		}
		if (rm_ctl(c))
			return rm_stop(w, MATCH_MALFORMED);
		w->start = at;
		w->vend = at + 1;
		w->state = RM_VALUE;
		if (w->vlive)
			w->vlive = rm_values(r, w->vlive, 0, c);
		return 0;
	case RM_VALUE:
		if (c == '\r') {
			w->state = RM_LF;
			return 0;
		}
		if (rm_ctl(c))
			return rm_stop(w, MATCH_MALFORMED);
		if (!rm_blank(c))
			w->vend = at + 1;
		if (w->vlive)
			w->vlive = rm_values(r, w->vlive, at - w->start, c);
		return 0;
	case RM_LF:
		if (c != '\n')
			return rm_stop(w, MATCH_MALFORMED);
		w->state = RM_LINE;
		if (w->live)
			w->hit |= rm_line_end(r, w->live, w->vlive, w->vend - w->start);
		w->live = 0;
		w->vlive = 0;
		return 0;
	case RM_END:
		if (c != '\n')
			return rm_stop(w, MATCH_MALFORMED);
		return rm_stop(w, rm_first_hit(w->hit));
	}
	return rm_stop(w, MATCH_MALFORMED);
}

/* Which rule of r the HTTP/1.x request head at the start of f matches:
 * the index of the first rule (in rule order) that matches any header
 * line, MATCH_NONE when the head is complete and none does,
 * MATCH_INCOMPLETE when the head does not end ("\r\n\r\n") within f->len
 * bytes, MATCH_MALFORMED when it is not a head as described above. */
static __always_inline int rules_match(const struct first *f, const struct rules *r)
{
	__u32 zero = 0, len = f->len;
	struct rm_walk *w = bpf_map_lookup_elem(&rules_walk, &zero);
	struct rm_ctx x = { .f = f, .r = r, .w = w };

	if (!w)
		return MATCH_INCOMPLETE;
	if (len > FIRST_MAX)
		len = FIRST_MAX;
	w->state = RM_METHOD0;
	w->start = 0;
	w->vend = 0;
	w->result = MATCH_INCOMPLETE;
	w->valid = rm_valid(r);
	w->live = 0;
	w->vlive = 0;
	w->hit = 0;
	bpf_loop(len, rm_step, &x, 0);
	return w->result;
}
