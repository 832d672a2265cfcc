/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Load in real time (DESIGN.md section 2): connections counted by the data
 * plane itself, so that each decision sees them at the packet. */
#ifndef PEERLB_MAPS_LOAD_H
#define PEERLB_MAPS_LOAD_H

#include "common.h"

/* lb_inflight: connections established on this node's services, counted
 * by the socket state tracepoint (bpf/inflight.bpf.h). Entries with one
 * writer each, so that neither overwrites the other's updates. */
#define LB_INFLIGHT_MAP "lb_inflight"
enum lb_inflight_entry {
	LB_INFLIGHT_COUNTED = 0,    /* +1 into ESTABLISHED, -1 out of it */
	LB_INFLIGHT_CORRECTION = 1, /* the agent's: the socket table's count
				     * minus COUNTED (connections open before
				     * their service address was added) */
	LB_INFLIGHT_CHANGES = 2,    /* +1 at every change of COUNTED: a walk of
				     * the socket table between two equal
				     * readings saw a still count */
	LB_INFLIGHT_ENTRIES = 3,
};

struct lb_inflight {
	__s64 connections;
};

/* lb_handed: by node slot (this node's own included), the connections
 * this node's data plane decided for that node and has not yet seen
 * closed by the client (FIN or RST). Wrapping counter: readers take
 * differences (lb_node.handed_at_report). */
#define LB_HANDED_MAP "lb_handed"
struct lb_handed {
	__u32 open;
	__u32 pad;
};

/* The pin of the tracepoint link under <pin-root>/<ifname>/. */
#define LB_PIN_SOCK_STATE_LINK "sock_state_link"

#endif
