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
	/* Connections given to this node since load_bp was written; the data
	 * plane adds to it, the writer of load_bp resets it. */
	__u32 pending;
	__u64 updated_ns;   /* CLOCK_MONOTONIC (bpf_ktime_get_ns) of load_bp */
};

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
