/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The decision glue (DESIGN.md section 2): the peers compared by
 * decision.h's steps, drawn from the agent's candidate lists and checked
 * against lb_nodes, and the one commit path that
 * records a new connection's decision and keeps or forwards it, shared by
 * the l4 SYN and the http first request. */
#ifndef PEERLB_BPF_DECIDE_H
#define PEERLB_BPF_DECIDE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "decision.h"
#include "forward.bpf.h"
#include "maps.bpf.h"
#include "parse.bpf.h"

/* Comparing peers: passes over the peers of a candidate list (maps/
 * candidates.h) driven by bpf_loop(), so each step is verified once
 * (unrolled, 64 slots times the step's branches ran past the verifier's
 * budget). The first pass leaves each peer's view in per-CPU scratch for
 * the second scan and the pick, which go over the very same views. */
struct lb_peer_loop {
	const struct lb_config *cfg;
	struct lb_scratch *scratch;
	const struct lb_candidates *list;
	struct lb_scan scan;
	__u64 now;
	/* The list's index: LB_CANDIDATES_ANY, or a URI rule's, whose members
	 * alone may be chosen. A number, not the rule's pointer: a pointer or
	 * NULL would split every state of the decision in two for the
	 * verifier. */
	__u32 list_index;
	__u32 sampled; /* 1: view k is of the list's scratch->drawn[k]-th peer */
	__u32 min_bp;  /* least effective load among them (lb_min_cb) */
	__u32 pad;
};

/* The change since node `slot` last reported its load of the connections
 * this node decided for it (DESIGN.md section 2: load in real time). */
static __always_inline __s32 lb_handed_since(__u32 slot, const struct lb_node *n)
{
	struct lb_handed *h = bpf_map_lookup_elem(&lb_handed, &slot);

	return h ? lb_handed_delta(h->open, n->handed_at_report) : 0;
}

/* Node `slot` is one of URI rule `rule`'s. */
static __always_inline int lb_rule_has_node(__u32 rule, __u32 slot)
{
	struct lb_uri_rule *r = bpf_map_lookup_elem(&lb_uri_rules_v2, &rule);

	return r && lb_node_set_has(r->nodes, slot);
}

/* A listed peer as the decision compares it; load LB_LOAD_UNUSABLE when it
 * may not be chosen. The list only proposes: state and freshness are
 * checked here, so a list that lags a death, or one read while the agent
 * rewrites it (torn: any slot, even twice), never sends to a dead peer. */
static __always_inline void lb_slot_view(const struct lb_peer_loop *l, __u32 slot,
					 struct lb_peer_view *v)
{
	__u32 key = slot;
	struct lb_node *n;

	v->load_bp = LB_LOAD_UNUSABLE;
	if (slot >= LB_MAX_NODES || slot == l->cfg->self_slot)
		return;
	if (l->list_index != LB_CANDIDATES_ANY && !lb_rule_has_node(l->list_index - 1, slot))
		return;
	n = bpf_map_lookup_elem(&lb_nodes, &key);
	if (!n || !lb_node_usable(n->state, n->updated_ns, l->now, l->cfg->peer_stale_ns))
		return;
	v->load_bp = lb_effective_load(n->load_bp, lb_handed_since(slot, n), n->conn_cost_bp);
	v->weight = n->weight;
	/* The agent lists a standby peer only while every active one is at
	 * or above T1 (maps/candidates.h): listed, it is a candidate. */
	v->flags = n->flags & ~LB_NODE_STANDBY;
}

static __always_inline __u32 lb_list_count(const struct lb_candidates *list)
{
	__u32 count = list->count;

	return count < LB_MAX_NODES ? count : LB_MAX_NODES;
}

/* The node slot of the list's k-th peer (LB_MAX_NODES past its end). */
static __always_inline __u32 lb_list_slot(const struct lb_peer_loop *l, __u32 k)
{
	return k < LB_MAX_NODES ? l->list->slots[k] : LB_MAX_NODES;
}

