// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* peerlb data plane: one XDP program per NIC that keeps each new TCP
 * connection or hands it to a less-loaded peer, and a TC egress program that
 * clamps the MSS of SYN-ACKs for the IPIP overhead. DESIGN.md section 2. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "decision.h"
#include "maps.bpf.h"
#include "parse.bpf.h"
#include "tcp_options.bpf.h"

#define LB_TCP_LISTEN 10 /* include/net/tcp_states.h */
#define LB_TTL 64
#define LB_IP_DF 0x4000


/* A copy of the Ethernet header and VLAN tags, moved as a block when an
 * outer IP header is pushed or popped behind it. */
struct lb_l2_copy {
	struct ethhdr eth;
	struct vlan_hdr_lb vlan[LB_MAX_VLAN_TAGS];
	__u32 tags;
};

static __always_inline int lb_l2_save(const struct lb_packet *p, struct lb_l2_copy *c)
{
	struct vlan_hdr_lb *vlan = p->data + sizeof(struct ethhdr);
	__u32 i;

	c->tags = (p->l2_len - sizeof(struct ethhdr)) / sizeof(struct vlan_hdr_lb);
	if (p->data + sizeof(struct ethhdr) > p->data_end)
		return -1;
	__builtin_memcpy(&c->eth, p->data, sizeof(struct ethhdr));
	for (i = 0; i < LB_MAX_VLAN_TAGS; i++) {
		if (i >= c->tags)
			break;
		if ((void *)(vlan + i + 1) > p->data_end)
			return -1;
		c->vlan[i] = vlan[i];
	}
	return 0;
}

/* Sets the ethertype that precedes L3 in the copy. */
static __always_inline void lb_l2_set_proto(struct lb_l2_copy *c, __be16 proto)
{
	if (c->tags == 0)
		c->eth.h_proto = proto;
	else if (c->tags == 1)
		c->vlan[0].proto = proto;
	else
		c->vlan[1].proto = proto;
}

/* Writes the copy at the start of the (moved) packet; returns L3 or NULL. */
static __always_inline void *lb_l2_restore(struct xdp_md *ctx, const struct lb_l2_copy *c)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct vlan_hdr_lb *vlan = data + sizeof(struct ethhdr);
	__u32 i;

	if (data + sizeof(struct ethhdr) > data_end)
		return NULL;
	__builtin_memcpy(data, &c->eth, sizeof(struct ethhdr));
	for (i = 0; i < LB_MAX_VLAN_TAGS; i++) {
		if (i >= c->tags)
			break;
		if ((void *)(vlan + i + 1) > data_end)
			return NULL;
		vlan[i] = c->vlan[i];
	}
	/* Constant offsets per case: a computed tags * 4 loses its bounds in
	 * a stack spill and the verifier then rejects "R1 offset is outside of
	 * the packet" on the outer header write. */
	switch (c->tags) {
	case 0:
		return data + sizeof(struct ethhdr);
	case 1:
		return data + sizeof(struct ethhdr) + sizeof(struct vlan_hdr_lb);
	default:
		return data + sizeof(struct ethhdr) + 2 * sizeof(struct vlan_hdr_lb);
	}
}

