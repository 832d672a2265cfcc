/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The "http" mode's decision (DESIGN.md section 4): the first segment of a
 * connection after its cookie handshake is read (http.bpf.h), routed by the
 * URI rules, pins and load, recorded, and kept or forwarded by the common
 * commit path; the serving node's TC ingress then creates the connection
 * from the cookie (syncookie.bpf.h). */
#ifndef PEERLB_BPF_HTTP_ROUTE_H
#define PEERLB_BPF_HTTP_ROUTE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "decide.bpf.h"
#include "http.bpf.h"
#include "maps.bpf.h"
#include "parse.bpf.h"
#include "syncookie.bpf.h"

struct lb_rule_search {
	const struct lb_http_request *req;
	__be16 port;
	__u16 pad;
	__s32 matched;
};

static long lb_rule_cb(__u32 i, void *arg)
{
	struct lb_rule_search *r = arg;
	struct lb_uri_rule *rule;
	__u32 index = i;

	rule = bpf_map_lookup_elem(&lb_uri_rules_v2, &index);
	if (!rule || (rule->port && rule->port != r->port))
		return 0;
	if (!lb_uri_rule_matches(rule, LB_URI_ENTRY, r->req))
		return 0;
	r->matched = (__s32)i;
	return 1;
}

/* The first URI rule (of this service's port) the request matches; -1 if
 * none. Rules are tried by bpf_loop(): inline, 16 of them with their own
 * loops inside ran past the verifier's budget. */
static __always_inline int lb_match_rule(const struct lb_config *cfg, const struct lb_pkt *p,
					 const struct lb_http_request *req)
{
	struct lb_rule_search r = { .req = req, .port = p->key.dport, .matched = -1 };
	__u32 n = cfg->uri_rules;

	if (req->status != LB_HTTP_COMPLETE || n == 0)
		return -1;
	if (n > LB_MAX_URI_RULES)
		n = LB_MAX_URI_RULES;
	bpf_loop(n, lb_rule_cb, &r, 0);
	return r.matched;
}

static __always_inline void lb_pin_event(const struct lb_pin_key *key, __u32 op, __u32 node,
					 __u32 rule, __u32 timeout_s)
{
	struct lb_pin_event *ev = bpf_ringbuf_reserve(&lb_pin_events, sizeof(*ev), 0);

	if (!ev)
		return; /* the agent is behind: the pin stays local to this node */
	ev->key = *key;
	ev->op = op;
	ev->node = node;
	ev->rule = rule;
	ev->timeout_s = timeout_s;
	bpf_ringbuf_submit(ev, 0);
}

/* The pin key of a client: its address, or for IPv6 its /64, which one
 * host holds whole (RFC 4291 interface ids): one client with many
 * addresses takes one entry, not enough to evict other clients' pins. */
static __always_inline void lb_pin_key_of(const struct lb_pkt *p, struct lb_pin_key *key)
{
	key->family = p->key.family;
	key->client = p->key.saddr;
	if (p->key.family == LB_FAMILY_IPV6) {
		key->client.v6[2] = 0;
		key->client.v6[3] = 0;
	}
}

static __always_inline void lb_pin_client(const struct lb_pkt *p, __u64 now, __u32 node,
					  __u32 rule, __u32 timeout_s)
{
	struct lb_pin_key key = {};
	struct lb_pin pin = {
		.node = node,
		.rule = rule,
		.expires_ns = now + (__u64)timeout_s * 1000000000ull,
	};

	lb_pin_key_of(p, &key);
	bpf_map_update_elem(&lb_pins, &key, &pin, BPF_ANY);
	lb_pin_event(&key, LB_PIN_SET, node, rule, timeout_s);
}

/* A pinned client's request goes to its node (while that node is usable);
 * its stateful rule's exit request goes there too and ends the pin.
 * Returns 1 with *d and flow->rule set when the client is pinned. */
