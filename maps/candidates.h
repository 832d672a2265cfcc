/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Candidate lists (DESIGN.md section 2, power of d choices): the peers a new
 * connection may go to, kept current by the agent, so that a decision
 * draws a few of them (lb_config.choices) instead of scanning every node
 * slot: its cost does not grow with the cluster.
 *
 * The agent lists the peers it sees usable (alive and routable, not this
 * node); a standby peer only while every active peer of the list last
 * reported a load at or above T1 (the standby gate is the agent's, on
 * reported loads: the data plane treats every listed peer as active). The
 * data plane still checks each drawn slot's state and freshness in
 * lb_nodes, so a list that lags a death, or a list read while the agent
 * rewrites it (torn), never sends a connection to a dead peer. */
#ifndef PEERLB_MAPS_CANDIDATES_H
#define PEERLB_MAPS_CANDIDATES_H

#include "common.h"
#include "uri.h"

#define LB_CANDIDATES_MAP "lb_candidates"

/* lb_candidates[0]: the peers of a connection decided by load alone;
 * lb_candidates[1 + r]: URI rule r's members. */
#define LB_CANDIDATES_ANY 0
#define LB_CANDIDATE_LISTS (1 + LB_MAX_URI_RULES)

static inline __u32 lb_rule_candidates(__u32 rule)
{
	return 1 + rule;
}

struct lb_candidates {
	__u32 count;               /* slots[0 .. count) are listed */
	__u16 slots[LB_MAX_NODES]; /* node slots, ascending */
};

#endif
