/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Moving packets between nodes (DESIGN.md section 2): the l2 rewrite, the
 * outer IPv4/IPv6 header pushed for ipip and popped by the receiving node,
 * the copy of the Ethernet header and VLAN tags that moves with them, and
 * the next hop of an ipip frame from the kernel's routing table. */
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

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* The loopback device's index, the same in every network namespace. */
#define LB_LOOPBACK_IFINDEX 1

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

/* Moves the L2 header `hdr_len` bytes to the front with ethertype `proto`
 * (its MACs are the caller's to set); returns the gap, where the outer
 * header goes, or NULL. hdr_len is a constant at each (inlined) call. */
static __always_inline void *lb_push_gap(struct xdp_md *ctx, const struct lb_pkt *p, __be16 proto,
					 __u32 hdr_len)
{
	struct lb_l2_copy l2;
	void *l3, *data_end;

	if (lb_l2_save(ctx, p->vlan_tags, proto, &l2))
		return NULL;
	if (bpf_xdp_adjust_head(ctx, -(int)hdr_len))
		return NULL;
	l3 = lb_l2_restore(ctx, &l2);
	data_end = (void *)(long)ctx->data_end;
	if (!l3 || l3 + hdr_len > data_end)
		return NULL;
	return l3;
}

static __always_inline int lb_addr_eq(const union lb_addr *a, const union lb_addr *b, __u8 family)
{
	if (family == LB_FAMILY_IPV4)
		return a->v4 == b->v4;
	return a->v6[0] == b->v6[0] && a->v6[1] == b->v6[1] && a->v6[2] == b->v6[2] &&
	       a->v6[3] == b->v6[3];
}

/* The service of the inner packet of a tunnel (p parsed as LB_PARSE_ENCAP)
 * when it is TCP to one, else NULL. */
static __always_inline const struct lb_service *lb_inner_service(struct xdp_md *ctx,
								 const struct lb_pkt *p)
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
		return NULL;
	l3 = data + off;
	if (p->inner_proto == IPPROTO_IPIP)
		ret = lb_parse_ipv4(l3, data_end, &inner, &hlen, &total);
	else
		ret = lb_parse_ipv6(l3, data_end, &inner, &hlen, &total);
	if (ret != LB_PARSE_TCP || hlen > LB_MAX_L4_OFF)
		return NULL;
	tcp = l3 + hlen;
	if ((void *)(tcp + 1) > data_end)
		return NULL;
	if (tcp->doff < 5 || (void *)tcp + tcp->doff * 4 > data_end)
		return NULL; /* not a TCP header as parse.bpf.h takes one */
	skey.addr = inner.key.daddr;
	skey.port = tcp->dest;
	skey.family = inner.key.family;
	return bpf_map_lookup_elem(&lb_services, &skey);
}

/* The hop mark in the outer header of a tunnel packet (p parsed as
 * LB_PARSE_ENCAP; maps/shared.h). */
static __always_inline __u32 lb_outer_hop_mark(struct xdp_md *ctx, const struct lb_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 off = p->l3_off;

	if (off > LB_L2_MAX)
		return 0;
	if (p->key.family == LB_FAMILY_IPV4) {
		struct iphdr *ip = data + off;

		if ((void *)(ip + 1) > data_end)
			return 0;
		return lb_hop_mark_from(bpf_ntohs(ip->id), ip->tos >> 2);
	} else {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return 0;
		/* The traffic class spans the first two bytes. */
		return lb_hop_mark_from(ip6->flow_lbl[1] << 8 | ip6->flow_lbl[2],
					((*(__u8 *)ip6 & 0xf) << 4 | ip6->flow_lbl[0] >> 4) >> 2);
	}
}

/* lb_steered_tunnel's answer for a packet sent along a shared address's
 * chain: not an XDP verdict. */
#define LB_STEERED_CHAIN 0x100

/* Where a packet on a chain comes from, for lb_shared_chain (shared.bpf.h). */
struct lb_chain_in {
	__u32 sender; /* node slot of the outer source */
	__u32 mark;   /* the outer header's hop mark */
};

/* A tunnel packet (p parsed as LB_PARSE_ENCAP). Decapsulated only when it
 * is trusted as steered here by a peer (DESIGN.md section 2): ipip mode,
 * addressed to this node's own address, from the node address of a live
 * peer (not this node's), its inner packet TCP to a service. Then:
 * - without a hop mark it is passed, never steered again;
 * - with one, to a shared address (its chain, DESIGN.md section 5b),
 *   `chain` says whence and LB_STEERED_CHAIN is returned: lb_shared_chain
 *   decides. Other services' packets never carry one (a mark there is
 *   ignored).
 * Anything else passes untouched: the kernel has no tunnel device to take
 * it. */