static __always_inline int lb_pinned(const struct lb_config *cfg, const struct lb_pkt *p,
				     __u64 now, const struct lb_http_request *req,
				     struct lb_decision *d, struct lb_flow *flow)
{
	struct lb_pin_key key = {};
	struct lb_uri_rule *rule;
	struct lb_pin *pin;
	struct lb_node *n;
	__u32 node, index;

	lb_pin_key_of(p, &key);
	pin = bpf_map_lookup_elem(&lb_pins, &key);
	if (!pin)
		return 0;
	node = pin->node;
	index = pin->rule;
	if (now >= pin->expires_ns)
		goto drop;
	if (node != LB_NODE_LOCAL) {
		n = bpf_map_lookup_elem(&lb_nodes, &node);
		if (!n || !lb_node_usable(n->state, n->updated_ns, now, cfg->peer_stale_ns))
			goto drop; /* its node is gone: decided afresh (and pinned again) */
	}
	d->node = node;
	d->reason = LB_REASON_PINNED;
	flow->rule = (__u8)(index + 1);
	flow->http |= LB_FLOW_PINNED;
	rule = bpf_map_lookup_elem(&lb_uri_rules_v2, &index);
	if (rule && (rule->flags & LB_URI_STATEFUL) && lb_uri_rule_matches(rule, LB_URI_EXIT, req)) {
		bpf_map_delete_elem(&lb_pins, &key);
		lb_pin_event(&key, LB_PIN_ENDED, node, index, 0);
		flow->http |= LB_FLOW_PIN_ENDED;
	}
	return 1;
drop:
	bpf_map_delete_elem(&lb_pins, &key);
	return 0;
}

/* The least effective load among the usable listed members of URI rule
 * `rule` other than this node (LB_LOAD_UNUSABLE when none): a walk of the
 * rule's candidate list, usually short. Global: its loop state stays off
 * the caller's stack, which the http path's call chain shares. */
LB_GLOBAL __u32 lb_members_min(__u32 rule, __u64 now)
{
	struct lb_peer_loop l = {
		.now = now,
		.list_index = lb_rule_candidates(rule),
		.min_bp = LB_LOAD_UNUSABLE,
	};
	__u32 zero = 0;

	l.cfg = bpf_map_lookup_elem(&lb_config, &zero);
	l.list = bpf_map_lookup_elem(&lb_candidates, &l.list_index);
	if (!l.cfg || !l.list)
		return LB_LOAD_UNUSABLE;
	bpf_loop(lb_list_count(l.list), lb_min_cb, &l, 0);
	return l.min_bp;
}

/* A URI rule's scope (WO 99/18534, third embodiment): the decision runs
 * among the rule's nodes only (this node keeps a request only if it is one
 * of them); when all of them are at or above T1, among every node
 * (*spilled). Sets a->list and a->local_bp for lb_decide_peers. (A rule
 * with no other member listed decides as this node alone: kept below T1,
 * spilled at or above it.) */
static __always_inline void lb_rule_scope(const struct lb_config *cfg, __u32 rule_index,
					  const struct lb_uri_rule *rule, struct lb_decide_args *a,
					  int *spilled)
{
	__u32 members_min;
	int self_in = rule->flags & LB_URI_SELF;

	members_min = lb_members_min(rule_index, a->now_ns);
	if (self_in && a->local_bp < members_min)
		members_min = a->local_bp;
	if (members_min >= cfg->accept_below_bp) {
		*spilled = 1;
		a->list = LB_CANDIDATES_ANY;
		return;
	}
	/* Not one of the rule's nodes: compares as full plus T2, so it never
	 * keeps the request and every member is a candidate. */
	if (!self_in)
		a->local_bp = LB_LOAD_FULL + cfg->min_difference_bp;
	a->list = lb_rule_candidates(rule_index);
}

/* The first segment of an "http" connection after its cookie handshake:
 * the request line picks a URI rule (or none), the decision is made here
 * and recorded in the established table, and the serving node's TC ingress
 * creates the connection from the cookie. Returns -1 when the segment
 * carries no cookie of ours (the l4 path handles it: a local connection,
 * or an orphan the kernel resets). */
