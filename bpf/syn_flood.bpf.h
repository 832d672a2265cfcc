/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* SYN floods on l4 services (DESIGN.md section 5): no spoofed packet may
 * create state that evicts a real connection's. While this CPU sees more
 * SYNs than lb_config.syn_cookie_rate, a SYN is answered with a cluster SYN
 * cookie (syncookie.bpf.h, as in http mode) instead of being decided and
 * recorded in the half-open table; the connection is decided at its
 * cookie's ACK, which only a client that got the SYN-ACK can send, and its
 * flow goes straight to the established table. The serving node's TC
 * ingress creates the connection from the cookie, as in http mode. Below
 * the rate nothing changes: the SYN is decided at once and the server's
 * own kernel answers it. */
#ifndef PEERLB_BPF_SYN_FLOOD_H
#define PEERLB_BPF_SYN_FLOOD_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "decide.bpf.h"
#include "maps.bpf.h"
#include "parse.bpf.h"
#include "syncookie.bpf.h"

/* Counts this SYN; 1 when it is to be answered with a cookie. */
static __always_inline int lb_syn_cookies_now(const struct lb_config *cfg, __u64 now)
{
	struct lb_syn_meter *m;
	__u32 zero = 0, per_window;

	if (cfg->syn_cookies == LB_SYN_COOKIES_ALWAYS)
		return 1;
	if (cfg->syn_cookies != LB_SYN_COOKIES_AUTO)
		return 0;
	m = bpf_map_lookup_elem(&lb_syn_meter, &zero);
	if (!m)
		return 0;
	if (now - m->window_start_ns >= LB_SYN_WINDOW_NS) {
		m->window_start_ns = now;
		m->syns = 0;
	}
	m->syns++;
	per_window = cfg->syn_cookie_rate / (1000000000ull / LB_SYN_WINDOW_NS);
	if (m->syns > per_window)
		m->cookies_until_ns = now + LB_SYN_COOKIE_HOLD_NS;
	return now < m->cookies_until_ns;
}

/* Whether this CPU answered SYNs with cookies lately (LB_SYN_COOKIE_RECENT_NS):
 * only then may a handshake ACK that hits a half-open entry carry one of
 * our cookies instead (a SYN retransmitted as the flood ended). Checking
 * always would misroute one connection in 2^22 that merely looks like one. */
static __always_inline int lb_syn_cookies_lately(const struct lb_config *cfg, __u64 now)
{
	struct lb_syn_meter *m;
	__u32 zero = 0;

	if (cfg->syn_cookies != LB_SYN_COOKIES_AUTO)
		return cfg->syn_cookies == LB_SYN_COOKIES_ALWAYS;
	m = bpf_map_lookup_elem(&lb_syn_meter, &zero);
	return m && m->cookies_until_ns && now < m->cookies_until_ns + LB_SYN_COOKIE_RECENT_NS;
}

/* A segment with no flow entry and no local socket to an l4 service: if it
 * completes a cookie handshake, the connection is decided now (by load, as
 * its SYN would have been), recorded as established and kept or forwarded.
 * Returns -1 when it carries no cookie of ours (an orphan). Global: the
 * cookie's hash stays out of the entry point. */
LB_GLOBAL int lb_l4_cookie_ack(struct xdp_md *ctx, const struct lb_pkt *p)
{
	struct lb_decision d = { LB_NODE_LOCAL, LB_REASON_FAILSAFE };
	struct lb_config *cfg;
	struct lb_flow flow;
	__u32 cookie, zero = 0;
	__u64 now;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!p || !cfg || cfg->syn_cookies == LB_SYN_COOKIES_OFF)
		return -1;
	now = bpf_ktime_get_ns();
	if (!lb_cookie_of_segment(p, now, &cookie))
		return -1;
	lb_count(LB_C_COOKIE_ACK_L4, p->len);
	lb_decide_by_load(cfg, now, &d);
	flow = (struct lb_flow){
		.node = d.node,
		.reason = d.reason,
		.created_ns = now,
	};
	return lb_commit(ctx, p, &flow, lb_syn_counter(d.reason), LB_COMMIT_ESTABLISHED);
}

#endif
