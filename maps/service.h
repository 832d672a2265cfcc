/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* Services: (address, TCP port) pairs the data plane balances. */
#ifndef PEERLB_MAPS_SERVICE_H
#define PEERLB_MAPS_SERVICE_H

#include "common.h"

#define LB_SERVICES_MAP "lb_services"
#define LB_MAX_SERVICES 1024

enum lb_service_mode {
	LB_MODE_L4 = 0,   /* decide at the SYN */
	LB_MODE_HTTP = 1, /* answer the SYN with a cluster cookie, decide at
			   * the first request (DESIGN.md section 4) */
};

struct lb_service_key {
	union lb_addr addr;
	__be16 port;
	__u8 family;
	__u8 pad;
};

struct lb_service {
	__u32 mode; /* enum lb_service_mode */
	__u32 id;   /* for counters and rules */
	__u32 flags; /* enum lb_service_flags (maps/shared.h) */
};

#endif
