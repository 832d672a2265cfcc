/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The packet side of cluster SYN cookies (DESIGN.md section 4): XDP answers
 * a SYN to an "http" service with a SYN-ACK whose ISN is a cookie
 * (bpf/cookie.h), checks the cookie when the connection's first segment
 * comes, and TC ingress on the node chosen to serve it turns that segment
 * into a connection of its own kernel (bpf_sk_assign_tcp_reqsk). */
#ifndef PEERLB_BPF_SYNCOOKIE_H
#define PEERLB_BPF_SYNCOOKIE_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "cookie.h"
#include "csum.bpf.h"
#include "forward.bpf.h" /* LB_TTL, LB_IP_DF */
#include "kernel_types.h" /* struct bpf_tcp_req_attrs, from the kernel's BTF */
#include "maps.bpf.h"
#include "parse.bpf.h"
#include "tcp_options.bpf.h"

#define LB_SYNACK_WINDOW 65535 /* unscaled, as in any SYN-ACK */

/* Stands for the kernel's struct sock in the prototype below: libbpf
 * matches kfunc arguments by kind (a pointer to a struct), not by name, and
 * a mere forward declaration (what struct bpf_sock becomes in this object's
 * BTF) is refused. The verifier checks the real argument: a socket from
 * bpf_sk_lookup_tcp(). */
struct lb_kernel_sock {
	__u32 opaque;
};

extern int bpf_sk_assign_tcp_reqsk(struct __sk_buff *skb, struct lb_kernel_sock *sk,
				   struct bpf_tcp_req_attrs *attrs, int attrs__sz) __ksym;

/* A key signs and validates while the agent says so and its lifetime has
 * not run out (DESIGN.md section 4: bounded even when no agent rotates it). */
static __always_inline int lb_cookie_key_live(const struct lb_cookie_key *key, __u64 now)
{
	return key->valid && now < key->expires_ns;
}

/* The MSS this node announces: what fits the interface, less the outer
 * header when peers get packets by ipip (XDP cannot fragment). */
static __always_inline __u16 lb_synack_mss(const struct lb_config *cfg, __u8 family)
{
	__u32 ip = family == LB_FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	__u32 mtu = cfg->mtu ? cfg->mtu : 1500;
	__u32 overhead = ip + sizeof(struct tcphdr);

	/* The outer header has the node's family; the larger one is assumed. */
	if (cfg->forward == LB_FORWARD_IPIP)
		overhead += sizeof(struct ipv6hdr);
	return mtu > overhead + 536 ? (__u16)(mtu - overhead) : 536;
}

/* SYN-ACK options, 4-byte aligned: with timestamps
 *   MSS(4) SACK_PERM(2)|NOP NOP  TS(10)  NOP WS(3)|NOP NOP NOP NOP  = 20
 * without
 *   MSS(4) NOP NOP SACK_PERM(2)|NOP x4  NOP WS(3)|NOP x4            = 12 */
#define LB_SYNACK_OPTS_TS 20
#define LB_SYNACK_OPTS_NO_TS 12