static long lb_min_cb(__u32 k, void *arg)
{
	struct lb_peer_loop *l = arg;
	struct lb_peer_view v;

	lb_slot_view(l, lb_list_slot(l, k), &v);
	if (v.load_bp < l->min_bp)
		l->min_bp = v.load_bp;
	return 0;
}

/* View k of the decision, of node `slot`: made, kept in scratch, scanned. */
static __always_inline void lb_scan_view(struct lb_peer_loop *l, __u32 k, __u32 slot)
{
	struct lb_peer_view *v;

	if (k >= LB_MAX_NODES)
		return;
	l->scratch->slots[k] = slot;
	v = &l->scratch->peers[k];
	lb_slot_view(l, slot, v);
	lb_scan_peer(&l->scan, slot, v);
}

static long lb_scan_cb(__u32 k, void *arg)
{
	struct lb_peer_loop *l = arg;
	__u32 index = k;

	/* Power of d choices: view k is of the list's drawn[k]-th peer (k is
	 * below the draws, LB_MAX_CHOICES at most: masked for the verifier). */
	if (l->sampled)
		index = l->scratch->drawn[k & (LB_MAX_CHOICES - 1)];
	lb_scan_view(l, k, lb_list_slot(l, index));
	return 0;
}

static long lb_rescan_cb(__u32 k, void *arg)
{
	struct lb_peer_loop *l = arg;

	if (k >= LB_MAX_NODES)
		return 1;
	lb_scan_peer(&l->scan, l->scratch->slots[k], &l->scratch->peers[k]);
	return 0;
}

static long lb_pick_cb(__u32 k, void *arg)
{
	struct lb_peer_loop *l = arg;

	if (k >= LB_MAX_NODES)
		return 1;
	lb_pick_peer(&l->scan, l->scratch->slots[k], &l->scratch->peers[k]);
	return 0;
}

/* Step 3 of the decision (lb_decide_after_scan), verified once: inline,
 * its branches multiplied with the second scan's doubled the verifier's
 * count of the whole program. */
LB_GLOBAL int lb_scan_verdict(struct lb_scan *s, __u32 pick, __u32 overflow, __u32 random,
			      struct lb_decision *d)
{
	if (!s || !d)
		return LB_SCAN_DECIDED;
	return lb_decide_after_scan(pick, overflow, s, random, d);
}

/* Power of d choices: `d` distinct indexes of a list of `count` peers into
 * the per-CPU scratch (drawn[]), one random number each; returns how many.
 * Verified once: its nested loops are not walked again in every state of
 * its caller. */
LB_GLOBAL __u32 lb_draw_candidates(__u32 count, __u32 d)
{
	struct lb_scratch *s;
	__u32 zero = 0, k;

	s = bpf_map_lookup_elem(&lb_scratch, &zero);
	if (!s)
		return 0;
	for (k = 0; k < LB_MAX_CHOICES; k++)
		s->random[k] = k < d ? bpf_get_prandom_u32() : 0;
	return lb_draw_distinct(count, d, s->random, s->drawn);
}

/* Input of lb_decide_peers. */
struct lb_decide_args {
	__u64 now_ns;
	__u32 local_bp; /* this node's load as the decision sees it */
	__u32 list;     /* the candidate list: LB_CANDIDATES_ANY, or a URI
			 * rule's (lb_rule_candidates), whose members alone
			 * may then be chosen */
};

/* T1, then T2 against the peers of the candidate list a->list, then the
 * pick (DESIGN.md section 2): with lb_config.choices = d, among d peers
 * drawn from the list (power of d choices: the cost does not grow with
 * the cluster), with 0 among all of them. The same steps either way, over
 * the same views: the scan, the verdict (overflow's second scan), the
 * pick. Sets *d; returns 0, or -1 when it could not decide (*d is then
 * untouched). */
