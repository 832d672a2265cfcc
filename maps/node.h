/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The cluster's nodes as the data plane sees them. */
#ifndef PEERLB_MAPS_NODE_H
#define PEERLB_MAPS_NODE_H

#include "common.h"

#define LB_NODES_MAP "lb_nodes"
#define LB_NODE_ADDRS_MAP "lb_node_addrs"
#define LB_NODE_MACS_MAP "lb_node_macs"

enum lb_node_state {
	LB_NODE_EMPTY = 0,      /* slot unused */
	LB_NODE_ALIVE = 1,      /* candidate while fresh */
	LB_NODE_SUSPECT = 2,    /* missed heartbeats: not a candidate */
	LB_NODE_DEAD = 3,       /* not a candidate */
	LB_NODE_UNROUTABLE = 4, /* alive but its service is unhealthy */
};

/* lb_nodes: array indexed by node slot; the self slot holds the local load. */
struct lb_node {
	union lb_addr addr; /* node address: outer header for ipip */
	__u8 mac[6];        /* next-hop MAC towards the node */
	__u8 family;        /* LB_FAMILY_IPV4 / LB_FAMILY_IPV6 of addr */
	__u8 state;         /* enum lb_node_state */
	__u32 load_bp;      /* last measured load */
	/* lb_handed[slot].open when load_bp was written: the connections this
	 * node decided for the node since, still open, are the difference
	 * (wrapping u32 arithmetic; it can be negative: those decided before
	 * and closed since, which load_bp still counts). */
	__u32 handed_at_report;
	__u64 updated_ns;   /* CLOCK_MONOTONIC (bpf_ktime_get_ns) of load_bp */
	__u32 conn_cost_bp; /* load one connection adds to the node (100 % / its
			     * capacity), as it announces it */
	__u16 weight;       /* relative capacity in hundredths (1.0 = 100) */
	__u8 flags;         /* enum lb_node_flags */
	__u8 pad;
};

enum lb_node_flags {
	LB_NODE_STANDBY = 1 << 0, /* a candidate only while every active node
				   * is at or above T1 (DESIGN.md section 2) */
};

#define LB_WEIGHT_ONE 100 /* lb_node.weight of weight = 1.0 */

/* lb_node_addrs: node address -> slot, recognises packets steered here. */
struct lb_node_addr_key {
	union lb_addr addr;
	__u8 family;
	__u8 pad[3];
};

/* lb_node_macs: peer MAC -> slot, recognises steered packets in l2 mode. */
struct lb_node_mac_key {
	__u8 mac[6];
	__u8 pad[2];
};

#endif
