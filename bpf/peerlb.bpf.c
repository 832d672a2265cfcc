// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* peerlb data plane, entry points (DESIGN.md section 2): the XDP program
 * that keeps each new TCP connection or hands it to a less-loaded peer, TC
 * egress that clamps the MSS of SYN-ACKs for the IPIP overhead, and TC
 * ingress that creates "http" connections from their cookies, and the socket
 * state tracepoint that counts the connections open on the services
 * (inflight.bpf.h).
 *
 * Each entry point parses the frame once (parse.bpf.h) and dispatches; the
 * work is done by global functions that the verifier checks once each:
 *   lb_forward, lb_steered_tunnel  forward.bpf.h
 *   lb_shared_packet,
 *   lb_shared_chain                shared.bpf.h
 *   lb_handle_syn, lb_commit       decide.bpf.h (lb_decide_peers too)
 *   lb_l4_cookie_ack               syn_flood.bpf.h
 *   lb_syn_cookie_reply,
 *   lb_tc_cookie_ingress           syncookie.bpf.h
 *   lb_http_first_segment          http_route.bpf.h */
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "decide.bpf.h"
#include "forward.bpf.h"
#include "http_route.bpf.h"
#include "inflight.bpf.h"
#include "maps.bpf.h"
#include "parse.bpf.h"
#include "shared.bpf.h"
#include "syn_flood.bpf.h"
#include "syncookie.bpf.h"
#include "tcp_options.bpf.h"

/* Whether a flow entry's node can still take a new connection: always this
 * node, a peer while alive and fresh. */
static __always_inline int lb_flow_node_usable(const struct lb_config *cfg, __u32 node)
{
	struct lb_node *n;

	if (node == LB_NODE_LOCAL)
		return 1;
	n = bpf_map_lookup_elem(&lb_nodes, &node);
	return n && lb_node_usable(n->state, n->updated_ns, bpf_ktime_get_ns(), cfg->peer_stale_ns);
}

/* What lb_flow_node found. */
enum lb_flow_hit {
	LB_FLOW_NONE = 0,
	LB_FLOW_HIT = 1,
	LB_FLOW_HALF_OPEN_ACK = 2, /* a half-open entry hit by its handshake ACK */
};

/* The node of the packet's flow entry (LB_NODE_LOCAL or a slot), looked up
 * established first, else half-open; LB_FLOW_NONE when it has none. A
 * half-open entry hit by the handshake's ACK (anything but a SYN or a RST)
 * is for the caller to move to the established table (lb_promote), out of
 * reach of SYN floods; a RST follows it without moving it. A SYN follows an entry only while the entry's node is
 * usable (a retransmission, or a reused tuple the node's kernel sorts out);
 * otherwise it is a new connection, decided anew (DESIGN.md section 2), and
 * a reused tuple's established entry is dropped so the new one is found. */
static __always_inline int lb_flow_node(const struct lb_config *cfg, const struct lb_pkt *p,
					__u32 *node)
{
	struct lb_flow *flow = bpf_map_lookup_elem(&lb_flows, &p->key);
	int syn = lb_is_syn(p);

	if (flow) {
		if (syn && !lb_flow_node_usable(cfg, flow->node)) {
			bpf_map_delete_elem(&lb_flows, &p->key);
			return LB_FLOW_NONE;
		}
		*node = flow->node;
		return LB_FLOW_HIT;
	}
	flow = bpf_map_lookup_elem(&lb_flows_new, &p->key);
	if (!flow)
		return LB_FLOW_NONE;
	if (syn) {
		if (!lb_flow_node_usable(cfg, flow->node))
			return LB_FLOW_NONE; /* the commit overwrites the entry */
		*node = flow->node;
		return LB_FLOW_HIT;
	}
	*node = flow->node;
	return p->tcp_flags & LB_TCP_RST ? LB_FLOW_HIT : LB_FLOW_HALF_OPEN_ACK;
}

/* The half-open entry of the packet's flow moves to the established table. */
static __always_inline void lb_promote(const struct lb_pkt *p)
{
	struct lb_flow *flow = bpf_map_lookup_elem(&lb_flows_new, &p->key);

	if (!flow)
		return;
	bpf_map_update_elem(&lb_flows, &p->key, flow, BPF_ANY); /* copied before the delete */
	bpf_map_delete_elem(&lb_flows_new, &p->key);
}

/* The grace entry of the packet's service address while it lasts. */
static __always_inline const struct lb_grace *lb_in_grace(const struct lb_flow_key *key)
{
	struct lb_grace_key gk = { .family = key->family };
	struct lb_grace *g;

	gk.addr = key->daddr;
	g = bpf_map_lookup_elem(&lb_grace, &gk);
	return g && bpf_ktime_get_ns() < g->until_ns ? g : NULL;
}