static __always_inline __u16 lb_ipv4_csum(const struct iphdr *ip)
{
	const __u16 *word = (const __u16 *)ip;
	__u32 sum = 0;
	int i;

	for (i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += word[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* Pops the outer IPv4/IPv6 header of a packet a peer steered here. */
static __always_inline int lb_decapsulate(struct xdp_md *ctx, struct lb_packet *p)
{
	struct lb_l2_copy l2;

	if (lb_l2_save(p, &l2))
		return -1;
	lb_l2_set_proto(&l2, p->inner_proto == IPPROTO_IPIP ? bpf_htons(ETH_P_IP)
							     : bpf_htons(ETH_P_IPV6));
	if (bpf_xdp_adjust_head(ctx, (int)p->l3_len))
		return -1;
	return lb_l2_restore(ctx, &l2) ? 0 : -1;
}

/* Pushes an outer header from this node to `peer` (same family) and sets the
 * MACs for the next hop. */
static __always_inline int lb_encapsulate(struct xdp_md *ctx, struct lb_packet *p,
					  const struct lb_node *self, const struct lb_node *peer,
					  __u32 mtu)
{
	__u32 inner_len = p->data_end - p->l3;
	__u8 inner = p->key.family == LB_FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	struct lb_l2_copy l2;
	void *l3, *data_end;

	if (lb_l2_save(p, &l2))
		return -1;
	__builtin_memcpy(l2.eth.h_dest, peer->mac, ETH_ALEN);
	__builtin_memcpy(l2.eth.h_source, self->mac, ETH_ALEN);

	if (self->family == LB_FAMILY_IPV4) {
		struct iphdr outer = {
			.version = 4,
			.ihl = 5,
			.tot_len = bpf_htons(inner_len + sizeof(struct iphdr)),
			.frag_off = bpf_htons(LB_IP_DF),
			.ttl = LB_TTL,
			.protocol = inner,
			.saddr = self->addr.v4,
			.daddr = peer->addr.v4,
		};

		if (inner_len + sizeof(outer) > mtu)
			return -1;
		outer.check = lb_ipv4_csum(&outer);
		lb_l2_set_proto(&l2, bpf_htons(ETH_P_IP));
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(outer)))
			return -1;
		l3 = lb_l2_restore(ctx, &l2);
		data_end = (void *)(long)ctx->data_end;
		if (!l3 || l3 + sizeof(outer) > data_end)
			return -1;
		__builtin_memcpy(l3, &outer, sizeof(outer));
		return 0;
	} else {
		struct ipv6hdr outer = {
			.version = 6,
			.payload_len = bpf_htons(inner_len),
			.nexthdr = inner,
			.hop_limit = LB_TTL,
		};

		if (inner_len + sizeof(outer) > mtu)
			return -1;
		__builtin_memcpy(&outer.saddr, self->addr.v6, 16);
		__builtin_memcpy(&outer.daddr, peer->addr.v6, 16);
		lb_l2_set_proto(&l2, bpf_htons(ETH_P_IPV6));
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(outer)))
			return -1;
		l3 = lb_l2_restore(ctx, &l2);
		data_end = (void *)(long)ctx->data_end;
		if (!l3 || l3 + sizeof(outer) > data_end)
			return -1;
		__builtin_memcpy(l3, &outer, sizeof(outer));
		return 0;
	}
}

/* Sends the packet on to node `slot`. When that is impossible (slot emptied,
 * families differ, packet too big to encapsulate) the packet is dropped and
 * counted: passing it would make the local kernel reset a connection that
 * lives on the peer. */
static __always_inline int lb_forward(struct xdp_md *ctx, struct lb_packet *p,
				      const struct lb_config *cfg, __u32 slot, __u64 bytes)
{
	struct lb_node_counters *nc;
	struct lb_node *self, *peer;
	__u32 self_slot = cfg->self_slot;

	peer = bpf_map_lookup_elem(&lb_nodes, &slot);
	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!peer || !self || peer->state == LB_NODE_EMPTY)
		goto error;

	if (cfg->forward == LB_FORWARD_IPIP) {
		if (peer->family != self->family || lb_encapsulate(ctx, p, self, peer, cfg->mtu))
			goto error;
	} else {
		struct ethhdr *eth = p->data;

		if ((void *)(eth + 1) > p->data_end)
			goto error;
		__builtin_memcpy(eth->h_dest, peer->mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, self->mac, ETH_ALEN);
	}

	nc = bpf_map_lookup_elem(&lb_node_stats, &slot);
	if (nc) {
		nc->packets_forwarded++;
		nc->bytes_forwarded += bytes;
	}
	return XDP_TX;
error:
	lb_count(LB_C_DROP_FORWARD_ERROR, bytes);
	return XDP_DROP;
}

