/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Moving packets between nodes (DESIGN.md section 2): the l2 rewrite, the
 * outer IPv4/IPv6 header pushed for ipip and popped by the receiving node,
 * and the copy of the Ethernet header and VLAN tags that moves with them. */
#ifndef PEERLB_BPF_FORWARD_H
#define PEERLB_BPF_FORWARD_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "csum.bpf.h"
#include "maps.bpf.h"
#include "parse.bpf.h"

#define LB_TTL 64
#define LB_IP_DF 0x4000

#define LB_L2_MAX (sizeof(struct ethhdr) + LB_MAX_VLAN_TAGS * sizeof(struct vlan_hdr_lb))

/* The Ethernet header and VLAN tags, kept aside while an outer IP header is
 * pushed or popped behind them. Every size is a constant per tag count: a
 * computed length loses its bounds in a stack spill, and the verifier then
 * rejects the writes ("R1 offset is outside of the packet"). */
struct lb_l2_copy {
	__u8 bytes[LB_L2_MAX];
	__u16 tags;
};

/* Saves the frame's L2 header with `proto` as the ethertype before L3. */
static __always_inline int lb_l2_save(struct xdp_md *ctx, __u32 tags, __be16 proto,
				      struct lb_l2_copy *c)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	c->tags = tags;
	switch (tags) {
	case 0:
		if (data + sizeof(struct ethhdr) > data_end)
			return -1;
		__builtin_memcpy(c->bytes, data, sizeof(struct ethhdr));
		__builtin_memcpy(&c->bytes[sizeof(struct ethhdr) - 2], &proto, 2);
		return 0;
	case 1:
		if (data + sizeof(struct ethhdr) + 4 > data_end)
			return -1;
		__builtin_memcpy(c->bytes, data, sizeof(struct ethhdr) + 4);
		__builtin_memcpy(&c->bytes[sizeof(struct ethhdr) + 2], &proto, 2);
		return 0;
	case 2:
		if (data + sizeof(struct ethhdr) + 8 > data_end)
			return -1;
		__builtin_memcpy(c->bytes, data, sizeof(struct ethhdr) + 8);
		__builtin_memcpy(&c->bytes[sizeof(struct ethhdr) + 6], &proto, 2);
		return 0;
	default:
		return -1;
	}
}

/* Writes the copy at the start of the (moved) frame; returns L3 or NULL. */
static __always_inline void *lb_l2_restore(struct xdp_md *ctx, const struct lb_l2_copy *c)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	switch (c->tags) {
	case 0:
		if (data + sizeof(struct ethhdr) > data_end)
			return NULL;
		__builtin_memcpy(data, c->bytes, sizeof(struct ethhdr));
		return data + sizeof(struct ethhdr);
	case 1:
		if (data + sizeof(struct ethhdr) + 4 > data_end)
			return NULL;
		__builtin_memcpy(data, c->bytes, sizeof(struct ethhdr) + 4);
		return data + sizeof(struct ethhdr) + 4;
	case 2:
		if (data + sizeof(struct ethhdr) + 8 > data_end)
			return NULL;
		__builtin_memcpy(data, c->bytes, sizeof(struct ethhdr) + 8);
		return data + sizeof(struct ethhdr) + 8;
	default:
		return NULL;
	}
}

/* Pops the outer IPv4/IPv6 header of a packet a peer steered here (p parsed
 * as LB_PARSE_ENCAP). 0, or -1 with the frame untouched. */
LB_GLOBAL int lb_decapsulate(struct xdp_md *ctx, const struct lb_pkt *p)
{
	struct lb_l2_copy l2;
	__u32 outer;

	if (!p || p->l4_off <= p->l3_off)
		return -1;
	outer = p->l4_off - p->l3_off;
	if (lb_l2_save(ctx, p->vlan_tags,
		       p->inner_proto == IPPROTO_IPIP ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6),
		       &l2))
		return -1;
	if (bpf_xdp_adjust_head(ctx, (int)outer))
		return -1;
	return lb_l2_restore(ctx, &l2) ? 0 : -1;
}

/* Moves the L2 header `hdr_len` bytes to the front, addressed from `self`
 * to `peer` with ethertype `proto`, and writes the outer header `hdr` in
 * the gap. hdr_len is a constant at each (inlined) call. */
static __always_inline int lb_push_outer(struct xdp_md *ctx, const struct lb_pkt *p,
					 const struct lb_node *self, const struct lb_node *peer,
					 __be16 proto, const void *hdr, __u32 hdr_len)
{
	struct lb_l2_copy l2;
	void *l3, *data_end;

	if (lb_l2_save(ctx, p->vlan_tags, proto, &l2))
		return -1;
	__builtin_memcpy(&l2.bytes[0], peer->mac, ETH_ALEN);
	__builtin_memcpy(&l2.bytes[ETH_ALEN], self->mac, ETH_ALEN);
	if (bpf_xdp_adjust_head(ctx, -(int)hdr_len))
		return -1;
	l3 = lb_l2_restore(ctx, &l2);
	data_end = (void *)(long)ctx->data_end;
	if (!l3 || l3 + hdr_len > data_end)
		return -1;
	__builtin_memcpy(l3, hdr, hdr_len);
	return 0;
}

