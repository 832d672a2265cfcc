// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* Floors of the per-packet bench (tools/bench/xdp_cost.cpp): what any XDP
 * program pays before it decides anything, measured beside xdp_peerlb in
 * the same run.
 *   floor_pass          returns at once: the test-run harness alone.
 *   floor_parse         parses what xdp_peerlb accepts (Ethernet, up to 2
 *                       VLAN tags, IPv4 / IPv6, TCP), every access
 *                       bounds-checked, and reads ports and flags.
 *   floor_parse_lookup  the same, then the two lookups every service packet
 *                       needs: the service (hash, keyed like lb_services)
 *                       and the config (array, like lb_config).
 * All pass. The parser is written here, apart from bpf/parse.bpf.h, so that
 * a costly parse in the real program shows instead of moving the floor. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../../../maps/config.h"
#include "../../../maps/service.h"

#define FLOOR_MAX_VLAN_TAGS 2
#define FLOOR_IP_FRAGMENT 0x3fff /* MF and the offset */

/* Keeps a value computed at no cost: without a use, clang drops the reads
 * (and with them the bounds checks) that a real program needs. */
#define floor_use(x) asm volatile("" : : "r"(x))

/* The same types and size as lb_services and lb_config (maps.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
} floor_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} floor_config SEC(".maps");

struct floor_vlan {
	__be16 tci;
	__be16 proto;
};

struct floor_tcp {
	struct lb_service_key key; /* destination address and port */
	__be16 sport;
	__u8 flags;
};

/* 0 when the packet is TCP over IPv4 / IPv6 (not a fragment); *t filled. */
static __always_inline int floor_parse_tcp(struct xdp_md *ctx, struct floor_tcp *t)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *pos = eth + 1;
	struct tcphdr *tcp;
	__be16 proto;
	__u8 l4;
	int i;

	if (pos > data_end)
		return -1;
	proto = eth->h_proto;
	for (i = 0; i < FLOOR_MAX_VLAN_TAGS; i++) {
		struct floor_vlan *vlan = pos;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > data_end)
			return -1;
		proto = vlan->proto;
		pos = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = pos;

		if ((void *)(ip + 1) > data_end)
			return -1;
		if (ip->ihl < 5 || (ip->frag_off & bpf_htons(FLOOR_IP_FRAGMENT)))
			return -1;
		l4 = ip->protocol;
		t->key.addr.v4 = ip->daddr;
		t->key.family = LB_FAMILY_IPV4;
		pos += ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = pos;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		/* No extension header walk: the bench's packets carry none. */
		l4 = ip6->nexthdr;
		__builtin_memcpy(t->key.addr.v6, &ip6->daddr, 16);
		t->key.family = LB_FAMILY_IPV6;
		pos = ip6 + 1;
	} else {
		return -1;
	}
	if (l4 != IPPROTO_TCP)
		return -1;

	tcp = pos;
	if ((void *)(tcp + 1) > data_end)
		return -1;
	if (tcp->doff < 5 || (void *)tcp + tcp->doff * 4 > data_end)
		return -1;
	t->key.port = tcp->dest;
	t->sport = tcp->source;
	t->flags = ((__u8 *)tcp)[13];
	return 0;
}

SEC("xdp")
int floor_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int floor_parse(struct xdp_md *ctx)
{
	struct floor_tcp t = {};

	if (floor_parse_tcp(ctx, &t))
		return XDP_PASS;
	floor_use(t.key.port ^ t.sport);
	floor_use(t.flags);
	return XDP_PASS;
}

SEC("xdp")
int floor_parse_lookup(struct xdp_md *ctx)
{
	struct floor_tcp t = {};
	struct lb_service *svc;
	struct lb_config *cfg;
	__u32 zero = 0;

	if (floor_parse_tcp(ctx, &t))
		return XDP_PASS;
	floor_use(t.sport);
	floor_use(t.flags);
	cfg = bpf_map_lookup_elem(&floor_config, &zero);
	svc = bpf_map_lookup_elem(&floor_services, &t.key);
	if (cfg && svc)
		floor_use(cfg->forward ^ svc->mode);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
