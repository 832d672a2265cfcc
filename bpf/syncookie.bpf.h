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
#include "maps.bpf.h"
#include "parse.bpf.h"
#include "tcp_options.bpf.h"

#define LB_SYNACK_WINDOW 65535 /* unscaled, as in any SYN-ACK */

/* The kernel's struct bpf_tcp_req_attrs (include/net/tcp.h, 6.9+); the
 * kfunc checks its size. */
struct bpf_tcp_req_attrs {
	__u32 rcv_tsval;
	__u32 rcv_tsecr;
	__u16 mss;
	__u8 rcv_wscale;
	__u8 snd_wscale;
	__u8 ecn_ok;
	__u8 wscale_ok;
	__u8 sack_ok;
	__u8 tstamp_ok;
	__u8 usec_ts_ok;
	__u8 reserved[3];
};

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

static __always_inline __u16 lb_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

struct lb_pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct lb_pseudo6 {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 len;
	__u8 zero[3];
	__u8 proto;
};

/* A SYN-ACK in place of the SYN: same L2 header (MACs swapped), a fresh IP
 * header without options / extension headers, the cookie as ISN; back out
 * of the interface it came in. XDP_PASS when no cookie key is installed
 * (the kernel answers it then, as in l4 mode). */
static __always_inline int lb_syn_cookie_reply(struct xdp_md *ctx, struct lb_packet *p,
					       const struct lb_config *cfg, __u64 bytes)
{
	__u32 slot = cfg->cookie_slot & (LB_COOKIE_SLOTS - 1), l2_len = p->l2_len;
	__u32 ip_len, tcp_len, old_len, new_len, client_isn, cookie, tsval;
	const __u8 family = p->key.family;
	struct lb_syn_options so = {};
	struct lb_cookie_key *key;
	__u8 opts[LB_SYNACK_OPTS_TS];
	struct lb_opt_walk w;
	struct tcphdr *tcp;
	struct ethhdr *eth;
	__u8 mac[ETH_ALEN];
	void *data, *data_end, *l3;
	__u64 sum;

	key = bpf_map_lookup_elem(&lb_cookie_keys, &slot);
	if (!key || !key->valid || lb_opt_walk(ctx, 0, p, &w)) {
		lb_count(LB_C_PASS_SYN_NO_COOKIE_KEY, bytes);
		return XDP_PASS;
	}
	so.mss = w.mss;
	so.wscale = w.wscale;
	so.sack_ok = w.sack_ok;
	so.ts_ok = w.ts_ok;
	client_isn = bpf_ntohl(p->tcp->seq);
	cookie = lb_cookie_make(key, &p->key, client_isn, lb_cookie_low_bits(slot, &so));
	/* Milliseconds, as Linux counts; the serving kernel learns the offset
	 * from the client's echo (bpf_tcp_req_attrs.rcv_tsecr). */
	tsval = (__u32)(bpf_ktime_get_ns() / 1000000);

	__builtin_memset(opts, TCPOPT_NOP, sizeof(opts));
	tcp_len = sizeof(struct tcphdr) +
		  lb_synack_options(opts, &w, lb_synack_mss(cfg, family), cfg->http_wscale, tsval);
	ip_len = family == LB_FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	if (l2_len > sizeof(struct ethhdr) + LB_MAX_VLAN_TAGS * sizeof(struct vlan_hdr_lb))
		return XDP_PASS;
	old_len = p->data_end - p->data;
	new_len = l2_len + ip_len + tcp_len;
	if (bpf_xdp_adjust_tail(ctx, (int)new_len - (int)old_len)) {
		lb_count(LB_C_PASS_SYN_NO_COOKIE_KEY, bytes);
		return XDP_PASS;
	}

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);

	l3 = data + l2_len;
	if (family == LB_FAMILY_IPV4) {
		struct iphdr *ip = l3;
		struct lb_pseudo4 ph;

		if ((void *)(ip + 1) + tcp_len > data_end || tcp_len > sizeof(struct tcphdr) + sizeof(opts))
			return XDP_DROP;
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

		if ((void *)(ip6 + 1) + tcp_len > data_end ||
		    tcp_len > sizeof(struct tcphdr) + sizeof(opts))
			return XDP_DROP;
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
	if ((void *)tcp + sizeof(struct tcphdr) + sizeof(opts) > data_end &&
	    (void *)tcp + sizeof(struct tcphdr) + LB_SYNACK_OPTS_NO_TS > data_end)
		return XDP_DROP;
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
			return XDP_DROP;
		__builtin_memcpy((void *)(tcp + 1), opts, LB_SYNACK_OPTS_TS);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)tcp, sizeof(struct tcphdr) + LB_SYNACK_OPTS_TS, sum);
	} else {
		if ((void *)tcp + sizeof(struct tcphdr) + LB_SYNACK_OPTS_NO_TS > data_end)
			return XDP_DROP;
		__builtin_memcpy((void *)(tcp + 1), opts, LB_SYNACK_OPTS_NO_TS);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)tcp, sizeof(struct tcphdr) + LB_SYNACK_OPTS_NO_TS,
				    sum);
	}
	tcp->check = lb_csum_fold(sum);
	lb_count(LB_C_TX_SYN_COOKIE, bytes);
	return XDP_TX;
}

/* The cookie of a segment completing the handshake (its ACK number less
 * one) if it is one this cluster made and has not expired; 0 otherwise
 * (*cookie set). */
static __always_inline int lb_cookie_of_segment(const struct lb_packet *p, __u32 *cookie)
{
	__u32 slot;
	struct lb_cookie_key *key;

	if (!p->tcp->ack || p->tcp->syn || p->tcp->rst)
		return 0;
	*cookie = bpf_ntohl(p->tcp->ack_seq) - 1;
	slot = lb_cookie_slot(*cookie);
	key = bpf_map_lookup_elem(&lb_cookie_keys, &slot);
	return key && key->valid &&
	       lb_cookie_valid(key, &p->key, bpf_ntohl(p->tcp->seq) - 1, *cookie);
}

/* TC ingress of the node chosen to serve an "http" connection: its first
 * segment (the client's handshake ACK was dropped by the receiving node)
 * finds only the listener; a valid cookie makes the kernel create the
 * connection from it, as from one of its own cookies. */
static __always_inline int lb_tc_cookie_ingress(struct __sk_buff *skb, struct lb_packet *p,
						const struct lb_config *cfg)
{
	struct bpf_tcp_req_attrs attrs = {};
	struct bpf_sock_tuple tuple = {};
	struct lb_syn_options so;
	struct lb_opt_walk w;
	struct bpf_sock *sk;
	__u32 cookie, size;
	int err;

	if (p->key.family == LB_FAMILY_IPV4) {
		tuple.ipv4.saddr = p->key.saddr.v4;
		tuple.ipv4.daddr = p->key.daddr.v4;
		tuple.ipv4.sport = p->key.sport;
		tuple.ipv4.dport = p->key.dport;
		size = sizeof(tuple.ipv4);
	} else {
		__builtin_memcpy(tuple.ipv6.saddr, p->key.saddr.v6, 16);
		__builtin_memcpy(tuple.ipv6.daddr, p->key.daddr.v6, 16);
		tuple.ipv6.sport = p->key.sport;
		tuple.ipv6.dport = p->key.dport;
		size = sizeof(tuple.ipv6);
	}
	sk = bpf_sk_lookup_tcp(skb, &tuple, size, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return TC_ACT_OK;
	if (sk->state != LB_TCP_LISTEN)
		goto out; /* the connection exists: an ordinary segment */
	if (!lb_cookie_of_segment(p, &cookie)) {
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
