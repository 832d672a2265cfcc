/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Header-cursor parsing of Ethernet (+VLAN), IPv4/IPv6, TCP, shared by the
 * XDP and TC programs. Every access is bounds-checked against data_end. */
#ifndef PEERLB_BPF_PARSE_H
#define PEERLB_BPF_PARSE_H

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

#define LB_MAX_VLAN_TAGS 2
#define LB_MAX_IPV6_EXT_HDRS 4

#define LB_IP_MF 0x2000
#define LB_IP_OFFSET 0x1fff

#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif

enum lb_parse_result {
	LB_PARSE_TCP,       /* a TCP segment: l4 and key are set */
	LB_PARSE_ENCAP,     /* IPIP / IPv6-in-IP: outer header at l3 */
	LB_PARSE_NOT_IP,
	LB_PARSE_NOT_TCP,
	LB_PARSE_FRAGMENT,
	LB_PARSE_MALFORMED, /* truncated or inconsistent headers */
};

struct vlan_hdr_lb {
	__be16 tci;
	__be16 proto;
};

struct lb_packet {
	void *data;
	void *data_end;
	void *l3;
	void *l4;
	struct tcphdr *tcp;
	__u32 l2_len;      /* Ethernet header and VLAN tags */
	__u32 l3_len;      /* IP header with options / extension headers */
	__u8 inner_proto;  /* with LB_PARSE_ENCAP: IPPROTO_IPIP or IPPROTO_IPV6 */
	__u8 pad[3];
	struct lb_flow_key key;
};

static __always_inline int lb_parse_l2(struct lb_packet *p, __be16 *proto)
{
	struct ethhdr *eth = p->data;
	void *pos = eth + 1;
	int i;

	if (pos > p->data_end)
		return LB_PARSE_MALFORMED;
	*proto = eth->h_proto;

	for (i = 0; i < LB_MAX_VLAN_TAGS; i++) {
		struct vlan_hdr_lb *vlan = pos;

		if (*proto != bpf_htons(ETH_P_8021Q) && *proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > p->data_end)
			return LB_PARSE_MALFORMED;
		*proto = vlan->proto;
		pos = vlan + 1;
	}
	p->l3 = pos;
	p->l2_len = pos - p->data;
	return LB_PARSE_TCP;
}

static __always_inline int lb_parse_ipv4(struct lb_packet *p)
{
	struct iphdr *ip = p->l3;
	__u32 hlen;

	if ((void *)(ip + 1) > p->data_end)
		return LB_PARSE_MALFORMED;
	hlen = ip->ihl * 4;
	if (ip->version != 4 || hlen < sizeof(*ip))
		return LB_PARSE_MALFORMED;
	if (p->l3 + hlen > p->data_end)
		return LB_PARSE_MALFORMED;
	if (ip->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET))
		return LB_PARSE_FRAGMENT;
	p->l3_len = hlen;
	p->l4 = p->l3 + hlen;
	p->key.family = LB_FAMILY_IPV4;
	p->key.saddr.v4 = ip->saddr;
	p->key.daddr.v4 = ip->daddr;
	if (ip->protocol == IPPROTO_IPIP || ip->protocol == IPPROTO_IPV6) {
		p->inner_proto = ip->protocol;
		return LB_PARSE_ENCAP;
	}
	if (ip->protocol != IPPROTO_TCP)
		return LB_PARSE_NOT_TCP;
	p->key.protocol = IPPROTO_TCP;
	return LB_PARSE_TCP;
}

/* Walks at most LB_MAX_IPV6_EXT_HDRS extension headers; a longer chain is
 * treated as not TCP (passed to the kernel untouched). */
static __always_inline int lb_parse_ipv6(struct lb_packet *p)
{
	struct ipv6hdr *ip6 = p->l3;
	void *pos = ip6 + 1;
	__u8 next;
	int i;

	if (pos > p->data_end)
		return LB_PARSE_MALFORMED;
	if (ip6->version != 6)
		return LB_PARSE_MALFORMED;
	__builtin_memcpy(p->key.saddr.v6, &ip6->saddr, 16);
	__builtin_memcpy(p->key.daddr.v6, &ip6->daddr, 16);
	p->key.family = LB_FAMILY_IPV6;
	next = ip6->nexthdr;

	if (next == IPPROTO_IPIP || next == IPPROTO_IPV6) {
		p->l3_len = sizeof(*ip6);
		p->inner_proto = next;
		return LB_PARSE_ENCAP;
	}

	for (i = 0; i < LB_MAX_IPV6_EXT_HDRS; i++) {
		struct ipv6_opt_hdr *ext = pos;
		__u32 len;

		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
		    next != IPPROTO_DSTOPTS && next != IPPROTO_AH)
			break;
		if ((void *)(ext + 1) > p->data_end)
			return LB_PARSE_MALFORMED;
		/* AH counts 4-byte units minus 2, the others 8-byte units minus 1
		 * (RFC 4302, RFC 8200). */
		len = next == IPPROTO_AH ? (ext->hdrlen + 2) * 4 : (ext->hdrlen + 1) * 8;
		next = ext->nexthdr;
		pos += len;
	}
	if (next == IPPROTO_FRAGMENT)
		return LB_PARSE_FRAGMENT;
	if (next != IPPROTO_TCP) /* other protocols, or a chain too long */
		return LB_PARSE_NOT_TCP;
	p->l3_len = pos - p->l3;
	p->l4 = pos;
	p->key.protocol = IPPROTO_TCP;
	return LB_PARSE_TCP;
}

static __always_inline int lb_parse_tcp(struct lb_packet *p)
{
	struct tcphdr *tcp = p->l4;

	if ((void *)(tcp + 1) > p->data_end)
		return LB_PARSE_MALFORMED;
	if (tcp->doff < 5 || (void *)tcp + tcp->doff * 4 > p->data_end)
		return LB_PARSE_MALFORMED;
	p->tcp = tcp;
	p->key.sport = tcp->source;
	p->key.dport = tcp->dest;
	return LB_PARSE_TCP;
}

/* Fills p from data/data_end (which the caller sets); the result says how
 * far it got. */
static __always_inline int lb_parse(struct lb_packet *p)
{
	__be16 proto;
	int ret;

	ret = lb_parse_l2(p, &proto);
	if (ret != LB_PARSE_TCP)
		return ret;
	if (proto == bpf_htons(ETH_P_IP))
		ret = lb_parse_ipv4(p);
	else if (proto == bpf_htons(ETH_P_IPV6))
		ret = lb_parse_ipv6(p);
	else
		return LB_PARSE_NOT_IP;
	if (ret != LB_PARSE_TCP)
		return ret;
	return lb_parse_tcp(p);
}

#endif
