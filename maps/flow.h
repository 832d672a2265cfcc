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

/* Per-CPU meter of SYNs to l4 services (lb_syn_meter): above
 * lb_config.syn_cookie_rate the half-open table would churn, so SYNs are
 * answered with cookies for a while instead (enum lb_syn_cookies). */
#define LB_SYN_METER_MAP "lb_syn_meter"
#define LB_SYN_WINDOW_NS 100000000ull      /* SYNs are counted per 100 ms */
#define LB_SYN_COOKIE_HOLD_NS 1000000000ull /* cookies stay on 1 s after */
#define LB_SYN_COOKIE_RECENT_NS 10000000000ull /* SYN retransmissions: 1, 3, 7 s */

struct lb_syn_meter {
	__u64 window_start_ns;
	__u64 cookies_until_ns;
	__u32 syns;      /* in the window that started at window_start_ns */
	__u32 pad;
};

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
	LB_REASON_PINNED = 6,        /* its client is pinned to the node by a
				      * stateful URI rule */
	LB_REASON_OVERFLOW = 7,      /* kept: this node and every peer at or
				      * above high_water (overflow = keep) */
	LB_REASON_REFUSED = 8,       /* dropped, the same with overflow = refuse
				      * (a decision only, never a flow) */
	LB_REASON_MAX,
};

/* How an "http" connection's first request was routed (lb_flow.http). */
enum lb_flow_http {
	LB_FLOW_HTTP = 1 << 0,       /* decided at its first request (http mode) */
	LB_FLOW_SPILLED = 1 << 1,    /* its rule's nodes were all above T1 */
	LB_FLOW_NOT_HTTP = 1 << 2,   /* no request line: decided by load */
	LB_FLOW_INCOMPLETE = 1 << 3, /* request line cut: decided by load */
	LB_FLOW_PINNED = 1 << 4,     /* its client was pinned (stateful rule) */
	LB_FLOW_PIN_SET = 1 << 5,    /* it pinned its client (entry request) */
	LB_FLOW_PIN_ENDED = 1 << 6,  /* it ended its client's pin (exit request) */
};

struct lb_flow {
	__u32 node;       /* node slot, or LB_NODE_LOCAL */
	__u8 reason;      /* enum lb_reason */
	__u8 rule;        /* URI rule index + 1 that routed it; 0: none */
	__u8 http;        /* enum lb_flow_http bits */
	__u8 handed;      /* 1: counted open in lb_handed, from the decision
			   * until the client's FIN or RST */
	__u64 created_ns; /* bpf_ktime_get_ns at the SYN (first request in http mode) */
};

#endif