/* Whether this node is fenced (DESIGN.md section 5): its own information
 * is older than fence_after_ns, so its agent has been gone as long as its
 * peers take to call it dead, and one of them holds its addresses. */
static __always_inline int lb_fenced(const struct lb_config *cfg)
{
	__u32 self_slot = cfg->self_slot;
	struct lb_node *self;

	if (!cfg->fence_after_ns)
		return 0;
	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	return self && self->updated_ns &&
	       bpf_ktime_get_ns() - self->updated_ns > cfg->fence_after_ns;
}

/* A fenced node stops answering who has its service addresses: only the
 * peer that took them over does. ARP requests and neighbour solicitations
 * for any target but the node's own address (and IPv6 link-local ones) are
 * dropped. Returns 1 to drop. Global: read for non-TCP frames only. */
LB_GLOBAL int lb_fence_neighbour(struct xdp_md *ctx, const struct lb_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_config *cfg;
	struct lb_node *self;
	__u32 zero = 0, self_slot, off, target[4];
	__u8 *l3;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg || !lb_fenced(cfg))
		return 0;
	self_slot = cfg->self_slot;
	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!self)
		return 0;
	off = p->l3_off;
	if (off > LB_L2_MAX || off < sizeof(struct ethhdr))
		return 0;
	l3 = data + off;
	if (p->key.family == 0) {
		__be16 *ethertype = data + (off - 2); /* the last tag's, if any */

		/* ARP for IPv4 over Ethernet: op at 6, target address at 24. */
		if ((void *)(ethertype + 1) > data_end || *ethertype != bpf_htons(ETH_P_ARP))
			return 0;
		if ((void *)(l3 + 28) > data_end)
			return 0;
		if (l3[0] != 0 || l3[1] != 1 || l3[2] != 0x08 || l3[3] != 0 || l3[4] != ETH_ALEN ||
		    l3[5] != 4 || l3[6] != 0 || l3[7] != 1)
			return 0;
		__builtin_memcpy(target, l3 + 24, 4);
		return !(self->family == LB_FAMILY_IPV4 && target[0] == self->addr.v4);
	}
	if (p->key.family != LB_FAMILY_IPV6)
		return 0;
	/* A neighbour solicitation (ICMPv6 135) right after the IPv6 header. */
	if ((void *)(l3 + 40 + 24) > data_end)
		return 0;
	if (l3[6] != IPPROTO_ICMPV6 || l3[40] != 135)
		return 0;
	if (l3[48] == 0xfe && (l3[49] & 0xc0) == 0x80)
		return 0; /* link-local target */
	__builtin_memcpy(target, l3 + 48, 16);
	return !(self->family == LB_FAMILY_IPV6 && target[0] == self->addr.v6[0] &&
		 target[1] == self->addr.v6[1] && target[2] == self->addr.v6[2] &&
		 target[3] == self->addr.v6[3]);
}

/* A packet a peer steered here: dropped rather than passed when this node
 * is fenced, it continues a connection (not a SYN) and no local socket has
 * it: a fenced node gets the unknown segments of its taken-over addresses
 * (lb_orphan), and its kernel would reset those of other nodes' connections.
 * Returns 1 to drop. */
LB_GLOBAL int lb_fenced_steered_orphan(struct xdp_md *ctx, const struct lb_pkt *p)
{
	struct lb_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg || lb_is_syn(p) || !lb_fenced(cfg) || lb_has_local_socket(ctx, &p->key))
		return 0;
	lb_count(LB_C_DROP_FENCED_ORPHAN, p->len);
	return 1;
}

/* The same for a tunnel packet just unwrapped: the inner packet is parsed
 * only when the node is fenced. */
LB_GLOBAL int lb_fenced_tunnel_orphan(struct xdp_md *ctx)
{
	struct lb_config *cfg;
	struct lb_pkt inner;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg || !lb_fenced(cfg) || lb_parse_xdp(ctx, &inner) != LB_PARSE_TCP)
		return 0;
	return lb_fenced_steered_orphan(ctx, &inner);
}

/* In l2 mode a peer's forwarded frame carries the peer's MAC as source. */
static __always_inline int lb_steered_by_mac(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct lb_node_mac_key key = {};

	if ((void *)(eth + 1) > data_end)
		return 0;
	__builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);
	return bpf_map_lookup_elem(&lb_node_macs, &key) != NULL;
}

/* A packet that is not a new connection and has no flow entry: 1 (counted)
 * when a local socket has it. Global: its socket tuple stays off the entry
 * point's stack. */
LB_GLOBAL int lb_local_connection(struct xdp_md *ctx, const struct lb_pkt *p)
{
	if (!p || !lb_has_local_socket(ctx, &p->key))
		return 0;
	lb_count(LB_C_PASS_LOCAL_SOCKET, p->len);
	return 1;
}

