/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Load in real time (DESIGN.md section 2, load.source = "inflight"): the
 * connections established on this node's services, counted at every TCP
 * state change by a tracepoint program. It sees the connections this node
 * keeps, those its peers hand to it and those that reach it any other way,
 * and their ends whatever they are (FIN either way, RST, timeout). */
#ifndef PEERLB_BPF_INFLIGHT_H
#define PEERLB_BPF_INFLIGHT_H

#include <linux/bpf.h>
#include <linux/in6.h>
#include <linux/socket.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "maps.bpf.h"

/* The few kernel fields read, by name: CO-RE relocates them against the
 * running kernel's BTF (the ___lb suffix is ignored in matching). */
struct ns_common___lb {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net___lb {
	struct ns_common___lb ns;
} __attribute__((preserve_access_index));

struct possible_net___lb {
	struct net___lb *net;
} __attribute__((preserve_access_index));

struct sock_common___lb {
	__be32 skc_rcv_saddr;
	__u16 skc_num;
	unsigned short skc_family;
	struct possible_net___lb skc_net;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock___lb {
	struct sock_common___lb __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

/* The local port as the socket sends it: skc_num is zeroed when a closing
 * socket gives its port back, before the state change to CLOSE is traced. */
struct inet_sock___lb {
	struct sock___lb sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

#define LB_TCP_ESTABLISHED 1 /* include/net/tcp_states.h */
#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif

/* Whether the socket's local end is one of this node's services. */
static __always_inline int lb_sock_on_service(const struct sock___lb *sk)
{
	struct lb_service_key key = {};
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);

	key.port = BPF_CORE_READ((const struct inet_sock___lb *)sk, inet_sport);
	if (family == AF_INET) {
		key.family = LB_FAMILY_IPV4;
		key.addr.v4 = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&key.addr.v6, sk, __sk_common.skc_v6_rcv_saddr);
		/* An IPv4 client of a dual-stack socket: ::ffff:a.b.c.d. */
		if (key.addr.v6[0] == 0 && key.addr.v6[1] == 0 &&
		    key.addr.v6[2] == bpf_htonl(0xffff)) {
			key.family = LB_FAMILY_IPV4;
			key.addr.v4 = key.addr.v6[3];
			key.addr.v6[1] = key.addr.v6[2] = key.addr.v6[3] = 0;
		} else {
			key.family = LB_FAMILY_IPV6;
		}
	} else {
		return 0;
	}
	return bpf_map_lookup_elem(&lb_services, &key) != NULL;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(lb_sock_state, const struct sock___lb *sk, int oldstate, int newstate)
{
	__u32 zero = 0, counted = LB_INFLIGHT_COUNTED, changes = LB_INFLIGHT_CHANGES;
	struct lb_inflight *c;
	struct lb_config *cfg;
	__s64 delta;

	if (newstate == LB_TCP_ESTABLISHED && oldstate != LB_TCP_ESTABLISHED)
		delta = 1;
	else if (oldstate == LB_TCP_ESTABLISHED && newstate != LB_TCP_ESTABLISHED)
		delta = -1;
	else
		return 0;
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	/* The tracepoint is the whole kernel's: only this namespace counts. */
	if (!cfg || !cfg->netns_ino || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != cfg->netns_ino)
		return 0;
	if (!lb_sock_on_service(sk))
		return 0;
	c = bpf_map_lookup_elem(&lb_inflight, &counted);
	if (c)
		__sync_fetch_and_add(&c->connections, delta);
	c = bpf_map_lookup_elem(&lb_inflight, &changes);
	if (c)
		__sync_fetch_and_add(&c->connections, 1);
	return 0;
}

#endif