static __always_inline int lb_has_local_socket(struct xdp_md *ctx, const struct lb_flow_key *key)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	__u32 size;
	int local;

	if (key->family == LB_FAMILY_IPV4) {
		tuple.ipv4.saddr = key->saddr.v4;
		tuple.ipv4.daddr = key->daddr.v4;
		tuple.ipv4.sport = key->sport;
		tuple.ipv4.dport = key->dport;
		size = sizeof(tuple.ipv4);
	} else {
		__builtin_memcpy(tuple.ipv6.saddr, key->saddr.v6, 16);
		__builtin_memcpy(tuple.ipv6.daddr, key->daddr.v6, 16);
		tuple.ipv6.sport = key->sport;
		tuple.ipv6.dport = key->dport;
		size = sizeof(tuple.ipv6);
	}
	sk = bpf_skc_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	/* A listener matches any segment to the port: only a connection's own
	 * socket (established, time-wait, request) proves it is ours. */
	local = sk->state != LB_TCP_LISTEN;
	bpf_sk_release(sk);
	return local;
}

/* Comparing peers: two passes over the node slots driven by bpf_loop(), so
 * each step is verified once (unrolled, 64 slots times the step's branches
 * ran past the verifier's 1M-instruction budget). Pass 1 also leaves each
 * slot's effective load in per-CPU scratch for pass 2. */
struct lb_peer_loop {
	const struct lb_config *cfg;
	struct lb_scratch *scratch;
	struct lb_scan scan;
	__u64 now;
	__u64 mask;   /* slots that may be chosen (a URI rule's nodes); 0: all */
	__u32 min_bp; /* least effective load among them (lb_min_cb) */
	__u32 pad;
};

/* A slot's effective load, or LB_LOAD_UNUSABLE when it may not be chosen. */
static __always_inline __u32 lb_slot_load(const struct lb_peer_loop *l, __u32 i)
{
	__u32 slot = i;
	struct lb_node *n;

	if (i >= LB_MAX_NODES || i == l->cfg->self_slot)
		return LB_LOAD_UNUSABLE;
	if (l->mask && !(l->mask & (1ull << i)))
		return LB_LOAD_UNUSABLE;
	n = bpf_map_lookup_elem(&lb_nodes, &slot);
	if (!n || !lb_node_usable(n->state, n->updated_ns, l->now, l->cfg->peer_stale_ns))
		return LB_LOAD_UNUSABLE;
	return lb_effective_load(n->load_bp, n->pending, l->cfg->conn_cost_bp);
}

static long lb_min_cb(__u32 i, void *arg)
{
	struct lb_peer_loop *l = arg;
	__u32 bp;

	if (i >= LB_MAX_NODES)
		return 1;
	bp = lb_slot_load(l, i);
	if (bp < l->min_bp)
		l->min_bp = bp;
	return 0;
}

static long lb_scan_cb(__u32 i, void *arg)
{
	struct lb_peer_loop *l = arg;
	__u32 bp;

	if (i >= LB_MAX_NODES)
		return 1;
	bp = lb_slot_load(l, i);
	l->scratch->load_bp[i] = bp;
	lb_scan_peer(&l->scan, i, bp);
	return 0;
}

static long lb_pick_cb(__u32 i, void *arg)
{
	struct lb_peer_loop *l = arg;

	if (i >= LB_MAX_NODES)
		return 1;
	lb_pick_peer(&l->scan, i, l->scratch->load_bp[i]);
	return 0;
}

static __always_inline void lb_compare_peers(const struct lb_config *cfg, __u32 local_bp,
					     struct lb_decision *d, __u64 mask)
{
	struct lb_peer_loop l = { .cfg = cfg, .now = bpf_ktime_get_ns(), .mask = mask };
	__u32 zero = 0, slots = cfg->node_slots;

	if (lb_decide_begin(cfg, local_bp, d, &l.scan))
		return;
	l.scratch = bpf_map_lookup_elem(&lb_scratch, &zero);
	if (!l.scratch)
		return;
	if (slots > LB_MAX_NODES)
		slots = LB_MAX_NODES;
	bpf_loop(slots, lb_scan_cb, &l, 0);
	if (lb_decide_after_scan(cfg, &l.scan, bpf_get_prandom_u32(), d))
		return;
	bpf_loop(slots, lb_pick_cb, &l, 0);
	lb_decide_finish(&l.scan, d);
}