LB_GLOBAL int lb_steered_tunnel(struct xdp_md *ctx, const struct lb_pkt *p,
				struct lb_chain_in *chain)
{
	struct lb_node_addr_key from = {};
	const struct lb_service *svc;
	struct lb_node *self, *peer;
	struct lb_config *cfg;
	__u32 zero = 0, self_slot, *slot;
	__u32 mark = 0;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg || !chain)
		return XDP_PASS;
	/* In l2 mode only a shared address's chain hop comes in a tunnel
	 * (checked below, with the mark). */
	if (cfg->forward != LB_FORWARD_IPIP && !cfg->shared_buckets)
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
	svc = lb_inner_service(ctx, p);
	if (!svc)
		goto refused;
	if (svc->flags & LB_SERVICE_SHARED)
		mark = lb_outer_hop_mark(ctx, p);
	if (cfg->forward != LB_FORWARD_IPIP && !mark)
		goto refused;
	if (lb_decapsulate(ctx, p)) {
		lb_count(LB_C_PASS_MALFORMED, p->len);
		return XDP_PASS;
	}
	if (mark) {
		chain->sender = *slot;
		chain->mark = mark;
		return LB_STEERED_CHAIN;
	}
	lb_count(LB_C_PASS_DECAPSULATED, p->len);
	return XDP_PASS;
refused:
	lb_count(LB_C_PASS_TUNNEL_REFUSED, p->len);
	return XDP_PASS;
}

/* Pushes an outer header from this node to `peer` (same family) that
 * carries `hop_mark` (maps/shared.h: IPv4 id and DSCP, IPv6 flow label's
 * low 16 bits and DSCP; 0 but along a shared address's chain); the MACs are set afterwards,
 * for the next hop (lb_next_hop). 0, or -1 when the packet cannot be moved.
 * Global: its copy of the L2 header lives in a frame of its own, off the
 * stack of the deepest call chain (see lb_fib_scratch); the outer header
 * is written in place, not copied from the stack, for the same reason. */
LB_GLOBAL int lb_encapsulate(struct xdp_md *ctx, const struct lb_pkt *p, const struct lb_node *self,
			     const struct lb_node *peer, __u32 hop_mark)
{
	__u32 inner_len;
	__u8 inner;

	if (!p || !self || !peer)
		return -1;
	inner_len = p->len - p->l3_off;
	inner = p->key.family == LB_FAMILY_IPV4 ? IPPROTO_IPIP : IPPROTO_IPV6;

	if (self->family == LB_FAMILY_IPV4) {
		struct iphdr *ip = lb_push_gap(ctx, p, bpf_htons(ETH_P_IP), sizeof(*ip));

		if (!ip)
			return -1;
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = lb_hop_mark_dscp(hop_mark) << 2;
		ip->tot_len = bpf_htons(inner_len + sizeof(*ip));
		ip->id = bpf_htons(lb_hop_mark_low(hop_mark));
		ip->frag_off = bpf_htons(LB_IP_DF);
		ip->ttl = LB_TTL;
		ip->protocol = inner;
		ip->check = 0;
		ip->saddr = self->addr.v4;
		ip->daddr = peer->addr.v4;
		ip->check = lb_ipv4_csum(ip);
	} else {
		struct ipv6hdr *ip6 = lb_push_gap(ctx, p, bpf_htons(ETH_P_IPV6), sizeof(*ip6));

		if (!ip6)
			return -1;
		/* Version 6, the mark in the traffic class's DSCP and the flow
		 * label. */
		*(__be32 *)ip6 = bpf_htonl(6u << 28 | (__u32)lb_hop_mark_dscp(hop_mark) << 22 |
					   lb_hop_mark_low(hop_mark));
		ip6->payload_len = bpf_htons(inner_len);
		ip6->nexthdr = inner;
		ip6->hop_limit = LB_TTL;
		__builtin_memcpy(&ip6->saddr, self->addr.v6, 16);
		__builtin_memcpy(&ip6->daddr, peer->addr.v6, 16);
	}
	return 0;
}

/* How long a next hop from the routing table is reused, per CPU and per
 * node, before it is looked up again: a flow's packets do not each pay a
 * route and a neighbour lookup (~100-200 ns), and a changed route or
 * neighbour (a router's failover) reaches the forwarded flows within it. */
#define LB_NEXT_HOP_TTL_NS (50ull * 1000 * 1000)

