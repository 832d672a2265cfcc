/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Header-cursor parsing of Ethernet (+VLAN), IPv4/IPv6, TCP, shared by the
 * XDP and TC programs. Every access is bounds-checked against data_end.
 *
 * The result is a normalised layout (struct lb_pkt): offsets from the start
 * of the frame and the flow key, no pointers. The parse runs in a global
 * function (lb_parse_xdp / lb_parse_skb), which the verifier checks once;
 * its caller sees only scalars of unknown value, so the VLAN x family x
 * extension-header variants end inside the parse instead of multiplying
 * through the decision, the forwarding and the http paths. */
#ifndef PEERLB_BPF_PARSE_H
#define PEERLB_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../maps/flow.h"

/* Keeps clang from merging or reordering bounds checks on var, which can
 * leave the verifier unable to prove an access (e.g. a length checked
 * against 0 and against its maximum turned into one "len - 1 > max"). */
#define lb_barrier_var(var) asm volatile("" : "+r"(var))

/* Functions the verifier checks once, whatever calls them (DESIGN.md
 * section 2, verifier budget): non-static and never inlined. Their pointer
 * arguments may be NULL as far as the verifier knows, so each checks. */
#define LB_GLOBAL __attribute__((noinline))

#define LB_MAX_VLAN_TAGS 2
#define LB_MAX_IPV6_EXT_HDRS 4
/* Largest offset of a TCP header parse accepts: Ethernet, two tags, an IPv6
 * header and four extension headers of at most 2 KiB each. Offsets are
 * checked against it so the verifier can bound packet arithmetic. */
#define LB_MAX_L4_OFF 0x2400

#define LB_IP_MF 0x2000
#define LB_IP_OFFSET 0x1fff

#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif

/* TCP flag bits of lb_pkt.tcp_flags (byte 13 of the header). */
#define LB_TCP_FIN 0x01
#define LB_TCP_SYN 0x02
#define LB_TCP_RST 0x04
#define LB_TCP_ACK 0x10

enum lb_parse_result {
	LB_PARSE_TCP,       /* a TCP segment: l4_off and key are set */
	LB_PARSE_ENCAP,     /* IPIP / IPv6-in-IP: outer header at l3_off, inner
			     * at l4_off; key holds the outer addresses */
	LB_PARSE_NOT_IP,
	LB_PARSE_NOT_TCP,
	LB_PARSE_FRAGMENT,
	LB_PARSE_MALFORMED, /* truncated or inconsistent headers */
};

struct vlan_hdr_lb {
	__be16 tci;
	__be16 proto;
};

/* A parsed frame. Offsets count from the start of the frame. */
struct lb_pkt {
	struct lb_flow_key key;
	__u32 len;         /* frame bytes */
	__u16 l3_off;      /* IP header: Ethernet and VLAN tags before it */
	__u16 l4_off;      /* TCP header (ENCAP: the inner IP header) */
	__u16 payload_off; /* TCP payload, after the options */
	__u16 payload_len; /* TCP payload bytes, from the IP length */
	__u8 tcp_flags;    /* LB_TCP_* */
	__u8 inner_proto;  /* with LB_PARSE_ENCAP: IPPROTO_IPIP or IPPROTO_IPV6 */
	__u8 vlan_tags;    /* 0 .. LB_MAX_VLAN_TAGS */
	__u8 pad;
	__be32 seq;
	__be32 ack_seq;
};

static __always_inline int lb_is_syn(const struct lb_pkt *p)
{
	return (p->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_SYN;
}

static __always_inline int lb_parse_ipv4(void *l3, void *data_end, struct lb_pkt *p,
					 __u32 *hlen, __u32 *l3_total)
{
	struct iphdr *ip = l3;

	if ((void *)(ip + 1) > data_end)
		return LB_PARSE_MALFORMED;
	*hlen = ip->ihl * 4;
	if (ip->version != 4 || *hlen < sizeof(*ip))
		return LB_PARSE_MALFORMED;
	if (l3 + *hlen > data_end)
		return LB_PARSE_MALFORMED;
	if (ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET))
		return LB_PARSE_FRAGMENT;
	p->key.family = LB_FAMILY_IPV4;
	p->key.saddr.v4 = ip->saddr;
	p->key.daddr.v4 = ip->daddr;
	*l3_total = bpf_ntohs(ip->tot_len);
	if (ip->protocol == IPPROTO_IPIP || ip->protocol == IPPROTO_IPV6) {
		p->inner_proto = ip->protocol;
		return LB_PARSE_ENCAP;
	}
	if (ip->protocol != IPPROTO_TCP)
		return LB_PARSE_NOT_TCP;
	return LB_PARSE_TCP;
}

/* Walks at most LB_MAX_IPV6_EXT_HDRS extension headers; a longer chain is
 * treated as not TCP (passed to the kernel untouched). */
