/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Service addresses that just moved to this node (takeover, give-back).
 * Until the deadline, a segment to such an address with no flow entry and no
 * local socket is dropped (or sent to the previous holder, struct lb_grace)
 * rather than passed: the peers' announcements of the connections they serve
 * on it are on their way, and passing would make this kernel reset those
 * connections (DESIGN.md section 5). */
#ifndef PEERLB_MAPS_GRACE_H
#define PEERLB_MAPS_GRACE_H

#include "common.h"

#define LB_GRACE_MAP "lb_grace"
#define LB_MAX_GRACE 256

struct lb_grace_key {
	union lb_addr addr;
	__u8 family;
	__u8 pad[3];
};

struct lb_grace {
	__u64 until_ns;   /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	/* The node that held the address before, when it was taken over
	 * because that node's agent is gone: its data plane and sockets may
	 * live on (fenced, DESIGN.md section 5), so unknown segments go there
	 * instead of being dropped. LB_NODE_LOCAL: none (dropped). */
	__u32 previous;
	__u32 pad;
};

#endif