/* This node's load for the decision; 0 when its own information is stale
 * (the fail-safe: keep everything). */
static __always_inline int lb_self_load(const struct lb_config *cfg, __u32 *local_bp)
{
	__u32 self_slot = cfg->self_slot;
	struct lb_node *self;

	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!self || self->updated_ns == 0 ||
	    !lb_node_usable(LB_NODE_ALIVE, self->updated_ns, bpf_ktime_get_ns(), cfg->self_stale_ns))
		return 0;
	*local_bp = lb_local_load(self->state,
				  lb_effective_load(self->load_bp, self->pending, cfg->conn_cost_bp), cfg);
	return 1;
}

/* The SYN decision: fail-safe and threshold T1 here, peers if needed. */
static __always_inline struct lb_decision lb_decide_syn(const struct lb_config *cfg)
{
	struct lb_decision d = { LB_NODE_LOCAL, LB_REASON_FAILSAFE };
	__u32 local_bp;

	if (lb_self_load(cfg, &local_bp))
		lb_compare_peers(cfg, local_bp, &d, 0);
	return d;
}

/* A URI rule's scope (WO 99/18534, third embodiment): the decision runs
 * among the rule's nodes only (this node keeps a request only if it is one
 * of them); when all of them are at or above T1, among every node
 * (*spilled). Sets *mask and *local_bp for lb_compare_peers; returns 1 when
 * *d is final already. One lb_compare_peers call site for every http
 * decision: each inlined copy costs the verifier the whole peer walk. */
static __always_inline int lb_rule_scope(const struct lb_config *cfg, const struct lb_uri_rule *rule,
					 __u32 *local_bp, __u64 *mask, int *spilled,
					 struct lb_decision *d)
{
	struct lb_peer_loop l = { .cfg = cfg, .now = bpf_ktime_get_ns(), .min_bp = LB_LOAD_UNUSABLE };
	__u32 members_min = LB_LOAD_UNUSABLE, slots = cfg->node_slots;
	int self_in = rule->flags & LB_URI_SELF;

	l.mask = rule->nodes;
	if (cfg->self_slot < LB_MAX_NODES)
		l.mask &= ~(1ull << cfg->self_slot);
	if (slots > LB_MAX_NODES)
		slots = LB_MAX_NODES;
	if (l.mask) {
		bpf_loop(slots, lb_min_cb, &l, 0);
		members_min = l.min_bp;
	}
	if (self_in && *local_bp < members_min)
		members_min = *local_bp;
	if (members_min >= cfg->accept_below_bp) {
		*spilled = 1;
		*mask = 0;
		return 0;
	}
	if (!l.mask) { /* this node alone, below T1 */
		d->node = LB_NODE_LOCAL;
		d->reason = LB_REASON_BELOW_T1;
		return 1;
	}
	/* Not one of the rule's nodes: compares as full plus T2, so it never
	 * keeps the request and every member is a candidate. */
	if (!self_in)
		*local_bp = LB_LOAD_FULL + cfg->min_difference_bp;
	*mask = l.mask;
	return 0;
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
	default:
		return LB_C_SYN_LOCAL_FAILSAFE;
	}
}

static __always_inline int lb_handle_syn(struct xdp_md *ctx, struct lb_packet *p,
					 const struct lb_config *cfg, __u64 bytes)
{
	struct lb_decision d = lb_decide_syn(cfg);
	struct lb_flow flow = {
		.node = d.node,
		.reason = d.reason,
		.created_ns = bpf_ktime_get_ns(),
	};
	__u32 slot = d.node == LB_NODE_LOCAL ? cfg->self_slot : d.node;
	struct lb_node_counters *nc;
	struct lb_node *n;

	/* Count the connection against its node until that node's next load
	 * update (lb_node.pending), so a burst does not herd onto one node. */
	n = bpf_map_lookup_elem(&lb_nodes, &slot);
	if (n)
		__sync_fetch_and_add(&n->pending, 1);
	bpf_map_update_elem(&lb_flows_new, &p->key, &flow, BPF_ANY);
	lb_count(lb_syn_counter(d.reason), bytes);

	if (d.node == LB_NODE_LOCAL)
		return XDP_PASS;
	nc = bpf_map_lookup_elem(&lb_node_stats, &slot);
	if (nc)
		nc->syns_forwarded++;
	return lb_forward(ctx, p, cfg, d.node, bytes);
}