LB_GLOBAL int lb_http_first_segment(struct xdp_md *ctx, const struct lb_pkt *p)
{
	struct lb_decision d = { LB_NODE_LOCAL, LB_REASON_FAILSAFE };
	struct lb_decide_args args = {};
	struct lb_http_request *req;
	struct lb_http_scratch *hs;
	struct lb_rule_counters *rc;
	struct lb_uri_rule *rule = NULL;
	struct lb_config *cfg;
	struct lb_flow flow;
	__u32 cookie, rule_index = 0, zero = 0, counter;
	int matched, spilled = 0;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	hs = bpf_map_lookup_elem(&lb_http_scratch, &zero);
	if (!p || !cfg || !hs)
		return -1;
	/* The clock, read once for the cookie's key, the pins and the decision. */
	args.now_ns = bpf_ktime_get_ns();
	if (!lb_cookie_of_segment(p, args.now_ns, &cookie))
		return -1;
	/* The handshake's own ACK: nothing to decide on yet, and the client
	 * thinks it is connected; its first request carries the same ACK. */
	if (p->payload_len == 0 && !(p->tcp_flags & LB_TCP_FIN)) {
		lb_count(LB_C_DROP_HANDSHAKE_ACK, p->len);
		return XDP_DROP;
	}

	/* The request lives in map memory: the verifier then knows nothing of
	 * its values, and the ways the parse ended do not each walk the rest. */
	req = &hs->req;
	__builtin_memset(req, 0, sizeof(*req));
	if (p->payload_len)
		lb_http_read(ctx, p->payload_off, p->payload_len, req);
	flow = (struct lb_flow){
		.http = LB_FLOW_HTTP | (req->status == LB_HTTP_NOT_HTTP ? LB_FLOW_NOT_HTTP : 0) |
			(req->status == LB_HTTP_INCOMPLETE ? LB_FLOW_INCOMPLETE : 0),
		.created_ns = args.now_ns,
	};

	if (lb_pinned(cfg, p, args.now_ns, req, &d, &flow)) {
		rule_index = flow.rule - 1u;
		rule = bpf_map_lookup_elem(&lb_uri_rules_v2, &rule_index);
	} else {
		matched = lb_match_rule(cfg, p, req);
		if (matched >= 0) {
			rule_index = (__u32)matched;
			rule = bpf_map_lookup_elem(&lb_uri_rules_v2, &rule_index);
		}
		if (lb_self_load(cfg, args.now_ns, &args.local_bp)) {
			if (rule)
				lb_rule_scope(cfg, rule_index, rule, &args, &spilled);
			lb_decide_peers(&args, &d);
		}
		flow.rule = rule ? (__u8)(rule_index + 1) : 0;
		flow.http |= spilled ? LB_FLOW_SPILLED : 0;
		if (rule && (rule->flags & LB_URI_STATEFUL)) {
			lb_pin_client(p, args.now_ns, d.node, rule_index, rule->pin_timeout_s);
			flow.http |= LB_FLOW_PIN_SET;
		}
	}
	flow.node = d.node;
	flow.reason = d.reason;
	if (req->status == LB_HTTP_NOT_HTTP)
		lb_count(LB_C_HTTP_NOT_HTTP, p->len);
	else if (req->status == LB_HTTP_INCOMPLETE)
		lb_count(LB_C_HTTP_INCOMPLETE, p->len);
	if (rule) {
		rc = bpf_map_lookup_elem(&lb_rule_stats, &rule_index);
		if (rc) {
			rc->hits++;
			rc->spilled += spilled;
		}
	}
	counter = d.node == LB_NODE_LOCAL ? LB_C_HTTP_LOCAL : LB_C_HTTP_FORWARD;
	return lb_commit(ctx, p, &flow, counter, LB_COMMIT_ESTABLISHED);
}

#endif
