/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* A segment's TCP options: one walk for every program that reads them (the
 * cookie SYN-ACK and its check in syncookie.bpf.h, the MSS clamp). */
#ifndef PEERLB_BPF_TCP_OPTIONS_H
#define PEERLB_BPF_TCP_OPTIONS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "cookie.h"
#include "parse.bpf.h"

/* Option kinds and lengths (include/net/tcp.h is not UAPI). */
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_MSS 2
#define TCPOLEN_MSS 4
#define TCPOPT_WINDOW 3
#define TCPOPT_SACK_PERM 4
#define TCPOPT_TIMESTAMP 8
#define TCPOLEN_TIMESTAMP 10

#define LB_DEFAULT_CLIENT_MSS 536 /* RFC 9293: no MSS option */

/* A segment's TCP options, copied out of the packet and walked by
 * bpf_loop() (the walk over packet pointers exceeds the verifier budget). */
struct lb_opt_walk {
	__u8 opts[40];
	__u32 len;
	__u32 pos;
	__u16 mss;
	__u8 wscale; /* LB_COOKIE_NO_WSCALE: absent */
	__u8 sack_ok;
	__u8 ts_ok;
	__u8 pad[3];
	__u32 tsval;
	__u32 tsecr;
	__u32 mss_at; /* offset of the (first) MSS option in opts, or ~0 */
};

static __always_inline __u32 lb_load_be32(const __u8 *b)
{
	return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

static long lb_opt_cb(__u32 i, void *arg)
{
	struct lb_opt_walk *w = arg;
	__u32 pos = w->pos;
	__u8 kind, len;

	if (pos >= w->len || pos >= sizeof(w->opts) - 1)
		return 1;
	kind = w->opts[pos];
	if (kind == TCPOPT_EOL)
		return 1;
	if (kind == TCPOPT_NOP) {
		w->pos = pos + 1;
		return 0;
	}
	len = w->opts[pos + 1];
	if (len < 2 || pos + len > w->len)
		return 1; /* malformed: what was read so far stands */
	if (kind == TCPOPT_MSS && len == TCPOLEN_MSS && pos + 3 < sizeof(w->opts)) {
		/* The value of the last one counts, the clamp rewrites the first. */
		w->mss = (__u16)(w->opts[pos + 2] << 8 | w->opts[pos + 3]);
		if (w->mss_at == ~0u)
			w->mss_at = pos;
	}
	else if (kind == TCPOPT_WINDOW && len == 3 && pos + 2 < sizeof(w->opts))
		w->wscale = w->opts[pos + 2] > LB_COOKIE_MAX_WSCALE ? LB_COOKIE_MAX_WSCALE
								   : w->opts[pos + 2];
	else if (kind == TCPOPT_SACK_PERM && len == 2)
		w->sack_ok = 1;
	else if (kind == TCPOPT_TIMESTAMP && len == TCPOLEN_TIMESTAMP &&
		 pos + 9 < sizeof(w->opts)) {
		w->ts_ok = 1;
		w->tsval = lb_load_be32(&w->opts[pos + 2]);
		w->tsecr = lb_load_be32(&w->opts[pos + 6]);
	}
	w->pos = pos + len;
	return 0;
}

static __always_inline void lb_opt_walk_init(struct lb_opt_walk *w)
{
	__builtin_memset(w, 0, sizeof(*w));
	w->mss = LB_DEFAULT_CLIENT_MSS;
	w->wscale = LB_COOKIE_NO_WSCALE;
	w->mss_at = ~0u;
}

/* Reads and walks the options of p's segment; ctx is the program's
 * context, an xdp_md (skb 0) or a __sk_buff (skb 1; a constant at every
 * call, so each program keeps only its own helper). 0 when the options
 * could be read (none is fine). */
static __always_inline int lb_opt_walk(void *ctx, int skb, const struct lb_pkt *p,
				       struct lb_opt_walk *w)
{
	__u32 off = p->l4_off + sizeof(struct tcphdr);
	__u32 len = p->payload_off - off; /* wraps to a huge value if inconsistent */
	long err;

	lb_opt_walk_init(w);
	/* The barrier keeps clang from fusing the two bounds checks into one
	 * "len - 1 > 39" on a copy, which leaves the verifier with "invalid
	 * zero-sized read" on the load below. */
	if (len > sizeof(w->opts))
		return -1;
	lb_barrier_var(len);
	if (len == 0)
		return 0;
	w->len = len;
	err = skb ? bpf_skb_load_bytes(ctx, off, w->opts, len)
		  : bpf_xdp_load_bytes(ctx, off, w->opts, len);
	if (err)
		return -1;
	bpf_loop(sizeof(w->opts), lb_opt_cb, w, 0);
	return 0;
}

#endif
