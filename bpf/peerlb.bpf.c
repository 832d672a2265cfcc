// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* peerlb data plane, entry points (DESIGN.md section 2): the XDP program
 * that keeps each new TCP connection or hands it to a less-loaded peer, TC
 * egress that clamps the MSS of SYN-ACKs for the IPIP overhead, and TC
 * ingress that creates "http" connections from their cookies.
 *
 * Each entry point parses the frame once (parse.bpf.h) and dispatches; the
 * work is done by global functions that the verifier checks once each:
 *   lb_forward, lb_steered_tunnel  forward.bpf.h
 *   lb_handle_syn, lb_commit       decide.bpf.h (lb_decide_peers too)
 *   lb_syn_cookie_reply,
 *   lb_tc_cookie_ingress           syncookie.bpf.h
 *   lb_http_first_segment          http_route.bpf.h */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "decide.bpf.h"
#include "forward.bpf.h"
#include "http_route.bpf.h"
#include "maps.bpf.h"
#include "parse.bpf.h"
#include "syncookie.bpf.h"
#include "tcp_options.bpf.h"

static __always_inline int lb_has_local_socket(struct xdp_md *ctx, const struct lb_flow_key *key)
{
	struct bpf_sock_tuple tuple = {};
	__u32 size = lb_sock_tuple(key, &tuple);
	struct bpf_sock *sk;
	int local;

	sk = bpf_skc_lookup_tcp(ctx, &tuple, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	/* A listener matches any segment to the port: only a connection's own
	 * socket (established, time-wait, request) proves it is ours. */
	local = sk->state != LB_TCP_LISTEN;
	bpf_sk_release(sk);
	return local;
}

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

/* The node of the packet's flow entry (LB_NODE_LOCAL or a slot), looked up
 * established first, else half-open; 0 when it has none. A half-open entry
 * hit by anything but a SYN moves to the established table, out of reach
 * of SYN floods. A SYN follows an entry only while the entry's node is
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
			return 0;
		}
		*node = flow->node;
		return 1;
	}
	flow = bpf_map_lookup_elem(&lb_flows_new, &p->key);
	if (!flow)
		return 0;
	if (syn) {
		if (!lb_flow_node_usable(cfg, flow->node))
			return 0; /* the commit overwrites the entry */
		*node = flow->node;
		return 1;
	}
	*node = flow->node;
	bpf_map_update_elem(&lb_flows, &p->key, flow, BPF_ANY); /* copied before the delete */
	bpf_map_delete_elem(&lb_flows_new, &p->key);
	return 1;
}

static __always_inline int lb_in_grace(const struct lb_flow_key *key)
{
	struct lb_grace_key gk = { .family = key->family };
	__u64 *until;

	gk.addr = key->daddr;
	until = bpf_map_lookup_elem(&lb_grace, &gk);
	return until && bpf_ktime_get_ns() < *until;
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

/* A packet that is not a new connection and has no flow entry. Global: its
 * socket tuple stays off the entry point's stack. */
LB_GLOBAL int lb_no_flow(struct xdp_md *ctx, const struct lb_pkt *p)
{
	if (!p)
		return XDP_PASS;
	if (lb_has_local_socket(ctx, &p->key)) {
		lb_count(LB_C_PASS_LOCAL_SOCKET, p->len);
		return XDP_PASS;
	}
	/* No flow and no socket. Just after the address moved here, the flow
	 * is likely served by a peer whose announcement is on its way: drop,
	 * the client retransmits. Otherwise the kernel answers (RST). */
	if (lb_in_grace(&p->key)) {
		lb_count(LB_C_DROP_ORPHAN_GRACE, p->len);
		return XDP_DROP;
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
	int ret;

	switch (lb_parse_xdp(ctx, &p)) {
	case LB_PARSE_TCP:
		break;
	case LB_PARSE_ENCAP:
		return lb_steered_tunnel(ctx, &p);
	case LB_PARSE_NOT_IP:
		lb_count(LB_C_PASS_NOT_IP, p.len);
		return XDP_PASS;
	case LB_PARSE_NOT_TCP:
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
		lb_count(LB_C_PASS_STEERED_IN, p.len);
		return XDP_PASS;
	}

	if (lb_flow_node(cfg, &p, &node)) {
		if (node == LB_NODE_LOCAL) {
			lb_count(LB_C_PASS_FLOW_LOCAL, p.len);
			return XDP_PASS;
		}
		/* Counted as sent only when sent: a failed forward is counted
		 * as drop_forward_error alone. */
		ret = lb_forward(ctx, &p, node);
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
		return lb_handle_syn(ctx, &p);
	}
	return lb_no_flow(ctx, &p);
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
	struct lb_config *cfg;
	struct lb_node *self;
	struct lb_pkt p;

	if (lb_parse_skb(skb, &p) != LB_PARSE_TCP ||
	    (p.tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) != (LB_TCP_SYN | LB_TCP_ACK))
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

/* Ingress of every node: the first segment of an "http" connection that
 * this node serves becomes a connection from its cookie
 * (syncookie.bpf.h). Everything else passes untouched. */
SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	struct lb_service_key skey = {};
	struct lb_service *svc;
	struct lb_pkt p;

	if (lb_parse_skb(skb, &p) != LB_PARSE_TCP ||
	    (p.tcp_flags & (LB_TCP_SYN | LB_TCP_ACK | LB_TCP_RST)) != LB_TCP_ACK)
		return TC_ACT_OK;
	skey.addr = p.key.daddr;
	skey.port = p.key.dport;
	skey.family = p.key.family;
	svc = bpf_map_lookup_elem(&lb_services, &skey);
	if (!svc || svc->mode != LB_MODE_HTTP)
		return TC_ACT_OK;
	return lb_tc_cookie_ingress(skb, &p);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