static __always_inline int lb_parse_ipv6(void *l3, void *data_end, struct lb_pkt *p,
					 __u32 *hlen, __u32 *l3_total)
{
	struct ipv6hdr *ip6 = l3;
	__u32 off = sizeof(*ip6); /* an integer, not a pointer difference: the
				   * verifier cannot bound the latter */
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return LB_PARSE_MALFORMED;
	if (ip6->version != 6)
		return LB_PARSE_MALFORMED;
	__builtin_memcpy(p->key.saddr.v6, &ip6->saddr, 16);
	__builtin_memcpy(p->key.daddr.v6, &ip6->daddr, 16);
	p->key.family = LB_FAMILY_IPV6;
	*l3_total = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	next = ip6->nexthdr;

	if (next == IPPROTO_IPIP || next == IPPROTO_IPV6) {
		*hlen = sizeof(*ip6);
		p->inner_proto = next;
		return LB_PARSE_ENCAP;
	}

	for (i = 0; i < LB_MAX_IPV6_EXT_HDRS; i++) {
		struct ipv6_opt_hdr *ext = l3 + off;

		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
		    next != IPPROTO_DSTOPTS && next != IPPROTO_AH)
			break;
		if ((void *)(ext + 1) > data_end)
			return LB_PARSE_MALFORMED;
		/* AH counts 4-byte units minus 2, the others 8-byte units minus 1
		 * (RFC 4302, RFC 8200). */
		off += next == IPPROTO_AH ? (ext->hdrlen + 2) * 4 : (ext->hdrlen + 1) * 8;
		next = ext->nexthdr;
	}
	if (next == IPPROTO_FRAGMENT)
		return LB_PARSE_FRAGMENT;
	if (next != IPPROTO_TCP) /* other protocols, or a chain too long */
		return LB_PARSE_NOT_TCP;
	*hlen = off;
	return LB_PARSE_TCP;
}

/* Fills p from the frame [data, data_end); the result says how far it got. */
static __always_inline int lb_parse(void *data, void *data_end, struct lb_pkt *p)
{
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	struct tcphdr *tcp;
	__u32 hlen = 0, l3_total = 0, headers;
	__be16 proto;
	int i, ret;

	__builtin_memset(p, 0, sizeof(*p));
	p->len = data_end - data;
	if (l3 > data_end)
		return LB_PARSE_MALFORMED;
	proto = eth->h_proto;
	for (i = 0; i < LB_MAX_VLAN_TAGS; i++) {
		struct vlan_hdr_lb *vlan = l3;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > data_end)
			return LB_PARSE_MALFORMED;
		proto = vlan->proto;
		l3 = vlan + 1;
		p->vlan_tags++;
	}
	p->l3_off = l3 - data;

	if (proto == bpf_htons(ETH_P_IP))
		ret = lb_parse_ipv4(l3, data_end, p, &hlen, &l3_total);
	else if (proto == bpf_htons(ETH_P_IPV6))
		ret = lb_parse_ipv6(l3, data_end, p, &hlen, &l3_total);
	else
		return LB_PARSE_NOT_IP;
	p->l4_off = p->l3_off + hlen;
	if (ret != LB_PARSE_TCP)
		return ret;

	tcp = l3 + hlen;
	if ((void *)(tcp + 1) > data_end)
		return LB_PARSE_MALFORMED;
	if (tcp->doff < 5 || (void *)tcp + tcp->doff * 4 > data_end)
		return LB_PARSE_MALFORMED;
	p->key.protocol = IPPROTO_TCP;
	p->key.sport = tcp->source;
	p->key.dport = tcp->dest;
	p->tcp_flags = ((__u8 *)tcp)[13];
	p->seq = tcp->seq;
	p->ack_seq = tcp->ack_seq;
	p->payload_off = p->l4_off + tcp->doff * 4;
	headers = hlen + tcp->doff * 4;
	p->payload_len = l3_total > headers ? l3_total - headers : 0;
	return LB_PARSE_TCP;
}

/* The parse for each program type; a global function takes only its own
 * program type's context. */
LB_GLOBAL int lb_parse_xdp(struct xdp_md *ctx, struct lb_pkt *p)
{
	if (!p)
		return LB_PARSE_MALFORMED;
	return lb_parse((void *)(long)ctx->data, (void *)(long)ctx->data_end, p);
}

LB_GLOBAL int lb_parse_skb(struct __sk_buff *skb, struct lb_pkt *p)
{
	if (!p)
		return LB_PARSE_MALFORMED;
	return lb_parse((void *)(long)skb->data, (void *)(long)skb->data_end, p);
}

/* The socket tuple of a flow key for bpf_sk*_lookup_tcp(); returns its size. */
static __always_inline __u32 lb_sock_tuple(const struct lb_flow_key *key, struct bpf_sock_tuple *t)
{
	if (key->family == LB_FAMILY_IPV4) {
		t->ipv4.saddr = key->saddr.v4;
		t->ipv4.daddr = key->daddr.v4;
		t->ipv4.sport = key->sport;
		t->ipv4.dport = key->dport;
		return sizeof(t->ipv4);
	}
	__builtin_memcpy(t->ipv6.saddr, key->saddr.v6, 16);
	__builtin_memcpy(t->ipv6.daddr, key->daddr.v6, 16);
	t->ipv6.sport = key->sport;
	t->ipv6.dport = key->dport;
	return sizeof(t->ipv6);
}

#define LB_TCP_LISTEN 10 /* include/net/tcp_states.h */

/* Whether a connection of this node has the packet (bpf_skc_lookup_tcp
 * works from XDP). */
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

/* The TCP header of a parsed frame, or NULL (offsets are re-checked: the
 * verifier knows nothing of their values). */
static __always_inline struct tcphdr *lb_tcp_header(void *data, void *data_end,
						    const struct lb_pkt *p)
{
	__u32 off = p->l4_off;
	struct tcphdr *tcp;

	if (off > LB_MAX_L4_OFF)
		return NULL;
	tcp = data + off;
	if ((void *)(tcp + 1) > data_end)
		return NULL;
	return tcp;
}

#endif