#include "http.bpf.h"
#include "syncookie.bpf.h"

/* Bytes of TCP payload in the segment, from the IP header's length. */
static __always_inline __u32 lb_payload_len(const struct lb_packet *p)
{
	__u32 l3_total, headers = p->l3_len + p->tcp->doff * 4;

	if (p->key.family == LB_FAMILY_IPV4) {
		struct iphdr *ip = p->l3;

		if ((void *)(ip + 1) > p->data_end)
			return 0;
		l3_total = bpf_ntohs(ip->tot_len);
	} else {
		struct ipv6hdr *ip6 = p->l3;

		if ((void *)(ip6 + 1) > p->data_end)
			return 0;
		l3_total = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	}
	return l3_total > headers ? l3_total - headers : 0;
}

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

	rule = bpf_map_lookup_elem(&lb_uri_rules, &index);
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
static __always_inline int lb_match_rule(const struct lb_config *cfg, const struct lb_packet *p,
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

static __always_inline void lb_pin_client(const struct lb_packet *p, __u32 node, __u32 rule,
					  __u32 timeout_s)
{
	struct lb_pin_key key = { .family = p->key.family };
	struct lb_pin pin = {
		.node = node,
		.rule = rule,
		.expires_ns = bpf_ktime_get_ns() + (__u64)timeout_s * 1000000000ull,
	};

	key.client = p->key.saddr;
	bpf_map_update_elem(&lb_pins, &key, &pin, BPF_ANY);
	lb_pin_event(&key, LB_PIN_SET, node, rule, timeout_s);
}

/* A pinned client's request goes to its node (while that node is usable);
 * its stateful rule's exit request goes there too and ends the pin.
 * Returns 1 with *d and flow->rule set when the client is pinned. */
static __always_inline int lb_pinned(const struct lb_config *cfg, const struct lb_packet *p,
				     const struct lb_http_request *req, struct lb_decision *d,
				     struct lb_flow *flow)
{
	struct lb_pin_key key = { .family = p->key.family };
	struct lb_uri_rule *rule;
	struct lb_pin *pin;
	struct lb_node *n;
	__u64 now = bpf_ktime_get_ns();
	__u32 node, index;

	key.client = p->key.saddr;
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
	rule = bpf_map_lookup_elem(&lb_uri_rules, &index);
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

/* The first segment of an "http" connection after its cookie handshake:
 * the request line picks a URI rule (or none), the decision is made here
 * and recorded in the established table, and the serving node's TC ingress
 * creates the connection from the cookie. Returns -1 when the segment
 * carries no cookie of ours (the l4 path handles it: a local connection,
 * or an orphan the kernel resets). */
static __always_inline int lb_http_first_segment(struct xdp_md *ctx, struct lb_packet *p,
						 const struct lb_config *cfg, __u64 bytes)
{
	struct lb_http_request *req;
	struct lb_http_scratch *hs;
	struct lb_rule_counters *rc;
	struct lb_node_counters *nc;
	struct lb_uri_rule *rule = NULL;
	struct lb_decision d;
	struct lb_flow flow;
	struct lb_node *n;
	__u32 cookie, slot, payload, off, local_bp, rule_index = 0, zero = 0;
	int matched = -1, spilled = 0;
	__u64 mask = 0;

	if (!lb_cookie_of_segment(p, &cookie))
		return -1;
	payload = lb_payload_len(p);
	/* The handshake's own ACK: nothing to decide on yet, and the client
	 * thinks it is connected; its first request carries the same ACK. */
	if (payload == 0 && !p->tcp->fin) {
		lb_count(LB_C_DROP_HANDSHAKE_ACK, bytes);
		return XDP_DROP;
	}

	/* From the parsed lengths: pointer differences end up as 32-bit
	 * pointer arithmetic, which the verifier refuses. */
	off = p->l2_len + p->l3_len + p->tcp->doff * 4;
	hs = bpf_map_lookup_elem(&lb_http_scratch, &zero);
	if (!hs)
		return -1;
	req = &hs->req;
	__builtin_memset(req, 0, sizeof(*req));
	if (payload)
		lb_http_read(ctx, off, payload, req);
	flow = (struct lb_flow){
		.http = LB_FLOW_HTTP | (req->status == LB_HTTP_NOT_HTTP ? LB_FLOW_NOT_HTTP : 0) |
			(req->status == LB_HTTP_INCOMPLETE ? LB_FLOW_INCOMPLETE : 0),
		.created_ns = bpf_ktime_get_ns(),
	};

	if (lb_pinned(cfg, p, req, &d, &flow)) {
		rule_index = flow.rule - 1u;
		rule = bpf_map_lookup_elem(&lb_uri_rules, &rule_index);
	} else {
		matched = lb_match_rule(cfg, p, req);
		if (matched >= 0) {
			rule_index = (__u32)matched;
			rule = bpf_map_lookup_elem(&lb_uri_rules, &rule_index);
		}
		d.node = LB_NODE_LOCAL;
		d.reason = LB_REASON_FAILSAFE;
		if (lb_self_load(cfg, &local_bp) &&
		    !(rule && lb_rule_scope(cfg, rule, &local_bp, &mask, &spilled, &d)))
			lb_compare_peers(cfg, local_bp, &d, mask);
		flow.rule = rule ? (__u8)(rule_index + 1) : 0;
		flow.http |= spilled ? LB_FLOW_SPILLED : 0;
		if (rule && (rule->flags & LB_URI_STATEFUL)) {
			lb_pin_client(p, d.node, rule_index, rule->pin_timeout_s);
			flow.http |= LB_FLOW_PIN_SET;
		}
	}
	flow.node = d.node;
	flow.reason = d.reason;
	if (req->status == LB_HTTP_NOT_HTTP)
		lb_count(LB_C_HTTP_NOT_HTTP, bytes);
	else if (req->status == LB_HTTP_INCOMPLETE)
		lb_count(LB_C_HTTP_INCOMPLETE, bytes);
	if (rule) {
		rc = bpf_map_lookup_elem(&lb_rule_stats, &rule_index);
		if (rc) {
			rc->hits++;
			rc->spilled += spilled;
		}
	}

	slot = d.node == LB_NODE_LOCAL ? cfg->self_slot : d.node;
	n = bpf_map_lookup_elem(&lb_nodes, &slot);
	if (n)
		__sync_fetch_and_add(&n->pending, 1);
	bpf_map_update_elem(&lb_flows, &p->key, &flow, BPF_ANY);
	if (d.node == LB_NODE_LOCAL) {
		lb_count(LB_C_HTTP_LOCAL, bytes);
		return XDP_PASS;
	}
	lb_count(LB_C_HTTP_FORWARD, bytes);
	nc = bpf_map_lookup_elem(&lb_node_stats, &slot);
	if (nc)
		nc->syns_forwarded++;
	return lb_forward(ctx, p, cfg, d.node, bytes);
}

/* The flow's entry: established first, else half-open. A half-open entry
 * hit by anything but a SYN moves to the established table, out of reach
 * of SYN floods; *copy then holds it. */
static __always_inline struct lb_flow *lb_lookup_flow(const struct lb_packet *p,
						      struct lb_flow *copy)
{
	struct lb_flow *flow = bpf_map_lookup_elem(&lb_flows, &p->key);

	if (flow)
		return flow;
	flow = bpf_map_lookup_elem(&lb_flows_new, &p->key);
	if (!flow || (p->tcp->syn && !p->tcp->ack))
		return flow;
	*copy = *flow;
	bpf_map_update_elem(&lb_flows, &p->key, copy, BPF_ANY);
	bpf_map_delete_elem(&lb_flows_new, &p->key);
	return copy;
}

static __always_inline int lb_in_grace(const struct lb_flow_key *key)
{
	struct lb_grace_key gk = { .family = key->family };
	__u64 *until;

	gk.addr = key->daddr;
	until = bpf_map_lookup_elem(&lb_grace, &gk);
	return until && bpf_ktime_get_ns() < *until;
}

static __always_inline int lb_steered_by_mac(const struct lb_packet *p)
{
	struct ethhdr *eth = p->data;
	struct lb_node_mac_key key = {};

	if ((void *)(eth + 1) > p->data_end)
		return 0;
	__builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);
	return bpf_map_lookup_elem(&lb_node_macs, &key) != NULL;
}

static __always_inline int lb_from_node(const struct lb_flow_key *outer)
{
	struct lb_node_addr_key key = { .family = outer->family };

	key.addr = outer->saddr;
	return bpf_map_lookup_elem(&lb_node_addrs, &key) != NULL;
}

SEC("xdp")
int xdp_peerlb(struct xdp_md *ctx)
{
	struct lb_packet p = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
	};
	__u64 bytes = p.data_end - p.data;
	struct lb_service_key skey = {};
	struct lb_flow found, *flow;
	struct lb_service *svc;
	struct lb_config *cfg;
	__u32 zero = 0;
	int ret, http;

	switch (lb_parse(&p)) {
	case LB_PARSE_TCP:
		break;
	case LB_PARSE_ENCAP:
		/* Steered here by a peer: pop the outer header and never steer
		 * it again. Unknown senders' tunnels pass untouched (and the
		 * kernel, with no tunnel device, drops them). */
		if (!lb_from_node(&p.key)) {
			lb_count(LB_C_PASS_NOT_TCP, bytes);
			return XDP_PASS;
		}
		if (lb_decapsulate(ctx, &p)) {
			lb_count(LB_C_PASS_MALFORMED, bytes);
			return XDP_PASS;
		}
		lb_count(LB_C_PASS_DECAPSULATED, bytes);
		return XDP_PASS;
	case LB_PARSE_NOT_IP:
		lb_count(LB_C_PASS_NOT_IP, bytes);
		return XDP_PASS;
	case LB_PARSE_NOT_TCP:
		lb_count(LB_C_PASS_NOT_TCP, bytes);
		return XDP_PASS;
	case LB_PARSE_FRAGMENT:
		lb_count(LB_C_PASS_FRAGMENT, bytes);
		return XDP_PASS;
	default:
		lb_count(LB_C_PASS_MALFORMED, bytes);
		return XDP_PASS;
	}

	skey.addr = p.key.daddr;
	skey.port = p.key.dport;
	skey.family = p.key.family;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	svc = bpf_map_lookup_elem(&lb_services, &skey);
	if (!cfg || !svc) {
		lb_count(LB_C_PASS_NOT_SERVICE, bytes);
		return XDP_PASS;
	}
	http = svc->mode == LB_MODE_HTTP;

	if (cfg->forward == LB_FORWARD_L2 && lb_steered_by_mac(&p)) {
		lb_count(LB_C_PASS_STEERED_IN, bytes);
		return XDP_PASS;
	}

	flow = lb_lookup_flow(&p, &found);
	if (flow) {
		if (flow->node == LB_NODE_LOCAL) {
			lb_count(LB_C_PASS_FLOW_LOCAL, bytes);
			return XDP_PASS;
		}
		/* Counted as sent only when sent: a failed forward is counted
		 * as drop_forward_error alone. */
		ret = lb_forward(ctx, &p, cfg, flow->node, bytes);
		if (ret == XDP_TX)
			lb_count(LB_C_TX_FLOW_FORWARD, bytes);
		return ret;
	}

	if (p.tcp->syn && !p.tcp->ack)
		return http ? lb_syn_cookie_reply(ctx, &p, cfg, bytes) : lb_handle_syn(ctx, &p, cfg, bytes);
	if (http) {
		ret = lb_http_first_segment(ctx, &p, cfg, bytes);
		if (ret >= 0)
			return ret;
	}

	if (lb_has_local_socket(ctx, &p.key)) {
		lb_count(LB_C_PASS_LOCAL_SOCKET, bytes);
		return XDP_PASS;
	}
	/* No flow and no socket. Just after the address moved here, the flow
	 * is likely served by a peer whose announcement is on its way: drop,
	 * the client retransmits. Otherwise the kernel answers (RST). */
	if (lb_in_grace(&p.key)) {
		lb_count(LB_C_DROP_ORPHAN_GRACE, bytes);
		return XDP_DROP;
	}
	lb_count(LB_C_PASS_ORPHAN, bytes);
	return XDP_PASS;
}

