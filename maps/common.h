/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Types shared by the XDP/TC programs and the C++ userspace.
 * Only fixed-width kernel types; every padding byte is a named field so hash
 * keys have no holes. Changing a layout means a new pin name. */
#ifndef PEERLB_MAPS_COMMON_H
#define PEERLB_MAPS_COMMON_H

#include <linux/types.h>

/* Cluster size the data plane can hold; node slots are array indexes
 * (a power of two: node sets are bitmaps of LB_MAX_NODES / 64 words). */
#define LB_MAX_NODES 1024
/* Marks "this node" where a node slot is expected (flow value, decision). */
#define LB_NODE_LOCAL 0xffffffffu
/* A decision that drops the SYN (overflow = refuse); never in a flow. */
#define LB_NODE_REFUSE 0xfffffffeu

/* Loads are carried in basis points: 10000 = 100 %. */
#define LB_LOAD_FULL 10000u

#define LB_FAMILY_IPV4 4
#define LB_FAMILY_IPV6 6

/* An IPv4 or IPv6 address; IPv4 uses v4 and leaves the rest zero. */
union lb_addr {
	__be32 v4;
	__be32 v6[4];
};

/* Directory (under the pin root) that holds one interface's pinned objects
 * is the interface name; these are the object names in it. */
#define LB_PIN_XDP_LINK "xdp_link"
#define LB_PIN_XDP_PROG "xdp_prog"

#endif
