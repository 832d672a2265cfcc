/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Cluster SYN cookies as pure arithmetic: compiled into the XDP/TC programs
 * and into the C++ tests, like decision.h. No helpers, no maps.
 *
 * The cookie is the ISN of the SYN-ACK a node's XDP answers a SYN with:
 *
 *   bits 31..10  SipHash-2-4 (epoch key) of the flow key, the client's ISN
 *                and bits 9..0, top 22 bits
 *   bits  9..8   epoch slot (epoch % LB_COOKIE_SLOTS): which key made it
 *   bits  7..4   the client's window scale, LB_COOKIE_NO_WSCALE if none
 *   bit   3      the client sent timestamps
 *   bit   2      the client allows SACK
 *   bits  1..0   index of the client's MSS in lb_cookie_mss_value()
 *
 * Everything the node creating the socket needs is in the cookie and
 * covered by the hash, so no node keeps state for half-open connections. */
#ifndef PEERLB_BPF_COOKIE_H
#define PEERLB_BPF_COOKIE_H

#include "../maps/cookie.h"
#include "../maps/flow.h"

#define LB_COOKIE_HASH_MASK 0xfffffc00u
#define LB_COOKIE_NO_WSCALE 15
#define LB_COOKIE_MAX_WSCALE 14 /* RFC 7323 */

/* What the client's SYN offered (its options), as the cookie keeps it. */
struct lb_syn_options {
	__u16 mss;     /* the client's MSS option, 536 when absent */
	__u8 wscale;   /* 0..14, or LB_COOKIE_NO_WSCALE */
	__u8 sack_ok;
	__u8 ts_ok;
	__u8 pad[3];
	__u32 tsval;   /* the client's timestamp, echoed in the SYN-ACK */
};

/* Client MSS values a cookie can carry (those most seen: the minimum,
 * IPv6 minimum-MTU, common tunnels, Ethernet): the client's MSS rounded
 * down to one of them, and anything below 536 taken as 536 (as Linux's own
 * cookies do: no TCP peer may announce less). */
static inline __u16 lb_cookie_mss_value(__u32 index)
{
	switch (index & 3) {
	case 0:
		return 536;
	case 1:
		return 1220;
	case 2:
		return 1440;
	default:
		return 1460;
	}
}

static inline __u32 lb_cookie_mss_index(__u16 mss)
{
	if (mss >= 1460)
		return 3;
	if (mss >= 1440)
		return 2;
	if (mss >= 1220)
		return 1;
	return 0;
}

static inline __u32 lb_cookie_low_bits(__u32 slot, const struct lb_syn_options *o)
{
	__u32 wscale = o->wscale > LB_COOKIE_MAX_WSCALE ? LB_COOKIE_NO_WSCALE : o->wscale;

	return (slot & 3) << 8 | wscale << 4 | (o->ts_ok ? 1u : 0u) << 3 |
	       (o->sack_ok ? 1u : 0u) << 2 | lb_cookie_mss_index(o->mss);
}

/* The options a valid cookie's low bits stand for (tsval not included). */
static inline void lb_cookie_options(__u32 cookie, struct lb_syn_options *o)
{
	o->mss = lb_cookie_mss_value(cookie & 3);
	o->sack_ok = (cookie >> 2) & 1;
	o->ts_ok = (cookie >> 3) & 1;
	o->wscale = (cookie >> 4) & 15;
}

static inline __u32 lb_cookie_slot(__u32 cookie)
{
	return (cookie >> 8) & (LB_COOKIE_SLOTS - 1);
}

#define LB_ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

static inline void lb_sip_round(__u64 *v0, __u64 *v1, __u64 *v2, __u64 *v3)
{
	*v0 += *v1;
	*v1 = LB_ROTL64(*v1, 13);
	*v1 ^= *v0;
	*v0 = LB_ROTL64(*v0, 32);
	*v2 += *v3;
	*v3 = LB_ROTL64(*v3, 16);
	*v3 ^= *v2;
	*v0 += *v3;
	*v3 = LB_ROTL64(*v3, 21);
	*v3 ^= *v0;
	*v2 += *v1;
	*v1 = LB_ROTL64(*v1, 17);
	*v1 ^= *v2;
	*v2 = LB_ROTL64(*v2, 32);
}

#define LB_COOKIE_WORDS 6 /* the flow key (5 words) and ISN + low bits */
#ifdef __cplusplus
static_assert(sizeof(struct lb_flow_key) == 5 * sizeof(__u64), "the flow key is five words");
#else
_Static_assert(sizeof(struct lb_flow_key) == 5 * sizeof(__u64), "the flow key is five words");
#endif

/* SipHash-2-4 of LB_COOKIE_WORDS little-endian 64-bit words (48 bytes). */
static inline __u64 lb_siphash(__u64 k0, __u64 k1, const __u64 *m)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
	__u64 v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
	__u64 b = (__u64)(LB_COOKIE_WORDS * 8) << 56;
	int i;

	for (i = 0; i < LB_COOKIE_WORDS; i++) {
		v3 ^= m[i];
		lb_sip_round(&v0, &v1, &v2, &v3);
		lb_sip_round(&v0, &v1, &v2, &v3);
		v0 ^= m[i];
	}
	v3 ^= b;
	lb_sip_round(&v0, &v1, &v2, &v3);
	lb_sip_round(&v0, &v1, &v2, &v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (i = 0; i < 4; i++)
		lb_sip_round(&v0, &v1, &v2, &v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/* The message: the flow key's 40 bytes as they lie in memory (client
 * address, service address, ports, family, protocol; unused bytes zero),
 * then the client's ISN and the cookie's low bits. */
static inline __u32 lb_cookie_hash(const struct lb_cookie_key *k, const struct lb_flow_key *key,
				   __u32 client_isn, __u32 low_bits)
{
	__u64 m[LB_COOKIE_WORDS];

	__builtin_memcpy(m, key, sizeof(*key));
	m[5] = (__u64)client_isn | (__u64)low_bits << 32;
	return (__u32)(lb_siphash(k->k0, k->k1, m) >> 32);
}

static inline __u32 lb_cookie_make(const struct lb_cookie_key *k, const struct lb_flow_key *key,
				   __u32 client_isn, __u32 low_bits)
{
	return (lb_cookie_hash(k, key, client_isn, low_bits) & LB_COOKIE_HASH_MASK) |
	       (low_bits & ~LB_COOKIE_HASH_MASK);
}

/* 1 when `cookie` is what lb_cookie_make gave for this flow and ISN under
 * `k` (the key of the cookie's slot, which the caller checked is valid). */
static inline int lb_cookie_valid(const struct lb_cookie_key *k, const struct lb_flow_key *key,
				  __u32 client_isn, __u32 cookie)
{
	__u32 low = cookie & ~LB_COOKIE_HASH_MASK;

	return (lb_cookie_hash(k, key, client_isn, low) & LB_COOKIE_HASH_MASK) ==
	       (cookie & LB_COOKIE_HASH_MASK);
}

#endif