LB_GLOBAL int lb_decide_peers(const struct lb_decide_args *a, struct lb_decision *d)
{
	struct lb_peer_loop l = {};
	struct lb_config *cfg;
	__u32 zero = 0, count, views, random = 0;
	int ret;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	l.scratch = bpf_map_lookup_elem(&lb_scratch, &zero);
	if (!a || !d || !cfg || !l.scratch)
		return -1;
	l.list_index = a->list;
	l.list = bpf_map_lookup_elem(&lb_candidates, &l.list_index);
	if (!l.list)
		return -1;
	l.cfg = cfg;
	l.now = a->now_ns;
	if (lb_decide_begin(cfg, a->local_bp, d, &l.scan))
		return 0;
	views = count = lb_list_count(l.list);
	/* Drawing d of d or more is taking them all: no random numbers. */
	if (cfg->choices && cfg->choices < count) {
		views = lb_draw_candidates(count, cfg->choices);
		l.sampled = 1;
	}
	bpf_loop(views, lb_scan_cb, &l, 0);
	/* Only the weighted pick draws (a random number costs ~25 ns). */
	if (cfg->pick != LB_PICK_LEAST)
		random = bpf_get_prandom_u32();
	ret = lb_scan_verdict(&l.scan, cfg->pick, cfg->overflow, random, d);
	if (ret == LB_SCAN_AGAIN) {
		/* Overflow = keep, no peer under high_water: by T2 alone, over
		 * the views the first scan left. */
		bpf_loop(views, lb_rescan_cb, &l, 0);
		ret = lb_scan_verdict(&l.scan, cfg->pick, cfg->overflow, random, d);
	}
	if (ret != LB_SCAN_PICK)
		return 0;
	bpf_loop(views, lb_pick_cb, &l, 0);
	lb_decide_finish(&l.scan, d);
	return 0;
}

/* This node's connections on its services, as the socket state
 * tracepoint counted them plus the agent's correction. */
static __always_inline __s64 lb_inflight_connections(void)
{
	__u32 counted = LB_INFLIGHT_COUNTED, correction = LB_INFLIGHT_CORRECTION;
	struct lb_inflight *a, *b;

	a = bpf_map_lookup_elem(&lb_inflight, &counted);
	b = bpf_map_lookup_elem(&lb_inflight, &correction);
	return (a ? a->connections : 0) + (b ? b->connections : 0);
}

/* This node's load for the decision: with load.source = "inflight" its
 * open connections at this very packet, else its last measure plus what it
 * decided to keep since. 0 when its own information is stale (the
 * fail-safe: keep everything). */
static __always_inline int lb_self_load(const struct lb_config *cfg, __u64 now, __u32 *local_bp)
{
	__u32 self_slot = cfg->self_slot, bp;
	struct lb_node *self;

	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!self || self->updated_ns == 0 ||
	    !lb_node_usable(LB_NODE_ALIVE, self->updated_ns, now, cfg->self_stale_ns))
		return 0;
	if (cfg->inflight_capacity)
		bp = lb_inflight_load(lb_inflight_connections(), cfg->inflight_capacity);
	else
		bp = lb_effective_load(self->load_bp, lb_handed_since(self_slot, self),
				       cfg->conn_cost_bp);
	*local_bp = lb_local_load(self->state, bp, cfg);
	return 1;
}

/* Which table a new connection's flow goes to: a SYN's to the half-open one
 * (out of reach of established flows), an http first request's to the
 * established one (its handshake is over). */
enum lb_commit_table {
	LB_COMMIT_HALF_OPEN = 0,
	LB_COMMIT_ESTABLISHED = 1,
};

/* Records a new connection's decision (flow->node, flow->reason) and acts
 * on it: XDP_PASS when kept, else forwarded to the node. `counter` (enum
 * lb_counter) counts the decision. The connection counts as open for its
 * node in lb_handed until the client closes it (lb_flow_closing), so that
 * the node's load is corrected at once, not at its next report. A refused
 * SYN (overflow = refuse) is dropped and leaves nothing; a refusal after
 * the handshake (an http request, a cookie ACK) is kept instead: the
 * client thinks it is connected already. */