/* A packet with no flow entry, no local socket and no cookie of ours. */
static __always_inline int lb_orphan(struct xdp_md *ctx, const struct lb_pkt *p)
{
	const struct lb_grace *g;
	int ret;

	/* No flow and no socket. Just after the address moved here, the flow
	 * is likely served by a peer whose announcement is on its way: drop,
	 * the client retransmits; or, when the address was taken from a node
	 * whose agent is gone, send it there: its connections may live on.
	 * Otherwise the kernel answers (RST). */
	g = lb_in_grace(&p->key);
	if (g) {
		struct lb_flow flow = {
			.node = g->previous,
			.reason = LB_REASON_HANDOVER,
			.created_ns = bpf_ktime_get_ns(),
		};

		if (g->previous == LB_NODE_LOCAL) {
			lb_count(LB_C_DROP_ORPHAN_GRACE, p->len);
			return XDP_DROP;
		}
		/* Recorded, so the connection keeps going there after the grace
		 * period; a peer's announcement of it overwrites the entry. */
		bpf_map_update_elem(&lb_flows, &p->key, &flow, BPF_ANY);
		ret = lb_forward(ctx, p, g->previous, 0);
		if (ret == XDP_TX)
			lb_count(LB_C_TX_GRACE_PREVIOUS, p->len);
		return ret;
	}
	lb_count(LB_C_PASS_ORPHAN, p->len);
	return XDP_PASS;
}

SEC("xdp")
int xdp_peerlb(struct xdp_md *ctx)
{
	struct lb_service_key skey = {};
	struct lb_service *svc;
	struct lb_config *cfg;
	struct lb_pkt p;
	__u32 zero = 0, node;
	__u64 now;
	int ret;

	switch (lb_parse_xdp(ctx, &p)) {
	case LB_PARSE_TCP:
		break;
	case LB_PARSE_ENCAP: {
		struct lb_chain_in chain = {};

		ret = lb_steered_tunnel(ctx, &p, &chain);
		if (ret == LB_STEERED_CHAIN)
			return lb_shared_chain(ctx, chain.sender, chain.mark);
		if (ret == XDP_PASS && lb_fenced_tunnel_orphan(ctx))
			return XDP_DROP;
		return ret;
	}
	case LB_PARSE_NOT_IP:
		if (lb_fence_neighbour(ctx, &p)) {
			lb_count(LB_C_DROP_FENCED_NEIGH, p.len);
			return XDP_DROP;
		}
		lb_count(LB_C_PASS_NOT_IP, p.len);
		return XDP_PASS;
	case LB_PARSE_NOT_TCP:
		if (lb_fence_neighbour(ctx, &p)) {
			lb_count(LB_C_DROP_FENCED_NEIGH, p.len);
			return XDP_DROP;
		}
		lb_count(LB_C_PASS_NOT_TCP, p.len);
		return XDP_PASS;
	case LB_PARSE_FRAGMENT:
		lb_count(LB_C_PASS_FRAGMENT, p.len);
		return XDP_PASS;
	default:
		lb_count(LB_C_PASS_MALFORMED, p.len);
		return XDP_PASS;
	}

	skey.addr = p.key.daddr;
	skey.port = p.key.dport;
	skey.family = p.key.family;
	svc = bpf_map_lookup_elem(&lb_services, &skey);
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!svc || !cfg) {
		lb_count(LB_C_PASS_NOT_SERVICE, p.len);
		return XDP_PASS;
	}
	if (cfg->forward == LB_FORWARD_L2 && lb_steered_by_mac(ctx)) {
		if (lb_fenced_steered_orphan(ctx, &p))
			return XDP_DROP;
		lb_count(LB_C_PASS_STEERED_IN, p.len);
		return XDP_PASS;
	}
	/* Before the flow tables: buckets decide, never the load. */
	if (svc->flags & LB_SERVICE_SHARED)
		return lb_shared_packet(ctx, &p);

	ret = lb_flow_node(cfg, &p, &node);
	if (ret == LB_FLOW_HALF_OPEN_ACK) {
		/* The client may have completed its handshake with a cookie
		 * SYN-ACK (its first SYN came during a flood, a retransmission
		 * after it was decided at once): then the cookie decides, the
		 * entry's node never saw that handshake. */
		if (svc->mode != LB_MODE_HTTP && lb_syn_cookies_lately(cfg, bpf_ktime_get_ns())) {
			ret = lb_l4_cookie_ack(ctx, &p);
			if (ret >= 0) {
				lb_flow_closing(cfg, &p, node);
				bpf_map_delete_elem(&lb_flows_new, &p.key);
				return ret;
			}
		}
		lb_promote(&p);
		ret = LB_FLOW_HIT;
	}
	if (ret == LB_FLOW_HIT) {
		if (p.tcp_flags & (LB_TCP_FIN | LB_TCP_RST))
			lb_flow_closing(cfg, &p, node);
		if (node == LB_NODE_LOCAL) {
			lb_count(LB_C_PASS_FLOW_LOCAL, p.len);
			return XDP_PASS;
		}
		/* Counted as sent only when sent: a failed forward is counted
		 * as drop_forward_error alone. */
		ret = lb_forward(ctx, &p, node, 0);
		if (ret == XDP_TX || ret == XDP_REDIRECT)
			lb_count(LB_C_TX_FLOW_FORWARD, p.len);
		return ret;
	}

	if (svc->mode == LB_MODE_HTTP) {
		if (lb_is_syn(&p))
			return lb_syn_cookie_reply(ctx, &p);
		ret = lb_http_first_segment(ctx, &p);
		if (ret >= 0)
			return ret;
	} else if (lb_is_syn(&p)) {
		now = bpf_ktime_get_ns();
		if (!lb_syn_cookies_now(cfg, now))
			return lb_handle_syn(ctx, &p, now);
		lb_count(LB_C_SYN_COOKIE_L4, p.len);
		return lb_syn_cookie_reply(ctx, &p);
	}
	if (lb_local_connection(ctx, &p))
		return XDP_PASS;
	/* A cookie ACK has no socket yet (only the listener): after that. */
	if (svc->mode != LB_MODE_HTTP) {
		ret = lb_l4_cookie_ack(ctx, &p);
		if (ret >= 0)
			return ret;
	}
	return lb_orphan(ctx, &p);
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
	struct lb_service_key skey = {};
	__u32 zero = 0, self_slot, limit, tcp_off;
	__u16 old_mss, new_mss, csum_old, csum_new;
	struct lb_opt_walk w;
	struct lb_service *svc;
	struct lb_config *cfg;
	struct lb_node *self;
	struct lb_pkt p;

	if (lb_parse_skb(skb, &p) != LB_PARSE_TCP ||
	    (p.tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) != (LB_TCP_SYN | LB_TCP_ACK))
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return TC_ACT_OK;
	skey.addr = p.key.saddr;
	skey.port = p.key.sport;
	skey.family = p.key.family;
	svc = bpf_map_lookup_elem(&lb_services, &skey);
	/* A shared address's segments may cross an outer header in l2 mode too. */
	if (!svc || (cfg->forward != LB_FORWARD_IPIP && !(svc->flags & LB_SERVICE_SHARED)))
		return TC_ACT_OK;
	self_slot = cfg->self_slot;
	self = bpf_map_lookup_elem(&lb_nodes, &self_slot);
	if (!self)
		return TC_ACT_OK;

	limit = cfg->mtu - sizeof(struct tcphdr) -
		(p.key.family == LB_FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr)) -
		(self->family == LB_FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr));

	tcp_off = p.l4_off;
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

