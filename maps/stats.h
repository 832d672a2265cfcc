/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Per-CPU counters: one named entry per verdict and reason. */
#ifndef PEERLB_MAPS_STATS_H
#define PEERLB_MAPS_STATS_H

#include "common.h"

#define LB_STATS_MAP "lb_stats"
#define LB_NODE_STATS_MAP "lb_node_stats"

/* What a counter counts, so that readers group counters by kind instead of
 * by their names. */
enum lb_counter_kind {
	LB_KIND_PASSED = 0,    /* a packet handed to the kernel as it came */
	LB_KIND_KEPT = 1,      /* a new connection decided: served here */
	LB_KIND_FORWARDED = 2, /* a new connection decided: handed to a peer */
	LB_KIND_SENT = 3,      /* a packet sent out again (XDP_TX) */
	LB_KIND_DROPPED = 4,   /* a packet dropped */
	LB_KIND_OTHER = 5,     /* a detail counted beside one of the above, or TC */
};

/* X(enum suffix, printed name, kind). The order is the map index: new
 * counters go at the end. */
#define LB_COUNTERS(X)                                                          \
	X(PASS_NOT_IP, "pass_not_ip", PASSED)                                   \
	X(PASS_NOT_TCP, "pass_not_tcp", PASSED)                                 \
	X(PASS_FRAGMENT, "pass_fragment", PASSED)                               \
	X(PASS_MALFORMED, "pass_malformed", PASSED)                             \
	X(PASS_NOT_SERVICE, "pass_not_service", PASSED)                         \
	X(PASS_STEERED_IN, "pass_steered_in", PASSED)                           \
	X(PASS_DECAPSULATED, "pass_decapsulated", PASSED)                       \
	X(PASS_FLOW_LOCAL, "pass_flow_local", PASSED)                           \
	X(PASS_LOCAL_SOCKET, "pass_local_socket", PASSED)                       \
	X(PASS_ORPHAN, "pass_orphan", PASSED)                                   \
	X(DROP_ORPHAN_GRACE, "drop_orphan_grace", DROPPED)                      \
	X(SYN_LOCAL_BELOW_T1, "syn_local_below_t1", KEPT)                       \
	X(SYN_LOCAL_NO_LOWER_PEER, "syn_local_no_lower_peer", KEPT)             \
	X(SYN_LOCAL_FAILSAFE, "syn_local_failsafe", KEPT)                       \
	X(SYN_FORWARD_LEAST, "syn_forward_least", FORWARDED)                    \
	X(SYN_FORWARD_WEIGHTED, "syn_forward_weighted", FORWARDED)              \
	X(TX_FLOW_FORWARD, "tx_flow_forward", SENT)                             \
	X(DROP_FORWARD_ERROR, "drop_forward_error", DROPPED)                    \
	X(TC_MSS_CLAMPED, "tc_mss_clamped", OTHER)                              \
	X(TX_SYN_COOKIE, "tx_syn_cookie", SENT)                                 \
	X(PASS_SYN_NO_COOKIE_KEY, "pass_syn_no_cookie_key", PASSED)             \
	X(DROP_HANDSHAKE_ACK, "drop_handshake_ack", DROPPED)                    \
	X(HTTP_LOCAL, "http_local", KEPT)                                       \
	X(HTTP_FORWARD, "http_forward", FORWARDED)                              \
	X(HTTP_NOT_HTTP, "http_not_http", OTHER)                                \
	X(HTTP_INCOMPLETE, "http_incomplete", OTHER)                            \
	X(TC_COOKIE_ASSIGNED, "tc_cookie_assigned", OTHER)                      \
	X(TC_COOKIE_INVALID, "tc_cookie_invalid", OTHER)                        \
	X(TC_COOKIE_ASSIGN_FAILED, "tc_cookie_assign_failed", OTHER)            \
	X(PASS_TUNNEL_REFUSED, "pass_tunnel_refused", PASSED)                   \
	X(PASS_SYN_BAD_OPTIONS, "pass_syn_bad_options", PASSED)                 \
	X(PASS_SYN_RESIZE_FAILED, "pass_syn_resize_failed", PASSED)             \
	X(DROP_SYN_COOKIE_ERROR, "drop_syn_cookie_error", DROPPED)              \
	/* ipip next hop (bpf/forward.bpf.h, lb_next_hop) */                    \
	X(DROP_FORWARD_NO_ROUTE, "drop_forward_no_route", DROPPED)              \
	X(DROP_FORWARD_NO_NEIGH, "drop_forward_no_neigh", DROPPED)              \
	X(DROP_FORWARD_FIB_DISABLED, "drop_forward_fib_disabled", DROPPED)      \
	X(IPIP_PEER_MAC, "ipip_peer_mac", OTHER)                                \
	X(IPIP_REDIRECT, "ipip_redirect", OTHER)                                \
	X(SYN_COOKIE_L4, "syn_cookie_l4", OTHER)                                \
	X(COOKIE_ACK_L4, "cookie_ack_l4", OTHER)                                \
	X(DROP_FENCED_NEIGH, "drop_fenced_neigh", DROPPED)                      \
	X(DROP_FENCED_ORPHAN, "drop_fenced_orphan", DROPPED)                    \
	X(TX_GRACE_PREVIOUS, "tx_grace_previous", SENT)                         \
	/* capacity (DESIGN.md section 2): every node at its high-water mark */ \
	X(SYN_LOCAL_OVERFLOW, "syn_local_overflow", KEPT)                       \
	X(DROP_SYN_REFUSED, "drop_syn_refused", DROPPED)                       \
	/* shared addresses (DESIGN.md section 5b, bpf/shared.bpf.h) */         \
	X(SHARED_LOCAL, "shared_local", PASSED)                                 \
	X(SHARED_PREVIOUS_LOCAL, "shared_previous_local", PASSED)               \
	X(SHARED_TO_OWNER, "shared_to_owner", SENT)                             \
	X(SHARED_SECOND_HOP, "shared_second_hop", SENT)                         \
	X(SHARED_CHAIN_DROP, "shared_chain_drop", DROPPED)                      \
	X(SHARED_NOT_OWNER, "shared_not_owner", DROPPED)                        \
	X(SHARED_NO_TABLE, "shared_no_table", DROPPED)

enum lb_counter {
#define LB_COUNTER_ENUM(name, text, kind) LB_C_##name,
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
	__u64 conns_forwarded; /* new connections given to the node (SYNs, http first requests) */
	__u64 packets_forwarded;
	__u64 bytes_forwarded;
};

#endif
