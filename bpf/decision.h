/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The SYN decision as pure arithmetic. Compiled into the XDP program and
 * into the C++ unit tests, so both exercise the very same code.
 * No helpers, no maps, no globals: inputs in, decision out. */
#ifndef PEERLB_BPF_DECISION_H
#define PEERLB_BPF_DECISION_H

#include "../maps/config.h"
#include "../maps/flow.h"
#include "../maps/load.h"
#include "../maps/node.h"

/* Load of a node that must not be chosen (self, empty, dead, stale). */
#define LB_LOAD_UNUSABLE 0xffffffffu

struct lb_decision {
	__u32 node;   /* node slot, or LB_NODE_LOCAL */
	__u32 reason; /* enum lb_reason */
};

/* A node's load as a decision sees it: its last report plus, at `cost_bp`
 * each, the connections this node decided for it since that are still
 * open, less those decided before that have closed since (`handed_delta`,
 * DESIGN.md section 2: load in real time). Never below 0. */
static inline __u32 lb_effective_load(__u32 load_bp, __s32 handed_delta, __u32 cost_bp)
{
	__s64 load = (__s64)load_bp + (__s64)handed_delta * cost_bp;

	if (load < 0)
		return 0;
	return load < LB_LOAD_UNUSABLE ? (__u32)load : LB_LOAD_UNUSABLE - 1;
}

/* The change of a wrapping lb_handed counter since `at_report`. */
static inline __s32 lb_handed_delta(__u32 open_now, __u32 at_report)
{
	return (__s32)(open_now - at_report);
}

/* Load from a count of open connections over a capacity (inflight). */
static inline __u32 lb_inflight_load(__s64 connections, __u32 capacity)
{
	__u64 load;

	if (connections <= 0 || !capacity)
		return 0;
	load = (__u64)connections * LB_LOAD_FULL / capacity;
	return load < LB_LOAD_UNUSABLE ? (__u32)load : LB_LOAD_UNUSABLE - 1;
}

/* A peer is a candidate only while alive and its information fresh. */
static inline int lb_node_usable(__u8 state, __u64 updated_ns, __u64 now_ns, __u64 stale_ns)
{
	if (state != LB_NODE_ALIVE)
		return 0;
	if (updated_ns > now_ns) /* written just after we read the clock */
		return 1;
	return now_ns - updated_ns <= stale_ns;
}

/* The load the decision starts from. A node whose own service is unhealthy
 * (self state unroutable) compares as full plus T2: T1 never keeps, and
 * every usable peer is a candidate, so new connections go elsewhere while
 * any peer can take them. */
static inline __u32 lb_local_load(__u8 self_state, __u32 effective_bp,
				  const struct lb_config *cfg)
{
	if (self_state == LB_NODE_UNROUTABLE)
		return LB_LOAD_FULL + cfg->min_difference_bp;
	return effective_bp;
}

static inline __u32 lb_spare(__u32 load_bp)
{
	return load_bp < LB_LOAD_FULL ? LB_LOAD_FULL - load_bp : 0;
}

/* A peer as the decision compares it. */
struct lb_peer_view {
	__u32 load_bp; /* effective load, or LB_LOAD_UNUSABLE (self, empty,
			* dead, stale: never chosen) */
	__u16 weight;  /* lb_node.weight: relative capacity, 100 = 1.0 */
	__u8 flags;    /* lb_node.flags (LB_NODE_STANDBY) */
	__u8 pad;
};

/* The decision runs in steps so that the XDP program can drive the two
 * passes over the peers with bpf_loop() (verified once) while lb_decide()
 * below drives the same steps with plain loops for userspace and tests.
 * The XDP program compares the peers of a candidate list (all of them, or
 * a few drawn: power of d choices), whose standby peers the agent lists
 * only while the gate below is open (maps/candidates.h).
 *
 * Candidates (DESIGN.md section 2): usable peers below high_water and at
 * least T2 under the local load (any peer below high_water once the local
 * load is at or above it); standby peers only while every active peer is
 * at or above T1 (the local load is, or the peers would not be scanned).
 * When this node and every peer are at or above high_water, overflow =
 * refuse drops the SYN; overflow = keep accepts it where T1 and T2 alone
 * would put it (a second scan): kept unless a peer is T2 lower, so the
 * overflow queues where there is least, not all on the node it reached. */
