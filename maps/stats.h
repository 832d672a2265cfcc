/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Per-CPU counters: one named entry per verdict and reason. */
#ifndef PEERLB_MAPS_STATS_H
#define PEERLB_MAPS_STATS_H

#include "common.h"

#define LB_STATS_MAP "lb_stats"
#define LB_NODE_STATS_MAP "lb_node_stats"

/* X(enum suffix, printed name). The order is the map index. */
#define LB_COUNTERS(X)                                                  \
	X(PASS_NOT_IP, "pass_not_ip")                                   \
	X(PASS_NOT_TCP, "pass_not_tcp")                                 \
	X(PASS_FRAGMENT, "pass_fragment")                               \
	X(PASS_MALFORMED, "pass_malformed")                             \
	X(PASS_NOT_SERVICE, "pass_not_service")                         \
	X(PASS_STEERED_IN, "pass_steered_in")                           \
	X(PASS_DECAPSULATED, "pass_decapsulated")                       \
	X(PASS_FLOW_LOCAL, "pass_flow_local")                           \
	X(PASS_LOCAL_SOCKET, "pass_local_socket")                       \
	X(PASS_ORPHAN, "pass_orphan")                                   \
	X(DROP_ORPHAN_GRACE, "drop_orphan_grace")                       \
	X(SYN_LOCAL_BELOW_T1, "syn_local_below_t1")                     \
	X(SYN_LOCAL_NO_LOWER_PEER, "syn_local_no_lower_peer")           \
	X(SYN_LOCAL_FAILSAFE, "syn_local_failsafe")                     \
	X(SYN_FORWARD_LEAST, "syn_forward_least")                       \
	X(SYN_FORWARD_WEIGHTED, "syn_forward_weighted")                 \
	X(TX_FLOW_FORWARD, "tx_flow_forward")                           \
	X(DROP_FORWARD_ERROR, "drop_forward_error")                     \
	X(TC_MSS_CLAMPED, "tc_mss_clamped")                             \
	X(TX_SYN_COOKIE, "tx_syn_cookie")                               \
	X(PASS_SYN_NO_COOKIE_KEY, "pass_syn_no_cookie_key")             \
	X(DROP_HANDSHAKE_ACK, "drop_handshake_ack")                     \
	X(PASS_BAD_COOKIE, "pass_bad_cookie")                           \
	X(HTTP_LOCAL, "http_local")                                     \
	X(HTTP_FORWARD, "http_forward")                                 \
	X(HTTP_NOT_HTTP, "http_not_http")                               \
	X(HTTP_INCOMPLETE, "http_incomplete")                           \
	X(TC_COOKIE_ASSIGNED, "tc_cookie_assigned")                     \
	X(TC_COOKIE_INVALID, "tc_cookie_invalid")                       \
	X(TC_COOKIE_ASSIGN_FAILED, "tc_cookie_assign_failed")

enum lb_counter {
#define LB_COUNTER_ENUM(name, text) LB_C_##name,
	LB_COUNTERS(LB_COUNTER_ENUM)
#undef LB_COUNTER_ENUM
	LB_C_MAX,
};

struct lb_counter_value {
	__u64 packets;
	__u64 bytes;
};

/* lb_node_stats: per-CPU array indexed by node slot. */
struct lb_node_counters {
	__u64 syns_forwarded;  /* new connections given to the node */
	__u64 packets_forwarded;
	__u64 bytes_forwarded;
};

#endif
