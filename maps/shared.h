/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Shared service addresses (DESIGN.md section 5b): every node serves them;
 * the client address space is cut into buckets, each owned by one node, and
 * packets of a bucket that moved follow a chain of its previous owners. */
#ifndef PEERLB_MAPS_SHARED_H
#define PEERLB_MAPS_SHARED_H

#include "common.h"

/* lb_buckets: array indexed by bucket (0 .. lb_config.shared_buckets), the
 * same table on every node, written by the agent in node slots of its own
 * lb_nodes. */
#define LB_BUCKETS_MAP "lb_buckets"
#define LB_MAX_BUCKETS 65536
/* No node in this place (owner: no table yet; prev: nobody). */
#define LB_BUCKET_NONE 0xffffu

struct lb_bucket {
	__u16 owner;          /* node slot */
	__u16 prev[2];        /* previous owners, most recent first, while
			       * chain_until_ns lasts */
	__u16 pad;
	__u64 chain_until_ns; /* bpf_ktime_get_ns after which prev[] is over */
};

enum lb_shared_delivery {
	LB_DELIVERY_ECMP = 0,  /* a router spreads flows: forward to the owner */
	LB_DELIVERY_FLOOD = 1, /* every node gets every packet: keep own share */
};

enum lb_shared_hash {
	LB_SHARED_HASH_ADDRESS = 0,      /* client address */
	LB_SHARED_HASH_ADDRESS_PORT = 1, /* client address and port */
};

/* lb_service.flags */
enum lb_service_flags {
	LB_SERVICE_SHARED = 1 << 0, /* a shared address: buckets decide */
};

/* The bucket of a client, the same in the data plane and the CLI: a
 * murmur3-style mix of the address as stored (network byte order words
 * loaded as they lie in memory, little-endian on every target) and, with
 * LB_SHARED_HASH_ADDRESS_PORT, the port as stored. `buckets` >= 1. */
static inline __u32 lb_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static inline __u32 lb_bucket_of(const union lb_addr *client, __u8 family, __be16 port,
				 __u32 hash, __u32 buckets)
{
	__u32 h = 0x9747b28cu ^ family;

	if (family == LB_FAMILY_IPV4) {
		h = lb_mix32(h ^ client->v4);
	} else {
		h = lb_mix32(h ^ client->v6[0]);
		h = lb_mix32(h ^ client->v6[1]);
		h = lb_mix32(h ^ client->v6[2]);
		h = lb_mix32(h ^ client->v6[3]);
	}
	if (hash == LB_SHARED_HASH_ADDRESS_PORT)
		h = lb_mix32(h ^ (__u32)port);
	return h % buckets;
}

/* The mark of a packet sent along a bucket's chain, in the outer header;
 * 0 on every other tunnel packet. It says how many hops the packet has
 * taken (1..3) and which nodes it passed before the one that sent it (the
 * first hop-1 of two slots): the hops stay bounded, and the packet never
 * comes back to a node it has passed, whatever the nodes' tables say.
 * 22 bits, so that a slot of LB_MAX_NODES fits: the hop count in bits
 * 20-21, the first node passed in bits 10-19, the second in bits 0-9. In
 * the outer header, bits 0-15 are the IPv4 id / the low 16 bits of the
 * IPv6 flow label, bits 16-21 the DSCP of the IPv4 TOS / IPv6 traffic
 * class (ECN stays 0: a router may set it on the way). */
#define LB_HOP_MAX 3
#define LB_HOP_SLOT_BITS 10
#define LB_HOP_SLOT_MASK ((1u << LB_HOP_SLOT_BITS) - 1)
#define LB_HOP_COUNT_SHIFT (2 * LB_HOP_SLOT_BITS)

/* `passed_a`, `passed_b`: the nodes passed (LB_BUCKET_NONE past hop - 1). */
static inline __u32 lb_hop_mark(__u32 hop, __u32 passed_a, __u32 passed_b)
{
	__u32 a = hop >= 2 ? passed_a & LB_HOP_SLOT_MASK : 0;
	__u32 b = hop >= 3 ? passed_b & LB_HOP_SLOT_MASK : 0;

	return (hop & 3) << LB_HOP_COUNT_SHIFT | a << LB_HOP_SLOT_BITS | b;
}

static inline __u32 lb_hop_count(__u32 mark)
{
	return (mark >> LB_HOP_COUNT_SHIFT) & 3;
}

/* The slot of the first (which = 0) or second (1) node passed, or
 * LB_BUCKET_NONE. */
static inline __u32 lb_hop_passed(__u32 mark, int which)
{
	if (lb_hop_count(mark) < (__u32)which + 2)
		return LB_BUCKET_NONE;
	return which ? mark & LB_HOP_SLOT_MASK : (mark >> LB_HOP_SLOT_BITS) & LB_HOP_SLOT_MASK;
}

/* The mark's two parts in the outer header, and back. */
static inline __u16 lb_hop_mark_low(__u32 mark)
{
	return (__u16)mark;
}

static inline __u8 lb_hop_mark_dscp(__u32 mark)
{
	return (__u8)((mark >> 16) & 0x3f);
}

static inline __u32 lb_hop_mark_from(__u16 low, __u8 dscp)
{
	return (__u32)(dscp & 0x3f) << 16 | low;
}

#endif