struct lb_scan {
	__u32 limit;   /* candidates have load <= limit */
	__u32 t1_bp;   /* accept_below: standby peers wait while an active one is under */
	__u32 rescan_limit; /* overflow = keep: the limit of the second scan
			     * (local - T2), LB_LOAD_UNUSABLE when none */
	__u32 chosen;  /* weighted pick, LB_NODE_LOCAL until drawn */
	__u32 with_standby; /* step 3: standby peers are candidates */
	__u32 min_active_bp; /* least load of a usable active peer */
	__u32 best[2];     /* least-loaded candidate, by class (0 active, 1 standby) */
	__u32 best_bp[2];
	__u64 total[2];    /* sum of candidate weights, by class */
	__u64 draw;    /* in [0, total) */
	__u64 acc;
};

static inline __u32 lb_peer_class(const struct lb_peer_view *v)
{
	return v->flags & LB_NODE_STANDBY ? 1 : 0;
}

static inline int lb_is_candidate(const struct lb_scan *s, const struct lb_peer_view *v)
{
	return v->load_bp != LB_LOAD_UNUSABLE && v->load_bp <= s->limit;
}

/* Weight of a candidate in the weighted pick: its spare capacity (+1 so
 * that a candidate at full load, possible only with T2 = 0, still has a
 * chance) times its relative capacity. */
static inline __u64 lb_weight(const struct lb_peer_view *v)
{
	return ((__u64)lb_spare(v->load_bp) + 1) * (v->weight ? v->weight : 1);
}

/* The aggregates of a scan, before it (step 1) or a second one (step 3). */
static inline void lb_scan_reset(struct lb_scan *s)
{
	s->chosen = LB_NODE_LOCAL;
	s->with_standby = 0;
	s->min_active_bp = LB_LOAD_UNUSABLE;
	s->best[0] = s->best[1] = LB_NODE_LOCAL;
	s->best_bp[0] = s->best_bp[1] = LB_LOAD_UNUSABLE;
	s->total[0] = s->total[1] = 0;
	s->draw = 0;
	s->acc = 0;
}

/* Step 1: settles the cases that need no peer. Returns 1 when *d is final,
 * 0 when the peers must be scanned. */
static inline int lb_decide_begin(const struct lb_config *cfg, __u32 local_bp,
				  struct lb_decision *d, struct lb_scan *s)
{
	__u32 high_water = cfg->high_water_bp ? cfg->high_water_bp : LB_LOAD_UNUSABLE;

	d->node = LB_NODE_LOCAL;
	s->rescan_limit = LB_LOAD_UNUSABLE;
	if (local_bp >= high_water) {
		/* Past its high-water mark this node is no candidate itself:
		 * any peer under its own is (overflow when none). */
		d->reason = LB_REASON_OVERFLOW;
		s->limit = high_water - 1;
		if (cfg->overflow == LB_OVERFLOW_KEEP && local_bp >= cfg->min_difference_bp)
			s->rescan_limit = local_bp - cfg->min_difference_bp;
	} else {
		d->reason = LB_REASON_BELOW_T1;
		if (local_bp < cfg->accept_below_bp)
			return 1;
		d->reason = LB_REASON_NO_LOWER_PEER;
		/* Candidates have load <= local - T2; none can when local < T2. */
		if (local_bp < cfg->min_difference_bp)
			return 1;
		/* Under high_water itself, with T2 >= 0. */
		s->limit = local_bp - cfg->min_difference_bp;
	}
	s->t1_bp = cfg->accept_below_bp;
	lb_scan_reset(s);
	return 0;
}

/* Step 2, for every peer compared. */
static inline void lb_scan_peer(struct lb_scan *s, __u32 slot, const struct lb_peer_view *v)
{
	__u32 c = lb_peer_class(v);

	if (v->load_bp == LB_LOAD_UNUSABLE)
		return;
	if (!c && v->load_bp < s->min_active_bp)
		s->min_active_bp = v->load_bp;
	if (!lb_is_candidate(s, v))
		return;
	if (v->load_bp < s->best_bp[c]) {
		s->best_bp[c] = v->load_bp;
		s->best[c] = slot;
	}
	s->total[c] += lb_weight(v);
}

/* What step 3 asks for next. */
enum lb_scan_next {
	LB_SCAN_DECIDED = 0, /* *d is final */
	LB_SCAN_PICK = 1,    /* the weighted draw is set: step 4 over the same peers */
	LB_SCAN_AGAIN = 2,   /* overflow = keep: step 2 again over the same peers
			      * (against T2 alone), then step 3 again */
};

/* Step 3 (enum lb_scan_next). Without a candidate *d stays as step 1 left
 * it: kept (the reason says why), or refused when overflowing with
 * overflow = refuse. */
