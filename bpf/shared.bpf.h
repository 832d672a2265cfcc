/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Shared service addresses (DESIGN.md section 5b): every node serves them,
 * the client's bucket (maps/shared.h) names the node that keeps a packet.
 * The owner keeps everything, but while a move of the bucket is recent (its
 * chain) only SYNs and its own connections: other packets go on to the
 * previous owners. With ecmp delivery a node that is not the owner sends
 * the packet to it; with flood delivery it drops it (the owner has its own
 * copy).
 *
 * A packet sent to another node carries a hop mark in its outer header: its
 * hop count and the nodes it passed. No packet takes more than LB_HOP_MAX
 * hops or comes back to a node it passed, whatever the nodes' tables say;
 * at the end of the chain it is dropped, never passed (the kernel would
 * reset a connection that lives elsewhere).
 *
 * Shared packets never use the flow tables nor the load decision: the
 * steady state costs the bucket's array lookup. */
#ifndef PEERLB_BPF_SHARED_H
#define PEERLB_BPF_SHARED_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "forward.bpf.h"
#include "maps.bpf.h"
#include "parse.bpf.h"

/* The packet's bucket, or NULL when there is no table, the bucket is out of
 * it or has no owner yet. */
static __always_inline const struct lb_bucket *lb_bucket_of_packet(const struct lb_config *cfg,
								 const struct lb_pkt *p)
{
	const struct lb_bucket *b;
	__u32 index;

	if (!cfg->shared_buckets)
		return NULL;
	index = lb_bucket_of(&p->key.saddr, p->key.family, p->key.sport, cfg->shared_hash,
			     cfg->shared_buckets);
	b = bpf_map_lookup_elem(&lb_buckets, &index);
	if (!b || b->owner == LB_BUCKET_NONE)
		return NULL;
	return b;
}

/* Whether the bucket's previous owners still get its packets. The clock is
 * read only for a bucket that has any, and its coarse form is enough: the
 * chain lasts minutes (daisy_chain_s), it may end a tick late. */
static __always_inline int lb_chain_active(const struct lb_bucket *b)
{
	if (b->prev[0] == LB_BUCKET_NONE && b->prev[1] == LB_BUCKET_NONE)
		return 0;
	return bpf_ktime_get_coarse_ns() < b->chain_until_ns;
}

/* Whether node `slot` can take a packet along a chain: it is there and not
 * dead (its load does not matter, nor how fresh it is). */
static __always_inline int lb_chain_node_usable(__u32 slot)
{
	struct lb_node *n;

	if (slot == LB_BUCKET_NONE)
		return 0;
	n = bpf_map_lookup_elem(&lb_nodes, &slot);
	return n && n->state != LB_NODE_EMPTY && n->state != LB_NODE_DEAD;
}

/* Whether `slot` may be the packet's next node: usable, and none of this
 * node, the one that sent it here and the two it passed before. */
static __always_inline int lb_chain_next_ok(__u32 slot, __u32 self, __u32 sender, __u32 mark)
{
	return slot != self && slot != sender && slot != lb_hop_passed(mark, 0) &&
	       slot != lb_hop_passed(mark, 1) && lb_chain_node_usable(slot);
}

/* Sends a shared packet to node `slot` with `hop_mark` (never 0: the
 * mark makes lb_forward encapsulate, in l2 mode too), counting `counter`
 * when sent. */
static __always_inline int lb_shared_send(struct xdp_md *ctx, const struct lb_pkt *p,
					  const struct lb_config *cfg, __u32 slot, __u32 hop_mark,
					  __u32 counter)
{
	int ret;

	ret = lb_forward(ctx, p, slot, hop_mark);
	if (ret == XDP_TX || ret == XDP_REDIRECT)
		lb_count(counter, p->len);
	return ret;
}

static __always_inline int lb_shared_verdict(int verdict, __u32 counter, const struct lb_pkt *p)
{
	lb_count(counter, p->len);
	return verdict;
}

/* A flooded frame kept here: it came to a multicast MAC, and the kernel's
 * TCP takes only frames addressed to the host (PACKET_HOST), so it gets
 * this node's own MAC. Drivers that set the packet type before XDP runs
 * (veth) keep it: tc_ingress mends that (bpf_skb_change_type). */
static __always_inline int lb_shared_keep(struct xdp_md *ctx, const struct lb_config *cfg,
					  __u32 counter, const struct lb_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 self_slot = cfg->self_slot;
	struct lb_node *self;

	if (cfg->shared_delivery == LB_DELIVERY_FLOOD && (void *)(eth + 1) <= data_end &&
	    (eth->h_dest[0] & 1)) {
		self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
		if (self)
			__builtin_memcpy(eth->h_dest, self->mac, ETH_ALEN);
	}
	return lb_shared_verdict(XDP_PASS, counter, p);
}

