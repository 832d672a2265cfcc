/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* URI rules of the "http" mode (DESIGN.md section 4): which nodes serve a
 * request, read from the first data segment of a connection. */
#ifndef PEERLB_MAPS_URI_H
#define PEERLB_MAPS_URI_H

#include "common.h"

/* "_v2": node sets of LB_MAX_NODES bits (the first layout had 64). */
#define LB_URI_RULES_MAP "lb_uri_rules_v2"
#define LB_MAX_URI_RULES 16
#define LB_URI_PATTERN_MAX 64 /* bytes of a path pattern (power of two) */
#define LB_URI_HOST_MAX 64    /* bytes of a Host match (power of two) */

enum lb_uri_flags {
	LB_URI_GLOB = 1 << 0,      /* pattern: '*' glob matching the whole path;
				    * otherwise a path prefix */
	LB_URI_EXIT_GLOB = 1 << 1, /* the same for exit_pattern */
	LB_URI_STATEFUL = 1 << 2,  /* an entry point: pins the client */
	LB_URI_SELF = 1 << 3,      /* this node is one of the rule's nodes */
};

/* A set of node slots: bit i of word i / 64 is slot i. */
#define LB_NODE_SET_WORDS (LB_MAX_NODES / 64)

static inline int lb_node_set_has(const __u64 *set, __u32 slot)
{
	return slot < LB_MAX_NODES && (set[slot / 64] >> (slot % 64) & 1);
}

static inline void lb_node_set_add(__u64 *set, __u32 slot)
{
	if (slot < LB_MAX_NODES)
		set[slot / 64] |= 1ull << (slot % 64);
}

/* lb_uri_rules_v2[i], i < lb_config.uri_rules: tried in order, the first
 * match wins. Patterns are bytes, not NUL-terminated. */
struct lb_uri_rule {
	__u8 pattern[LB_URI_PATTERN_MAX];
	__u8 exit_pattern[LB_URI_PATTERN_MAX]; /* stateful rules: ends the pin */
	__u8 host[LB_URI_HOST_MAX];            /* lower case; empty: any host */
	__u16 pattern_len;
	__u16 exit_len;
	__u16 host_len;
	__be16 port;        /* the service port it applies to; 0: every one */
	__u32 flags;        /* enum lb_uri_flags */
	__u32 pin_timeout_s; /* stateful: how long a pin lasts without exit */
	/* The node slots that serve it (see LB_URI_SELF); the decision draws
	 * from its candidate list (maps/candidates.h) and takes only these. */
	__u64 nodes[LB_NODE_SET_WORDS];
};

/* lb_rule_stats: per-CPU array indexed by rule. */
#define LB_RULE_STATS_MAP "lb_rule_stats"
struct lb_rule_counters {
	__u64 hits;    /* first requests that matched it */
	__u64 spilled; /* of those, sent anywhere: its nodes were all above T1 */
};

#endif