/* Ingress of every node: the first segment of a connection that this node
 * serves and that began with a cluster cookie (every "http" connection; l4
 * ones during a SYN flood) becomes a connection from its cookie
 * (syncookie.bpf.h). Everything else passes untouched. */
SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	struct lb_service_key skey = {};
	struct lb_service *svc;
	struct lb_config *cfg;
	struct lb_pkt p;
	__u32 zero = 0, cookie;

	if (lb_parse_skb(skb, &p) != LB_PARSE_TCP)
		return TC_ACT_OK;
	skey.addr = p.key.daddr;
	skey.port = p.key.dport;
	skey.family = p.key.family;
	/* A flooded frame of a shared address that XDP kept came to a
	 * multicast MAC: the kernel's TCP takes only frames to the host, and
	 * XDP's change of the MAC does not reach the skb on every driver (veth
	 * sets the packet type before XDP runs). */
	if (skb->pkt_type != PACKET_HOST) {
		svc = bpf_map_lookup_elem(&lb_services, &skey);
		if (svc && (svc->flags & LB_SERVICE_SHARED))
			bpf_skb_change_type(skb, PACKET_HOST);
	}
	if ((p.tcp_flags & (LB_TCP_SYN | LB_TCP_ACK | LB_TCP_RST)) != LB_TCP_ACK)
		return TC_ACT_OK;
	svc = bpf_map_lookup_elem(&lb_services, &skey);
	if (!svc)
		return TC_ACT_OK;
	if (svc->mode != LB_MODE_HTTP) {
		/* In l4 mode a cookie is rare: its hash, cheaper than the
		 * socket lookup, sorts the segments out first. */
		cfg = bpf_map_lookup_elem(&lb_config, &zero);
		if (!cfg || cfg->syn_cookies == LB_SYN_COOKIES_OFF ||
		    !lb_cookie_of_segment(&p, bpf_ktime_get_ns(), &cookie))
			return TC_ACT_OK;
	}
	return lb_tc_cookie_ingress(skb, &p);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