/* A packet from outside (not steered here) to a shared address. */
LB_GLOBAL int lb_shared_packet(struct xdp_md *ctx, const struct lb_pkt *p)
{
	const struct lb_bucket *b;
	struct lb_config *cfg;
	__u32 zero = 0, self;
	int chain;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg)
		return XDP_DROP;
	b = lb_bucket_of_packet(cfg, p);
	if (!b)
		return lb_shared_verdict(XDP_DROP, LB_C_SHARED_NO_TABLE, p);
	self = cfg->self_slot;

	if (b->owner == self) {
		if (lb_is_syn(p) || !lb_chain_active(b) || lb_has_local_socket(ctx, &p->key))
			return lb_shared_keep(ctx, cfg, LB_C_SHARED_LOCAL, p);
		/* A connection of a previous owner, which has its own copy. */
		if (cfg->shared_delivery == LB_DELIVERY_FLOOD)
			return lb_shared_verdict(XDP_DROP, LB_C_SHARED_NOT_OWNER, p);
		if (b->prev[0] != self && lb_chain_node_usable(b->prev[0]))
			return lb_shared_send(ctx, p, cfg, b->prev[0],
					      lb_hop_mark(1, LB_BUCKET_NONE, LB_BUCKET_NONE),
					      LB_C_SHARED_SECOND_HOP);
		if (b->prev[1] != self && lb_chain_node_usable(b->prev[1]))
			return lb_shared_send(ctx, p, cfg, b->prev[1],
					      lb_hop_mark(1, LB_BUCKET_NONE, LB_BUCKET_NONE),
					      LB_C_SHARED_SECOND_HOP);
		return lb_shared_verdict(XDP_DROP, LB_C_SHARED_CHAIN_DROP, p);
	}

	/* A router may still bring a previous owner its own connections. */
	chain = (b->prev[0] == self || b->prev[1] == self) && lb_chain_active(b);
	if (chain && lb_has_local_socket(ctx, &p->key))
		return lb_shared_keep(ctx, cfg, LB_C_SHARED_PREVIOUS_LOCAL, p);
	if (cfg->shared_delivery == LB_DELIVERY_FLOOD)
		return lb_shared_verdict(XDP_DROP, LB_C_SHARED_NOT_OWNER, p);
	return lb_shared_send(ctx, p, cfg, b->owner, lb_hop_mark(1, LB_BUCKET_NONE, LB_BUCKET_NONE),
			      LB_C_SHARED_TO_OWNER);
}

/* A packet a peer sent along a shared address's chain (lb_steered_tunnel:
 * trusted, unwrapped; from node `sender` with `mark`). Kept when a local
 * connection has it, or when it is a SYN (the sender took this node for the
 * owner); otherwise it goes on to the first of the owner and the previous
 * owners (while the chain lasts) that it has not passed, within
 * LB_HOP_MAX hops, or is dropped. */
LB_GLOBAL int lb_shared_chain(struct xdp_md *ctx, __u32 sender, __u32 mark)
{
	const struct lb_bucket *b;
	struct lb_config *cfg;
	__u32 zero = 0, self, next, passed_a, passed_b;
	__u32 hop_mark = mark;
	struct lb_pkt p;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return XDP_DROP;
	if (lb_parse_xdp(ctx, &p) != LB_PARSE_TCP) {
		lb_count(LB_C_PASS_MALFORMED, p.len);
		return XDP_PASS;
	}
	b = lb_bucket_of_packet(cfg, &p);
	self = cfg->self_slot;

	if (lb_has_local_socket(ctx, &p.key))
		return lb_shared_verdict(XDP_PASS,
					 b && b->owner == self ? LB_C_SHARED_LOCAL
							       : LB_C_SHARED_PREVIOUS_LOCAL,
					 &p);
	if (lb_is_syn(&p))
		return lb_shared_verdict(XDP_PASS, LB_C_SHARED_LOCAL, &p);
	if (!b || lb_hop_count(hop_mark) >= LB_HOP_MAX)
		return lb_shared_verdict(XDP_DROP, LB_C_SHARED_CHAIN_DROP, &p);

	next = LB_BUCKET_NONE;
	if (lb_chain_next_ok(b->owner, self, sender, hop_mark))
		next = b->owner;
	else if (lb_chain_active(b)) {
		if (lb_chain_next_ok(b->prev[0], self, sender, hop_mark))
			next = b->prev[0];
		else if (lb_chain_next_ok(b->prev[1], self, sender, hop_mark))
			next = b->prev[1];
	}
	if (next == LB_BUCKET_NONE)
		return lb_shared_verdict(XDP_DROP, LB_C_SHARED_CHAIN_DROP, &p);

	/* The next node must not send it back here nor to those before. */
	passed_a = lb_hop_passed(hop_mark, 0);
	passed_b = lb_hop_passed(hop_mark, 1);
	if (passed_a == LB_BUCKET_NONE) {
		passed_a = passed_b;
		passed_b = LB_BUCKET_NONE;
	}
	if (passed_a == LB_BUCKET_NONE)
		passed_a = sender;
	else if (passed_b == LB_BUCKET_NONE)
		passed_b = sender;
	return lb_shared_send(ctx, &p, cfg, next,
			      lb_hop_mark(lb_hop_count(hop_mark) + 1, passed_a, passed_b),
			      LB_C_SHARED_SECOND_HOP);
}

#endif
