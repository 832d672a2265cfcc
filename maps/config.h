/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Run-time settings of the data plane: one entry, written by the CLI/agent. */
#ifndef PEERLB_MAPS_CONFIG_H
#define PEERLB_MAPS_CONFIG_H

#include "common.h"

#define LB_CONFIG_MAP "lb_config"

enum lb_pick {
	LB_PICK_WEIGHTED = 0, /* spread in proportion to spare capacity */
	LB_PICK_LEAST = 1,    /* least-loaded peer (WO 99/18534) */
};

/* When an l4 service's SYNs are answered with cluster SYN cookies instead
 * of being decided at once (DESIGN.md section 5: a flood of spoofed SYNs
 * must create no state). Decided at the cookie's ACK, the flow goes
 * straight to the established table. */
enum lb_syn_cookies {
	LB_SYN_COOKIES_AUTO = 0,   /* while this CPU's SYN rate is above syn_cookie_rate */
	LB_SYN_COOKIES_ALWAYS = 1,
	LB_SYN_COOKIES_OFF = 2,
};

/* What a node at or above high_water does with a new connection when
 * every peer is too. */
enum lb_overflow {
	LB_OVERFLOW_KEEP = 0,   /* keep it */
	LB_OVERFLOW_REFUSE = 1, /* drop the SYN: the client retries later */
};

enum lb_forward {
	LB_FORWARD_L2 = 0,   /* rewrite MACs, peers share a segment */
	LB_FORWARD_IPIP = 1, /* outer IPv4/IPv6 header node to node */
};

/* lb_config.choices unless configured otherwise. */
#define LB_CHOICES_DEFAULT 2

struct lb_config {
	__u32 accept_below_bp;   /* T1: keep while local load is below */
	__u32 min_difference_bp; /* T2: a peer must be this much lower */
	__u32 pick;              /* enum lb_pick */
	__u32 forward;           /* enum lb_forward */
	/* Load one connection adds to this node (100 % / capacity), for its
	 * own connections decided since its last load update (load sources
	 * other than inflight). */
	__u32 conn_cost_bp;
	__u32 self_slot;         /* this node's slot in lb_nodes */
	__u32 node_slots;        /* slots in use: lb_nodes[0 .. node_slots) */
	__u32 mtu;               /* of the interface, for the MSS clamp */
	__u64 peer_stale_ns;     /* older peer information: not a candidate */
	__u64 self_stale_ns;     /* older own information: keep everything */
	/* "http" mode (DESIGN.md section 4). */
	__u32 cookie_slot;       /* epoch % LB_COOKIE_SLOTS: the key SYN-ACKs use */
	__u32 http_wscale;       /* the window scale every node announces */
	__u32 uri_rules;         /* rules in use: lb_uri_rules_v2[0 .. uri_rules) */
	__u32 syn_cookies;       /* enum lb_syn_cookies, for l4 services */
	__u32 syn_cookie_rate;   /* new l4 connections per second and CPU, beyond
				  * which (auto) SYNs get cookies */
	/* Power of d choices: the peers a decision compares, drawn from its
	 * candidate list (maps/candidates.h), 1 .. LB_MAX_CHOICES
	 * (bpf/decision.h); 0: every listed peer. (Was padding: 0 in a
	 * config written before.) */
	__u32 choices;
	/* Own information older than this (the agent is gone for as long as
	 * its peers take to call it dead): the node is fenced, it stops
	 * answering ARP/ND for service addresses (a peer holds them now). */
	__u64 fence_after_ns;
	/* load.source = "inflight": this node's load is lb_inflight over this
	 * many connections (100 %); 0: the agent's measure (lb_nodes). */
	__u32 inflight_capacity;
	__u32 high_water_bp;     /* a node at or above is never a candidate */
	__u32 overflow;          /* enum lb_overflow */
	__u32 netns_ino;         /* the network namespace whose sockets count */
	/* Shared service addresses (maps/shared.h, DESIGN.md section 5b). */
	__u32 shared_buckets;    /* buckets in lb_buckets; 0: no shared address */
	__u32 shared_hash;       /* enum lb_shared_hash */
	__u32 shared_delivery;   /* enum lb_shared_delivery */
	__u32 shared_pad;
};

#endif
