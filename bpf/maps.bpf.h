/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Map definitions of the peerlb data plane. Pinned maps are shared by the
 * XDP and TC programs and by every attach/agent run on the interface. */
#ifndef PEERLB_BPF_MAPS_H
#define PEERLB_BPF_MAPS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "decision.h"
#include "../maps/candidates.h"
#include "../maps/config.h"
#include "../maps/cookie.h"
#include "../maps/flow.h"
#include "../maps/grace.h"
#include "../maps/load.h"
#include "../maps/node.h"
#include "../maps/pin.h"
#include "../maps/service.h"
#include "../maps/shared.h"
#include "../maps/stats.h"
#include "../maps/uri.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_NODES);
	__type(key, __u32);
	__type(value, struct lb_node);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_NODES);
	__type(key, struct lb_node_addr_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_node_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_NODES);
	__type(key, struct lb_node_mac_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_node_macs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_BUCKETS);
	__type(key, __u32);
	__type(value, struct lb_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_INFLIGHT_ENTRIES);
	__type(key, __u32);
	__type(value, struct lb_inflight);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_NODES);
	__type(key, __u32);
	__type(value, struct lb_handed);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_handed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_FLOWS);
	__type(key, struct lb_flow_key);
	__type(value, struct lb_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_FLOWS_NEW);
	__type(key, struct lb_flow_key);
	__type(value, struct lb_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_flows_new SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_GRACE);
	__type(key, struct lb_grace_key);
	__type(value, struct lb_grace);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_grace SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_C_MAX);
	__type(key, __u32);
	__type(value, struct lb_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_NODES);
	__type(key, __u32);
	__type(value, struct lb_node_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_node_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_COOKIE_SLOTS);
	__type(key, __u32);
	__type(value, struct lb_cookie_key);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_cookie_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_URI_RULES);
	__type(key, __u32);
	__type(value, struct lb_uri_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_uri_rules_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_CANDIDATE_LISTS);
	__type(key, __u32);
	__type(value, struct lb_candidates);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_candidates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_URI_RULES);
	__type(key, __u32);
	__type(value, struct lb_rule_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_PINS);
	__type(key, struct lb_pin_key);
	__type(value, struct lb_pin);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_pins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_pin_events SEC(".maps");

/* Per-CPU scratch for the SYN decision: too large for the 512-byte stack.
 * The peers compared, in the order of their list: peers[k] is the view of
 * node slot slots[k]. */
struct lb_scratch {
	struct lb_peer_view peers[LB_MAX_NODES];
	__u32 slots[LB_MAX_NODES];
	__u32 random[LB_MAX_CHOICES]; /* one draw per sampled peer */
	__u32 drawn[LB_MAX_CHOICES];  /* the list indexes sampled, ascending */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_scratch);
} lb_scratch SEC(".maps");

/* Not pinned: a meter of this program's own SYNs, fresh at each load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_syn_meter);
} lb_syn_meter SEC(".maps");

/* Per-CPU scratch for the ipip next-hop lookup (forward.bpf.h, lb_route):
 * its 64 bytes do not fit on the stack of the deepest call chain
 * (xdp_peerlb, lb_http_first_segment, lb_commit, lb_forward: the
 * verifier's 512-byte limit is for the frames of a chain together). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_fib_lookup);
} lb_fib_scratch SEC(".maps");

/* The ipip next hop towards a node, as the routing table gave it
 * (forward.bpf.h, lb_next_hop), reused for LB_NEXT_HOP_TTL_NS. */
struct lb_next_hop {
	union lb_addr peer; /* the node address it is for */
	__u64 checked_ns;   /* bpf_ktime_get_ns() of the lookup */
	__u32 ifindex;      /* the route's interface */
	__u16 mtu;          /* the route's MTU */
	__u8 family;        /* of peer; 0: nothing cached */
	__u8 peer_mac;      /* 1: no neighbour entry, the on-link peer's own MAC */
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
};

/* Per-CPU (no torn entries between CPUs), by node slot; not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_NODES);
	__type(key, __u32);
	__type(value, struct lb_next_hop);
} lb_next_hops SEC(".maps");

static __always_inline void lb_count(__u32 counter, __u64 bytes)
{
	struct lb_counter_value *c = bpf_map_lookup_elem(&lb_stats, &counter);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

#endif