static __always_inline __u32 lb_synack_options(__u8 *o, const struct lb_opt_walk *w, __u16 mss,
					       __u32 wscale, __u32 tsval)
{
	__u32 n;

	o[0] = TCPOPT_MSS;
	o[1] = TCPOLEN_MSS;
	o[2] = mss >> 8;
	o[3] = mss & 0xff;
	if (w->ts_ok) {
		if (w->sack_ok) {
			o[4] = TCPOPT_SACK_PERM;
			o[5] = 2;
		} else {
			o[4] = TCPOPT_NOP;
			o[5] = TCPOPT_NOP;
		}
		o[6] = TCPOPT_TIMESTAMP;
		o[7] = TCPOLEN_TIMESTAMP;
		o[8] = tsval >> 24;
		o[9] = tsval >> 16;
		o[10] = tsval >> 8;
		o[11] = tsval;
		o[12] = w->tsval >> 24;
		o[13] = w->tsval >> 16;
		o[14] = w->tsval >> 8;
		o[15] = w->tsval;
		n = 16;
	} else {
		o[4] = TCPOPT_NOP;
		o[5] = TCPOPT_NOP;
		if (w->sack_ok) {
			o[6] = TCPOPT_SACK_PERM;
			o[7] = 2;
		} else {
			o[6] = TCPOPT_NOP;
			o[7] = TCPOPT_NOP;
		}
		n = 8;
	}
	if (w->wscale != LB_COOKIE_NO_WSCALE) {
		o[n] = TCPOPT_NOP;
		o[n + 1] = TCPOPT_WINDOW;
		o[n + 2] = 3;
		o[n + 3] = wscale;
	} else {
		o[n] = o[n + 1] = o[n + 2] = o[n + 3] = TCPOPT_NOP;
	}
	return n + 4;
}

/* The frame made `delta` bytes longer (or shorter) for the SYN-ACK: at its
 * tail, or, where the buffer has no tailroom (frames a veth builds from
 * sk_buffs), at its head, the L2 header moved there (the SYN-ACK rewrites
 * everything after it). 0 on success; the frame is unchanged otherwise. */
static __always_inline int lb_resize_for_synack(struct xdp_md *ctx, int delta)
{
	void *data, *data_end;
	__u8 *dst, *src;
	int i;

	if (!bpf_xdp_adjust_tail(ctx, delta))
		return 0;
	/* Only a SYN without options grows by more than a few bytes. */
	if (delta <= 0 || delta > 64 || bpf_xdp_adjust_head(ctx, -delta))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	dst = data;
	src = data + delta;
	if ((void *)(dst + LB_L2_MAX) > data_end || (void *)(src + LB_L2_MAX) > data_end)
		return -1; /* cannot be: the SYN had its headers */
	/* Forwards, byte by byte: the two may overlap. */
	for (i = 0; i < (int)LB_L2_MAX; i++)
		dst[i] = src[i];
	return 0;
}

/* A SYN-ACK in place of the SYN to an "http" service: same L2 header (MACs
 * swapped), a fresh IP header without options / extension headers, the
 * cookie as ISN; back out of the interface it came in. XDP_PASS (the kernel
 * answers, as in l4 mode) when no cookie key is installed, the options
 * cannot be read or the frame cannot be resized. */
