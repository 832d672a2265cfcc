/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The SYN decision as pure arithmetic. Compiled into the XDP program and
 * into the C++ unit tests, so both exercise the very same code.
 * No helpers, no maps, no globals: inputs in, decision out. */
#ifndef PEERLB_BPF_DECISION_H
#define PEERLB_BPF_DECISION_H

#include "../maps/config.h"
#include "../maps/flow.h"
#include "../maps/node.h"

/* Load of a node that must not be chosen (self, empty, dead, stale). */
#define LB_LOAD_UNUSABLE 0xffffffffu

struct lb_decision {
	__u32 node;   /* node slot, or LB_NODE_LOCAL */
	__u32 reason; /* enum lb_reason */
};

/* Measured load plus the estimate for connections given since. */
static inline __u32 lb_effective_load(__u32 load_bp, __u32 pending, __u32 conn_cost_bp)
{
	__u64 load = (__u64)load_bp + (__u64)pending * conn_cost_bp;

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

/* The decision runs in steps so that the XDP program can drive the two
 * passes over the peers with bpf_loop() (verified once) while lb_decide()
 * below drives the same steps with plain loops for userspace and tests. */
struct lb_scan {
	__u32 limit;   /* candidates have load <= limit (= local - T2) */
	__u32 best;    /* least-loaded candidate slot, LB_NODE_LOCAL if none */
	__u32 best_bp;
	__u32 chosen;  /* weighted pick, LB_NODE_LOCAL until drawn */
	__u64 total;   /* sum of candidate weights */
	__u64 draw;    /* in [0, total) */
	__u64 acc;
};

static inline int lb_is_candidate(const struct lb_scan *s, __u32 bp)
{
	return bp != LB_LOAD_UNUSABLE && bp <= s->limit;
}

/* Weight of a candidate: its spare capacity, +1 so that a candidate at full
 * load (possible only with T2 = 0) still has a chance. */
static inline __u64 lb_weight(__u32 bp)
{
	return (__u64)lb_spare(bp) + 1;
}

/* Step 1: settles the cases that need no peer. Returns 1 when *d is final,
 * 0 when the peers must be scanned. */
static inline int lb_decide_begin(const struct lb_config *cfg, __u32 local_bp,
				  struct lb_decision *d, struct lb_scan *s)
{
	d->node = LB_NODE_LOCAL;
	d->reason = LB_REASON_BELOW_T1;
	if (local_bp < cfg->accept_below_bp)
		return 1;
	d->reason = LB_REASON_NO_LOWER_PEER;
	/* Candidates have load <= local - T2; none can when local < T2. */
	if (local_bp < cfg->min_difference_bp)
		return 1;
	s->limit = local_bp - cfg->min_difference_bp;
	s->best = LB_NODE_LOCAL;
	s->best_bp = LB_LOAD_UNUSABLE;
	s->chosen = LB_NODE_LOCAL;
	s->total = 0;
	s->draw = 0;
	s->acc = 0;
	return 0;
}

/* Step 2, for every slot: bp is the slot's effective load, or
 * LB_LOAD_UNUSABLE when it is not a candidate (self, empty, dead, stale). */
static inline void lb_scan_peer(struct lb_scan *s, __u32 slot, __u32 bp)
{
	if (!lb_is_candidate(s, bp))
		return;
	if (bp < s->best_bp) {
		s->best_bp = bp;
		s->best = slot;
	}
	s->total += lb_weight(bp);
}

/* Step 3: returns 1 when *d is final (no candidate, or pick = least); else
 * the weighted draw is set and every slot goes through step 4. */
static inline int lb_decide_after_scan(const struct lb_config *cfg, struct lb_scan *s,
				       __u32 random, struct lb_decision *d)
{
	if (s->best == LB_NODE_LOCAL)
		return 1;
	if (cfg->pick == LB_PICK_LEAST) {
		d->node = s->best;
		d->reason = LB_REASON_LEAST;
		return 1;
	}
	s->draw = ((__u64)random * s->total) >> 32;
	return 0;
}

/* Step 4, for every slot in the same order: the draw falls in the share of
 * exactly one candidate. */
static inline void lb_pick_peer(struct lb_scan *s, __u32 slot, __u32 bp)
{
	if (s->chosen != LB_NODE_LOCAL || !lb_is_candidate(s, bp))
		return;
	s->acc += lb_weight(bp);
	if (s->draw < s->acc)
		s->chosen = slot;
}

/* Step 5. */
static inline void lb_decide_finish(const struct lb_scan *s, struct lb_decision *d)
{
	/* draw < total guarantees a pick; best covers a racing table change. */
	d->node = s->chosen != LB_NODE_LOCAL ? s->chosen : s->best;
	d->reason = LB_REASON_WEIGHTED;
}

/* All steps at once. peer_bp[i] is the effective load of slot i for
 * i < slots; `random` is a uniform 32-bit draw (used by pick = weighted). */
static inline struct lb_decision lb_decide(const struct lb_config *cfg, __u32 local_bp,
					   const __u32 *peer_bp, __u32 slots, __u32 random)
{
	struct lb_decision d;
	struct lb_scan s;
	__u32 i;

	if (lb_decide_begin(cfg, local_bp, &d, &s))
		return d;
	for (i = 0; i < slots && i < LB_MAX_NODES; i++)
		lb_scan_peer(&s, i, peer_bp[i]);
	if (lb_decide_after_scan(cfg, &s, random, &d))
		return d;
	for (i = 0; i < slots && i < LB_MAX_NODES; i++)
		lb_pick_peer(&s, i, peer_bp[i]);
	lb_decide_finish(&s, &d);
	return d;
}

#endif
