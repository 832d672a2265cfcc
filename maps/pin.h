/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Stateful URI rules (DESIGN.md section 4): a client pinned to the node that
 * served its entry request, until its exit request or a timeout. Every node
 * holds every pin (the agents share them), so the client's next connection
 * goes to that node whichever node receives it. */
#ifndef PEERLB_MAPS_PIN_H
#define PEERLB_MAPS_PIN_H

#include "common.h"

#define LB_PINS_MAP "lb_pins"
#define LB_MAX_PINS 65536
#define LB_PIN_EVENTS_MAP "lb_pin_events"

struct lb_pin_key {
	union lb_addr client; /* IPv6: the client's /64 (the rest zero) */
	__u8 family;
	__u8 pad[3];
};

struct lb_pin {
	__u32 node;       /* node slot, or LB_NODE_LOCAL */
	__u32 rule;       /* index of the stateful rule */
	__u64 expires_ns; /* bpf_ktime_get_ns() clock */
};

enum lb_pin_op {
	LB_PIN_SET = 1,   /* an entry request pinned the client */
	LB_PIN_ENDED = 2, /* its exit request ended the pin */
};

/* lb_pin_events (ring buffer): what this node's data plane pinned or
 * unpinned, for the agent to tell its peers. */
struct lb_pin_event {
	struct lb_pin_key key;
	__u32 op;         /* enum lb_pin_op */
	__u32 node;       /* node slot, or LB_NODE_LOCAL */
	__u32 rule;
	__u32 timeout_s;
};

#endif