static __always_inline int lb_addr_eq(const union lb_addr *a, const union lb_addr *b, __u8 family)
{
	if (family == LB_FAMILY_IPV4)
		return a->v4 == b->v4;
	return a->v6[0] == b->v6[0] && a->v6[1] == b->v6[1] && a->v6[2] == b->v6[2] &&
	       a->v6[3] == b->v6[3];
}

/* Whether the inner packet of a tunnel (p parsed as LB_PARSE_ENCAP) is TCP
 * to a service. */
static __always_inline int lb_inner_is_service(struct xdp_md *ctx, const struct lb_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_service_key skey = {};
	__u32 off = p->l4_off, hlen = 0, total = 0;
	struct lb_pkt inner = {};
	struct tcphdr *tcp;
	void *l3;
	int ret;

	if (off > LB_MAX_L4_OFF)
		return 0;
	l3 = data + off;
	if (p->inner_proto == IPPROTO_IPIP)
		ret = lb_parse_ipv4(l3, data_end, &inner, &hlen, &total);
	else
		ret = lb_parse_ipv6(l3, data_end, &inner, &hlen, &total);
	if (ret != LB_PARSE_TCP || hlen > LB_MAX_L4_OFF)
		return 0;
	tcp = l3 + hlen;
	if ((void *)(tcp + 1) > data_end)
		return 0;
	if (tcp->doff < 5 || (void *)tcp + tcp->doff * 4 > data_end)
		return 0; /* not a TCP header as parse.bpf.h takes one */
	skey.addr = inner.key.daddr;
	skey.port = tcp->dest;
	skey.family = inner.key.family;
	return bpf_map_lookup_elem(&lb_services, &skey) != NULL;
}

/* A tunnel packet (p parsed as LB_PARSE_ENCAP). Decapsulated and passed
 * only when it is trusted as steered here by a peer (DESIGN.md section 2):
 * ipip mode, addressed to this node's own address, from the node address of
 * a live peer (not this node's), its inner packet TCP to a service; it is
 * then never steered again. Anything else passes untouched: the kernel has
 * no tunnel device to take it. */
LB_GLOBAL int lb_steered_tunnel(struct xdp_md *ctx, const struct lb_pkt *p)
{
	struct lb_node_addr_key from = {};
	struct lb_node *self, *peer;
	struct lb_config *cfg;
	__u32 zero = 0, self_slot, *slot;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg)
		return XDP_PASS;
	if (cfg->forward != LB_FORWARD_IPIP)
		goto refused;
	self_slot = cfg->self_slot;
	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!self || self->family != p->key.family ||
	    !lb_addr_eq(&self->addr, &p->key.daddr, p->key.family))
		goto refused;
	from.addr = p->key.saddr;
	from.family = p->key.family;
	slot = bpf_map_lookup_elem(&lb_node_addrs, &from);
	if (!slot || *slot == self_slot)
		goto refused;
	peer = bpf_map_lookup_elem(&lb_nodes, slot);
	if (!peer || peer->state == LB_NODE_EMPTY || peer->state == LB_NODE_DEAD)
		goto refused;
	if (!lb_inner_is_service(ctx, p))
		goto refused;
	if (lb_decapsulate(ctx, p)) {
		lb_count(LB_C_PASS_MALFORMED, p->len);
		return XDP_PASS;
	}
	lb_count(LB_C_PASS_DECAPSULATED, p->len);
	return XDP_PASS;
refused:
	lb_count(LB_C_PASS_TUNNEL_REFUSED, p->len);
	return XDP_PASS;
}

/* Pushes an outer header from this node to `peer` (same family) and sets the
 * MACs for the next hop. */
static __always_inline int lb_encapsulate(struct xdp_md *ctx, const struct lb_pkt *p,
					  const struct lb_node *self, const struct lb_node *peer,
					  __u32 mtu)
{
	__u32 inner_len = p->len - p->l3_off;
	__u8 inner = p->key.family == LB_FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;

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
		return lb_push_outer(ctx, p, self, peer, bpf_htons(ETH_P_IP), &outer, sizeof(outer));
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
		return lb_push_outer(ctx, p, self, peer, bpf_htons(ETH_P_IPV6), &outer, sizeof(outer));
	}
}

/* Sends the packet on to node `slot` (XDP_TX). When that is impossible (slot
 * emptied, families differ, packet too big to encapsulate) the packet is
 * dropped and counted: passing it would make the local kernel reset a
 * connection that lives on the peer. */
LB_GLOBAL int lb_forward(struct xdp_md *ctx, const struct lb_pkt *p, __u32 slot)
{
	struct lb_node_counters *nc;
	struct lb_node *self, *peer;
	struct lb_config *cfg;
	__u32 zero = 0, self_slot;
	__u64 bytes;

	if (!p)
		return XDP_DROP;
	bytes = p->len;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		goto error;
	self_slot = cfg->self_slot;
	peer = bpf_map_lookup_elem(&lb_nodes, &slot);
	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!peer || !self || peer->state == LB_NODE_EMPTY)
		goto error;

	if (cfg->forward == LB_FORWARD_IPIP) {
		if (peer->family != self->family || lb_encapsulate(ctx, p, self, peer, cfg->mtu))
			goto error;
	} else {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		struct ethhdr *eth = data;

		if ((void *)(eth + 1) > data_end)
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

#endif