LB_GLOBAL int lb_syn_cookie_reply(struct xdp_md *ctx, const struct lb_pkt *p)
{
	__u32 ip_len, tcp_len, new_len, client_isn, cookie, tsval, slot, l2_len;
	struct lb_syn_options so = {};
	struct lb_cookie_key *key;
	__u8 opts[LB_SYNACK_OPTS_TS];
	struct lb_config *cfg;
	struct lb_opt_walk w;
	struct tcphdr *tcp;
	struct ethhdr *eth;
	__u8 mac[ETH_ALEN];
	void *data, *data_end, *l3;
	__u32 zero = 0;
	__u64 sum, bytes, now;
	__u8 family;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg)
		return XDP_PASS;
	bytes = p->len;
	family = p->key.family;
	l2_len = p->l3_off;
	slot = cfg->cookie_slot & (LB_COOKIE_SLOTS - 1);
	now = bpf_ktime_get_ns();
	key = bpf_map_lookup_elem(&lb_cookie_keys, &slot);
	if (!key || !lb_cookie_key_live(key, now)) {
		lb_count(LB_C_PASS_SYN_NO_COOKIE_KEY, bytes);
		return XDP_PASS;
	}
	if (lb_opt_walk(ctx, 0, p, &w)) {
		lb_count(LB_C_PASS_SYN_BAD_OPTIONS, bytes);
		return XDP_PASS;
	}
	so.mss = w.mss;
	so.wscale = w.wscale;
	so.sack_ok = w.sack_ok;
	so.ts_ok = w.ts_ok;
	client_isn = bpf_ntohl(p->seq);
	cookie = lb_cookie_make(key, &p->key, client_isn, lb_cookie_low_bits(slot, &so));
	/* Milliseconds, as Linux counts; the serving kernel learns the offset
	 * from the client's echo (bpf_tcp_req_attrs.rcv_tsecr). */
	tsval = (__u32)(now / 1000000);

	__builtin_memset(opts, TCPOPT_NOP, sizeof(opts));
	tcp_len = sizeof(struct tcphdr) +
		  lb_synack_options(opts, &w, lb_synack_mss(cfg, family), cfg->http_wscale, tsval);
	ip_len = family == LB_FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	new_len = l2_len + ip_len + tcp_len;
	if (l2_len > LB_L2_MAX || lb_resize_for_synack(ctx, (int)new_len - (int)p->len)) {
		lb_count(LB_C_PASS_SYN_RESIZE_FAILED, bytes);
		return XDP_PASS;
	}

	/* From here the frame is half rewritten: what cannot be written is
	 * dropped (the client retransmits its SYN). */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		goto error;
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);

	l3 = data + l2_len;
	if (tcp_len > sizeof(struct tcphdr) + sizeof(opts))
		goto error;
	if (family == LB_FAMILY_IPV4) {
		struct iphdr *ip = l3;
		struct lb_pseudo4 ph;

		if ((void *)(ip + 1) > data_end)
			goto error;
		*ip = (struct iphdr){
			.version = 4,
			.ihl = 5,
			.tot_len = bpf_htons(ip_len + tcp_len),
			.frag_off = bpf_htons(LB_IP_DF),
			.ttl = LB_TTL,
			.protocol = IPPROTO_TCP,
			.saddr = p->key.daddr.v4,
			.daddr = p->key.saddr.v4,
		};
		ip->check = lb_ipv4_csum(ip);
		tcp = (void *)(ip + 1);
		ph = (struct lb_pseudo4){ .saddr = p->key.daddr.v4, .daddr = p->key.saddr.v4,
					  .proto = IPPROTO_TCP, .len = bpf_htons(tcp_len) };
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
	} else {
		struct ipv6hdr *ip6 = l3;
		struct lb_pseudo6 ph = {};

		if ((void *)(ip6 + 1) > data_end)
			goto error;
		*ip6 = (struct ipv6hdr){
			.version = 6,
			.payload_len = bpf_htons(tcp_len),
			.nexthdr = IPPROTO_TCP,
			.hop_limit = LB_TTL,
		};
		__builtin_memcpy(&ip6->saddr, p->key.daddr.v6, 16);
		__builtin_memcpy(&ip6->daddr, p->key.saddr.v6, 16);
		tcp = (void *)(ip6 + 1);
		__builtin_memcpy(ph.saddr, p->key.daddr.v6, 16);
		__builtin_memcpy(ph.daddr, p->key.saddr.v6, 16);
		ph.len = bpf_htonl(tcp_len);
		ph.proto = IPPROTO_TCP;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
	}
	if ((void *)tcp + sizeof(struct tcphdr) + LB_SYNACK_OPTS_NO_TS > data_end)
		goto error;
	*tcp = (struct tcphdr){
		.source = p->key.dport,
		.dest = p->key.sport,
		.seq = bpf_htonl(cookie),
		.ack_seq = bpf_htonl(client_isn + 1),
		.doff = tcp_len / 4,
		.syn = 1,
		.ack = 1,
		.window = bpf_htons(LB_SYNACK_WINDOW),
	};
	if (tcp_len == sizeof(struct tcphdr) + LB_SYNACK_OPTS_TS) {
		if ((void *)tcp + sizeof(struct tcphdr) + LB_SYNACK_OPTS_TS > data_end)
			goto error;
		__builtin_memcpy((void *)(tcp + 1), opts, LB_SYNACK_OPTS_TS);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)tcp, sizeof(struct tcphdr) + LB_SYNACK_OPTS_TS, sum);
	} else {
		__builtin_memcpy((void *)(tcp + 1), opts, LB_SYNACK_OPTS_NO_TS);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)tcp, sizeof(struct tcphdr) + LB_SYNACK_OPTS_NO_TS,
				    sum);
	}
	tcp->check = lb_csum_fold(sum);
	lb_count(LB_C_TX_SYN_COOKIE, bytes);
	return XDP_TX;
