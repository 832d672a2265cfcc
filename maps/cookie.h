/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Cluster SYN cookie keys of the "http" mode (DESIGN.md section 4). Every
 * node derives the same key for an epoch from the cluster key, so any node
 * validates a cookie another one made. */
#ifndef PEERLB_MAPS_COOKIE_H
#define PEERLB_MAPS_COOKIE_H

#include "common.h"

#define LB_COOKIE_KEYS_MAP "lb_cookie_keys"
/* Slots indexed by epoch % 4: the agent keeps epoch - 1, epoch and epoch + 1
 * valid (clock skew between nodes) and clears epoch + 2, so a cookie lives
 * one to two epochs. */
#define LB_COOKIE_SLOTS 4

struct lb_cookie_key {
	__u64 k0; /* SipHash-2-4 key, little-endian halves */
	__u64 k1;
	__u64 epoch; /* unix seconds / lb_config.cookie_epoch_s */
	/* CLOCK_MONOTONIC ns (bpf_ktime_get_ns) from which the data plane
	 * neither makes nor accepts a cookie with this key, whatever the agent
	 * does (a key not rotated because the agent is gone dies anyway). */
	__u64 expires_ns;
	__u32 valid;
	__u32 pad;
};

#endif