static inline int lb_decide_after_scan(__u32 pick, __u32 overflow, struct lb_scan *s,
				       __u32 random, struct lb_decision *d)
{
	__u32 best = s->best[0], best_bp = s->best_bp[0];
	__u64 total = s->total[0];

	s->with_standby = s->min_active_bp >= s->t1_bp;
	if (s->with_standby) {
		if (s->best_bp[1] < best_bp) {
			best = s->best[1];
			best_bp = s->best_bp[1];
		}
		total += s->total[1];
	}
	if (best == LB_NODE_LOCAL) {
		if (d->reason != LB_REASON_OVERFLOW)
			return LB_SCAN_DECIDED;
		if (overflow == LB_OVERFLOW_REFUSE) {
			d->node = LB_NODE_REFUSE;
			d->reason = LB_REASON_REFUSED;
			return LB_SCAN_DECIDED;
		}
		if (s->rescan_limit == LB_LOAD_UNUSABLE)
			return LB_SCAN_DECIDED;
		s->limit = s->rescan_limit;
		s->rescan_limit = LB_LOAD_UNUSABLE; /* once */
		lb_scan_reset(s);
		return LB_SCAN_AGAIN;
	}
	if (pick == LB_PICK_LEAST) {
		d->node = best;
		d->reason = LB_REASON_LEAST;
		return LB_SCAN_DECIDED;
	}
	s->best[0] = best; /* the fallback of step 5 */
	s->draw = ((__u64)random * total) >> 32;
	return LB_SCAN_PICK;
}

/* Step 4, for the same peers in the same order: the draw falls in the
 * share of exactly one candidate. */
static inline void lb_pick_peer(struct lb_scan *s, __u32 slot, const struct lb_peer_view *v)
{
	if (s->chosen != LB_NODE_LOCAL || !lb_is_candidate(s, v))
		return;
	if (lb_peer_class(v) && !s->with_standby)
		return;
	s->acc += lb_weight(v);
	if (s->draw < s->acc)
		s->chosen = slot;
}

/* Step 5. */
static inline void lb_decide_finish(const struct lb_scan *s, struct lb_decision *d)
{
	/* draw < total guarantees a pick; best covers a racing table change. */
	d->node = s->chosen != LB_NODE_LOCAL ? s->chosen : s->best[0];
	d->reason = LB_REASON_WEIGHTED;
}

/* Power of d choices (DESIGN.md section 2): a SYN compares d peers drawn
 * from the agent's candidate list instead of every slot, so its cost does
 * not grow with the cluster. The most a decision draws: */
#define LB_MAX_CHOICES 8

/* Draws min(d, count) distinct indexes of [0, count) into out[], ascending,
 * each set of them equally likely; returns how many. random[k] is a uniform
 * 32-bit draw for the k-th index. The k-th draw picks the v-th index not yet
 * taken (v uniform below count - k): walking the taken ones in ascending
 * order, every one at or below v moves v past it. */
static inline __u32 lb_draw_distinct(__u32 count, __u32 d, const __u32 *random, __u32 *out)
{
	__u32 k, j, v, n = d < count ? d : count;

	if (n > LB_MAX_CHOICES)
		n = LB_MAX_CHOICES;
	for (k = 0; k < LB_MAX_CHOICES && k < n; k++) {
		/* Multiply-shift: uniform below count - k without a division. */
		v = (__u32)(((__u64)random[k] * (count - k)) >> 32);
		for (j = 0; j < LB_MAX_CHOICES && j < k; j++) {
			if (v >= out[j])
				v++;
		}
		/* Insert v, keeping out[0..k] ascending. */
		for (j = k; j > 0 && j < LB_MAX_CHOICES && out[j - 1] > v; j--)
			out[j] = out[j - 1];
		if (j < LB_MAX_CHOICES)
			out[j] = v;
	}
	return n;
}

/* All steps at once. peers[i] is slot i's view for i < slots; `random` is
 * a uniform 32-bit draw (used by pick = weighted). */
static inline struct lb_decision lb_decide(const struct lb_config *cfg, __u32 local_bp,
					   const struct lb_peer_view *peers, __u32 slots,
					   __u32 random)
{
	struct lb_decision d;
	struct lb_scan s;
	__u32 i;

	int next;

	if (lb_decide_begin(cfg, local_bp, &d, &s))
		return d;
	do {
		for (i = 0; i < slots && i < LB_MAX_NODES; i++)
			lb_scan_peer(&s, i, &peers[i]);
		next = lb_decide_after_scan(cfg->pick, cfg->overflow, &s, random, &d);
	} while (next == LB_SCAN_AGAIN);
	if (next == LB_SCAN_DECIDED)
		return d;
	for (i = 0; i < slots && i < LB_MAX_NODES; i++)
		lb_pick_peer(&s, i, &peers[i]);
	lb_decide_finish(&s, &d);
	return d;
}

#endif