error:
	lb_count(LB_C_DROP_SYN_COOKIE_ERROR, bytes);
	return XDP_DROP;
}

/* The cookie of a segment completing the handshake (its ACK number less
 * one) if it is one this cluster made and its key still lives at `now`; 0
 * otherwise (*cookie set). */
static __always_inline int lb_cookie_of_segment(const struct lb_pkt *p, __u64 now, __u32 *cookie)
{
	struct lb_cookie_key *key;
	__u32 slot;

	if ((p->tcp_flags & (LB_TCP_ACK | LB_TCP_SYN | LB_TCP_RST)) != LB_TCP_ACK)
		return 0;
	*cookie = bpf_ntohl(p->ack_seq) - 1;
	slot = lb_cookie_slot(*cookie);
	key = bpf_map_lookup_elem(&lb_cookie_keys, &slot);
	return key && lb_cookie_key_live(key, now) &&
	       lb_cookie_valid(key, &p->key, bpf_ntohl(p->seq) - 1, *cookie);
}

/* TC ingress of the node chosen to serve an "http" connection: its first
 * segment (the client's handshake ACK was dropped by the receiving node)
 * finds only the listener; a valid cookie makes the kernel create the
 * connection from it, as from one of its own cookies. TC_ACT_OK always. */
LB_GLOBAL int lb_tc_cookie_ingress(struct __sk_buff *skb, const struct lb_pkt *p)
{
	struct bpf_tcp_req_attrs attrs = {};
	struct bpf_sock_tuple tuple = {};
	struct lb_syn_options so;
	struct lb_config *cfg;
	struct lb_opt_walk w;
	struct bpf_sock *sk;
	__u32 cookie, size, zero = 0;
	int err;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg)
		return TC_ACT_OK;
	size = lb_sock_tuple(&p->key, &tuple);
	sk = bpf_sk_lookup_tcp(skb, &tuple, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return TC_ACT_OK;
	if (sk->state != LB_TCP_LISTEN)
		goto out; /* the connection exists: an ordinary segment */
	if (!lb_cookie_of_segment(p, bpf_ktime_get_ns(), &cookie)) {
		/* Forged, expired, or no cookie at all: the kernel resets it. */
		lb_count(LB_C_TC_COOKIE_INVALID, skb->len);
		goto out;
	}
	lb_cookie_options(cookie, &so);
	if (lb_opt_walk(skb, 1, p, &w) || (so.ts_ok && !w.ts_ok)) {
		lb_count(LB_C_TC_COOKIE_INVALID, skb->len);
		goto out;
	}
	attrs.mss = so.mss;
	attrs.sack_ok = so.sack_ok;
	attrs.tstamp_ok = so.ts_ok;
	if (so.ts_ok) {
		attrs.rcv_tsval = w.tsval;
		attrs.rcv_tsecr = w.tsecr;
	}
	if (so.wscale != LB_COOKIE_NO_WSCALE) {
		attrs.wscale_ok = 1;
		attrs.snd_wscale = so.wscale;
		attrs.rcv_wscale = cfg->http_wscale;
	}
	err = bpf_sk_assign_tcp_reqsk(skb, (struct lb_kernel_sock *)sk, &attrs, sizeof(attrs));
	lb_count(err ? LB_C_TC_COOKIE_ASSIGN_FAILED : LB_C_TC_COOKIE_ASSIGNED, skb->len);
out:
	bpf_sk_release(sk);
	return TC_ACT_OK;
}

#endif