/* Fills `hop` (MACs, interface, MTU) from the kernel's routing table for an
 * outer packet of `outer_len` bytes from this node (`self`) to `peer`.
 * 0, or -1 with *counter set to the drop's reason (see lb_next_hop).
 *
 * The lookup is the one the kernel makes for a packet this node sends
 * itself (input interface lo): the outer source is this node's address.
 * bpf_fib_lookup answers only when forwarding is enabled on that input
 * interface, so it needs net.ipv4.conf.lo.forwarding (IPv6:
 * net.ipv6.conf.lo.forwarding) = 1, which the agent sets in ipip mode;
 * nothing the node receives is routed by it. */
static __always_inline int lb_route(struct xdp_md *ctx, const struct lb_pkt *p,
				    const struct lb_node *self, const struct lb_node *peer,
				    __u32 outer_len, struct lb_next_hop *hop, __u32 *counter)
{
	struct bpf_fib_lookup *fib;
	__u32 zero = 0, on_link;
	long ret;

	fib = bpf_map_lookup_elem(&lb_fib_scratch, &zero);
	if (!fib) {
		*counter = LB_C_DROP_FORWARD_ERROR;
		return -1;
	}
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = LB_LOOPBACK_IFINDEX;
	fib->tot_len = outer_len;
	if (self->family == LB_FAMILY_IPV4) {
		fib->family = AF_INET;
		fib->ipv4_src = self->addr.v4;
		fib->ipv4_dst = peer->addr.v4;
	} else {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_src, self->addr.v6, 16);
		__builtin_memcpy(fib->ipv6_dst, peer->addr.v6, 16);
	}
	ret = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	hop->ifindex = fib->ifindex;
	switch (ret) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		__builtin_memcpy(hop->dmac, fib->dmac, ETH_ALEN);
		__builtin_memcpy(hop->smac, fib->smac, ETH_ALEN);
		hop->mtu = fib->mtu_result;
		hop->peer_mac = 0;
		return 0;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		/* The lookup left the next hop's address in ipv4_dst/ipv6_dst
		 * (a gateway's, or the peer's own when on-link). */
		if (self->family == LB_FAMILY_IPV4)
			on_link = fib->family == AF_INET && fib->ipv4_dst == peer->addr.v4;
		else
			on_link = fib->ipv6_dst[0] == peer->addr.v6[0] &&
				  fib->ipv6_dst[1] == peer->addr.v6[1] &&
				  fib->ipv6_dst[2] == peer->addr.v6[2] &&
				  fib->ipv6_dst[3] == peer->addr.v6[3];
		if (on_link && (fib->ifindex == ctx->ingress_ifindex || p->vlan_tags)) {
			__builtin_memcpy(hop->dmac, peer->mac, ETH_ALEN);
			__builtin_memcpy(hop->smac, self->mac, ETH_ALEN);
			hop->mtu = 0; /* not reported without a neighbour */
			hop->peer_mac = 1;
			return 0;
		}
		*counter = LB_C_DROP_FORWARD_NO_NEIGH;
		return -1;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		*counter = LB_C_DROP_FORWARD_FIB_DISABLED;
		return -1;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		*counter = LB_C_DROP_FORWARD_ERROR;
		return -1;
	default: /* the others, and helper errors (< 0) */
		*counter = LB_C_DROP_FORWARD_NO_ROUTE;
		return -1;
	}
}

/* Addresses an ipip frame to node `slot` (`peer`; from this node, `self`,
 * both of one family), already encapsulated, to its next hop from the
 * kernel's routing table (DESIGN.md section 2): across routers the outer
 * frame goes to the router the route names, not to the peer's own MAC.
 * Returns XDP_TX, XDP_REDIRECT when the route leaves by another interface
 * (bpf_redirect; on veth, that interface's other end must run an XDP
 * program, as for XDP_TX: DESIGN.md section 7), or XDP_DROP with the reason
 * counted here (p: the frame as it came in, for the bytes). The answer is
 * reused for LB_NEXT_HOP_TTL_NS; drops are not: each is looked up again.
 *
 * A next hop whose MAC is not resolved yet (BPF_FIB_LKUP_RET_NO_NEIGH; XDP
 * cannot resolve it, and passing the packet would make this node's kernel
 * answer, or reset, a connection that lives on the peer):
 * - when the next hop is the peer itself (on-link) on the interface the
 *   frame came in by, the frame goes to the peer's own MAC, from its
 *   heartbeats (lb_nodes), as before routes were looked up: peers on one
 *   segment that only ever multicast to each other have no neighbour
 *   entries; counted beside the send (ipip_peer_mac);
 * - otherwise (a router's MAC) it is dropped (drop_forward_no_neigh): the
 *   client retransmits, and the agent's unicast heartbeats to its peers
 *   (cluster.peers, how routed clusters are set up) keep the router's entry
 *   resolved.
 * Forwarding off on lo (see lb_route): drop_forward_fib_disabled, never
 * sent blind to the peer's MAC. No route, a blackhole, unreachable or
 * prohibited destination, or a route that needs an lwt encapsulation:
 * drop_forward_no_route. An outer packet larger than the route's MTU:
 * drop_forward_error, like one larger than the interface's.
 *
 * A VLAN-tagged frame leaves the way it came in, its tags kept (XDP_TX):
 * the route's interface is then a VLAN device on top of the one XDP runs
 * on, which a redirect cannot reach. The route to the peer must leave by the
 * frame's VLAN. */
