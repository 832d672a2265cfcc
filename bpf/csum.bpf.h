/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Internet checksums (RFC 1071) of the headers peerlb writes: the outer IPv4
 * header of an encapsulated packet, the cookie SYN-ACK's IP and TCP headers. */
#ifndef PEERLB_BPF_CSUM_H
#define PEERLB_BPF_CSUM_H

#include <linux/ip.h>
#include <linux/types.h>

static __always_inline __u16 lb_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* An IPv4 header without options, its check field 0. */
static __always_inline __u16 lb_ipv4_csum(const struct iphdr *ip)
{
	const __u16 *word = (const __u16 *)ip;
	__u64 sum = 0;
	int i;

	for (i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += word[i];
	return lb_csum_fold(sum);
}

/* Pseudo headers of the TCP checksum (RFC 9293 3.1, RFC 8200 8.1). */
struct lb_pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct lb_pseudo6 {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 len;
	__u8 zero[3];
	__u8 proto;
};

#endif
