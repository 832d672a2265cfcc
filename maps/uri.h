/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* URI rules of the "http" mode (DESIGN.md section 4): which nodes serve a
 * request, read from the first data segment of a connection. */
#ifndef PEERLB_MAPS_URI_H
#define PEERLB_MAPS_URI_H

#include "common.h"

#define LB_URI_RULES_MAP "lb_uri_rules"
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

/* lb_uri_rules[i], i < lb_config.uri_rules: tried in order, the first match
 * wins. Patterns are bytes, not NUL-terminated. */
struct lb_uri_rule {
	__u8 pattern[LB_URI_PATTERN_MAX];
	__u8 exit_pattern[LB_URI_PATTERN_MAX]; /* stateful rules: ends the pin */
	__u8 host[LB_URI_HOST_MAX];            /* lower case; empty: any host */
	__u16 pattern_len;
	__u16 exit_len;
	__u16 host_len;
	__be16 port;        /* the service port it applies to; 0: every one */
	__u64 nodes;        /* bit i: node slot i serves it (see LB_URI_SELF) */
	__u32 flags;        /* enum lb_uri_flags */
	__u32 pin_timeout_s; /* stateful: how long a pin lasts without exit */
};

/* lb_rule_stats: per-CPU array indexed by rule. */
#define LB_RULE_STATS_MAP "lb_rule_stats"
struct lb_rule_counters {
	__u64 hits;    /* first requests that matched it */
	__u64 spilled; /* of those, sent anywhere: its nodes were all above T1 */
};

#endif