LB_GLOBAL int lb_next_hop(struct xdp_md *ctx, const struct lb_pkt *p, const struct lb_node *self,
			  const struct lb_node *peer, __u32 slot)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 counter = LB_C_DROP_FORWARD_ERROR, outer_len, same_link;
	struct lb_next_hop *hop;
	struct ethhdr *eth = data;
	__u64 now;

	hop = bpf_map_lookup_elem(&lb_next_hops, &slot);
	if (!p || !self || !peer || !hop || (void *)(eth + 1) > data_end)
		goto drop;
	outer_len = p->len - p->l3_off +
		    (self->family == LB_FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr));
	now = bpf_ktime_get_coarse_ns(); /* a tick is precise enough */
	same_link = hop->ifindex == ctx->ingress_ifindex || p->vlan_tags;
	if (hop->family != peer->family || !lb_addr_eq(&hop->peer, &peer->addr, peer->family) ||
	    now - hop->checked_ns >= LB_NEXT_HOP_TTL_NS || (hop->peer_mac && !same_link)) {
		hop->family = 0; /* nothing cached until a lookup succeeds */
		if (lb_route(ctx, p, self, peer, outer_len, hop, &counter))
			goto drop;
		hop->peer = peer->addr;
		hop->family = peer->family;
		hop->checked_ns = now;
		same_link = hop->ifindex == ctx->ingress_ifindex || p->vlan_tags;
	} else if (hop->mtu && outer_len > hop->mtu) {
		goto drop; /* as the lookup's BPF_FIB_LKUP_RET_FRAG_NEEDED */
	}
	__builtin_memcpy(eth->h_dest, hop->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, hop->smac, ETH_ALEN);
	if (hop->peer_mac)
		lb_count(LB_C_IPIP_PEER_MAC, p->len);
	if (same_link)
		return XDP_TX;
	lb_count(LB_C_IPIP_REDIRECT, p->len);
	return bpf_redirect(hop->ifindex, 0);
drop:
	lb_count(counter, p ? p->len : 0);
	return XDP_DROP;
}

/* Sends the packet on to node `slot`: XDP_TX, or in ipip mode whatever the
 * route to the peer asks (lb_next_hop: XDP_TX, XDP_REDIRECT), the outer
 * header carrying `hop_mark` (0 but along a shared address's chain,
 * lb_encapsulate). When that is
 * impossible (slot emptied, families differ, packet too big to encapsulate,
 * no route or next hop) the packet is dropped and counted: passing it would
 * make the local kernel reset a connection that lives on the peer. */
LB_GLOBAL int lb_forward(struct xdp_md *ctx, const struct lb_pkt *p, __u32 slot, __u32 hop_mark)
{
	struct lb_node_counters *nc;
	struct lb_node *self, *peer;
	struct lb_config *cfg;
	__u32 zero = 0, self_slot;
	int ret = XDP_TX;

	if (!p)
		return XDP_DROP;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		goto error;
	self_slot = cfg->self_slot;
	peer = bpf_map_lookup_elem(&lb_nodes, &slot);
	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!peer || !self || peer->state == LB_NODE_EMPTY)
		goto error;

	/* A shared address's hop carries its mark in an outer header, in l2
	 * mode too (DESIGN.md 5b). */
	if (cfg->forward == LB_FORWARD_IPIP || hop_mark) {
		/* Too big once encapsulated: XDP cannot fragment. */
		if (p->len - p->l3_off +
			    (self->family == LB_FAMILY_IPV4 ? sizeof(struct iphdr)
							    : sizeof(struct ipv6hdr)) >
		    cfg->mtu)
			goto error;
		if (peer->family != self->family || lb_encapsulate(ctx, p, self, peer, hop_mark))
			goto error;
		ret = lb_next_hop(ctx, p, self, peer, slot);
		if (ret == XDP_DROP)
			return XDP_DROP; /* counted by its reason */
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
		nc->bytes_forwarded += p->len; /* as it came, p is not rewritten */
	}
	return ret;
error:
	lb_count(LB_C_DROP_FORWARD_ERROR, p->len);
	return XDP_DROP;
}

#endif