LB_GLOBAL int lb_commit(struct xdp_md *ctx, const struct lb_pkt *p, const struct lb_flow *flow,
			__u32 counter, __u32 table)
{
	struct lb_node_counters *nc;
	struct lb_config *cfg;
	struct lb_handed *h;
	struct lb_flow f;
	__u32 zero = 0, slot;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !flow || !cfg)
		return XDP_PASS;
	f = *flow;
	if (f.node == LB_NODE_REFUSE) {
		if (table == LB_COMMIT_HALF_OPEN) {
			lb_count(LB_C_DROP_SYN_REFUSED, p->len);
			return XDP_DROP;
		}
		f.node = LB_NODE_LOCAL;
		f.reason = LB_REASON_OVERFLOW;
	}
	slot = f.node == LB_NODE_LOCAL ? cfg->self_slot : f.node;
	h = bpf_map_lookup_elem(&lb_handed, &slot);
	if (h) {
		__sync_fetch_and_add(&h->open, 1);
		f.handed = 1;
	}
	if (table == LB_COMMIT_ESTABLISHED)
		bpf_map_update_elem(&lb_flows, &p->key, &f, BPF_ANY);
	else
		bpf_map_update_elem(&lb_flows_new, &p->key, &f, BPF_ANY);
	lb_count(counter, p->len);
	if (f.node == LB_NODE_LOCAL)
		return XDP_PASS;
	nc = bpf_map_lookup_elem(&lb_node_stats, &slot);
	if (nc)
		nc->conns_forwarded++;
	return lb_forward(ctx, p, f.node, 0);
}

/* The client closes (FIN) or aborts (RST) a connection of a flow entry:
 * it no longer counts as open for its node (once: the entry remembers). */
static __always_inline void lb_flow_closing(const struct lb_config *cfg, const struct lb_pkt *p,
					    __u32 node)
{
	struct lb_flow *flow = bpf_map_lookup_elem(&lb_flows, &p->key);
	struct lb_handed *h;
	__u32 slot;

	if (!flow)
		flow = bpf_map_lookup_elem(&lb_flows_new, &p->key);
	if (!flow || !flow->handed)
		return;
	flow->handed = 0;
	slot = node == LB_NODE_LOCAL ? cfg->self_slot : node;
	h = bpf_map_lookup_elem(&lb_handed, &slot);
	if (h)
		__sync_fetch_and_sub(&h->open, 1);
}

static __always_inline __u32 lb_syn_counter(__u32 reason)
{
	switch (reason) {
	case LB_REASON_BELOW_T1:
		return LB_C_SYN_LOCAL_BELOW_T1;
	case LB_REASON_NO_LOWER_PEER:
		return LB_C_SYN_LOCAL_NO_LOWER_PEER;
	case LB_REASON_LEAST:
		return LB_C_SYN_FORWARD_LEAST;
	case LB_REASON_WEIGHTED:
		return LB_C_SYN_FORWARD_WEIGHTED;
	case LB_REASON_OVERFLOW:
		return LB_C_SYN_LOCAL_OVERFLOW;
	default:
		return LB_C_SYN_LOCAL_FAILSAFE;
	}
}

/* An l4 connection decided by load alone (no URI rules): T1, T2, pick. */
static __always_inline void lb_decide_by_load(const struct lb_config *cfg, __u64 now,
					      struct lb_decision *d)
{
	struct lb_decide_args args = { .now_ns = now };

	if (lb_self_load(cfg, now, &args.local_bp))
		lb_decide_peers(&args, d);
}

/* A SYN to an l4 service: decided here, at once, into the half-open table.
 * `now` is the clock the caller read for the whole decision. */
LB_GLOBAL int lb_handle_syn(struct xdp_md *ctx, const struct lb_pkt *p, __u64 now)
{
	struct lb_decision d = { LB_NODE_LOCAL, LB_REASON_FAILSAFE };
	struct lb_config *cfg;
	struct lb_flow flow;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg)
		return XDP_PASS;
	lb_decide_by_load(cfg, now, &d);
	flow = (struct lb_flow){
		.node = d.node,
		.reason = d.reason,
		.created_ns = now,
	};
	return lb_commit(ctx, p, &flow, lb_syn_counter(d.reason), LB_COMMIT_HALF_OPEN);
}

#endif
