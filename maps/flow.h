/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The flow table: where every packet of a decided TCP connection goes. */
#ifndef PEERLB_MAPS_FLOW_H
#define PEERLB_MAPS_FLOW_H

#include "common.h"

/* Two tables so that a SYN flood cannot evict established connections: a
 * SYN's decision goes to lb_flows_new (half-open), and moves to lb_flows at
 * the flow's first non-SYN packet. Both are LRU on the 5-tuple. */
#define LB_FLOWS_MAP "lb_flows"
#define LB_MAX_FLOWS 262144
#define LB_FLOWS_NEW_MAP "lb_flows_new"
#define LB_MAX_FLOWS_NEW 65536

struct lb_flow_key {
	union lb_addr saddr;
	union lb_addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 family;
	__u8 protocol;
	__u8 pad[2];
};

/* Why a connection went where it went (shown by `peerlb flows`). */
enum lb_reason {
	LB_REASON_BELOW_T1 = 0,      /* local load under accept_below */
	LB_REASON_NO_LOWER_PEER = 1, /* no fresh peer min_difference lower */
	LB_REASON_FAILSAFE = 2,      /* own load information stale */
	LB_REASON_LEAST = 3,         /* forwarded to the least-loaded peer */
	LB_REASON_WEIGHTED = 4,      /* forwarded by weighted draw */
	LB_REASON_HANDOVER = 5,      /* announced by the peer serving it when its
				      * service address moved here */
	LB_REASON_MAX,
};

struct lb_flow {
	__u32 node;       /* node slot, or LB_NODE_LOCAL */
	__u8 reason;      /* enum lb_reason */
	__u8 pad[3];
	__u64 created_ns; /* bpf_ktime_get_ns at the SYN */
};

#endif