static __always_inline __u16 lb_swab16(__u16 x)
{
	return (__u16)(x << 8 | x >> 8);
}

/* Clients send their segments at most MSS long; with ipip forwarding they
 * cross one more header, so every SYN-ACK of a service announces an MSS that
 * leaves room for it (XDP cannot fragment). */
SEC("tc")
int tc_mss_clamp(struct __sk_buff *skb)
{
	struct lb_packet p = {
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
	};
	struct lb_opt_walk w;
	struct lb_service_key skey = {};
	__u32 zero = 0, self_slot, limit, tcp_off;
	__u16 old_mss, new_mss, csum_old, csum_new;
	struct lb_config *cfg;
	struct lb_node *self;

	if (lb_parse(&p) != LB_PARSE_TCP || !p.tcp->syn || !p.tcp->ack)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg || cfg->forward != LB_FORWARD_IPIP)
		return TC_ACT_OK;
	skey.addr = p.key.saddr;
	skey.port = p.key.sport;
	skey.family = p.key.family;
	if (!bpf_map_lookup_elem(&lb_services, &skey))
		return TC_ACT_OK;
	self_slot = cfg->self_slot;
	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!self)
		return TC_ACT_OK;

	limit = cfg->mtu - sizeof(struct tcphdr) -
		(p.key.family == LB_FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr)) -
		(self->family == LB_FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr));

	tcp_off = (void *)p.tcp - p.data;
	if (lb_opt_walk(skb, 1, &p, &w) || w.mss_at > sizeof(w.opts) - TCPOLEN_MSS)
		return TC_ACT_OK;

	__builtin_memcpy(&old_mss, &w.opts[w.mss_at + 2], sizeof(old_mss));
	if (bpf_ntohs(old_mss) <= limit)
		return TC_ACT_OK;
	new_mss = bpf_htons(limit);
	csum_old = old_mss;
	csum_new = new_mss;
	/* The checksum adds 16-bit words from the start of the TCP header: an
	 * MSS value at an odd offset (options "NOP, MSS") straddles two words
	 * and counts with its bytes swapped. */
	if ((w.mss_at + 2) & 1) {
		csum_old = lb_swab16(old_mss);
		csum_new = lb_swab16(new_mss);
	}
	/* The checksum helper handles CHECKSUM_PARTIAL skbs too. */
	bpf_l4_csum_replace(skb, tcp_off + offsetof(struct tcphdr, check), csum_old, csum_new, 2);
	bpf_skb_store_bytes(skb, tcp_off + sizeof(struct tcphdr) + w.mss_at + 2, &new_mss,
			    sizeof(new_mss), 0);
	lb_count(LB_C_TC_MSS_CLAMPED, skb->len);
	return TC_ACT_OK;
}

/* Ingress of every node: the first segment of an "http" connection that
 * this node serves becomes a connection from its cookie
 * (syncookie.bpf.h). Everything else passes untouched. */
SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	struct lb_packet p = {
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
	};
	struct lb_service_key skey = {};
	struct lb_service *svc;
	struct lb_config *cfg;
	__u32 zero = 0;

	if (lb_parse(&p) != LB_PARSE_TCP || p.tcp->syn || !p.tcp->ack || p.tcp->rst)
		return TC_ACT_OK;
	skey.addr = p.key.daddr;
	skey.port = p.key.dport;
	skey.family = p.key.family;
	svc = bpf_map_lookup_elem(&lb_services, &skey);
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!svc || !cfg || svc->mode != LB_MODE_HTTP)
		return TC_ACT_OK;
	return lb_tc_cookie_ingress(skb, &p, cfg);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
