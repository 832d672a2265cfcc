/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* XDP drivers of http.h: the request in a first data segment, and the URI
 * rules' patterns against it. Each byte, each match step is one bpf_loop()
 * callback: the verifier checks the step once instead of 512 (or 4096)
 * unrolled copies. */
#ifndef PEERLB_BPF_HTTP_BPF_H
#define PEERLB_BPF_HTTP_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http.h"
#include "parse.bpf.h" /* lb_barrier_var */

/* Per-CPU: too large for the 512-byte stack. lb_http_read fills it and
 * lb_uri_rule_matches reads it, in the same program run (XDP runs with
 * migration disabled, so nothing else on this CPU writes it in between).
 * The parser and glob states live here too, not on the stack: the verifier
 * does not track what map values hold, so it checks each step once for every
 * state. On the stack it knew them as constants, marked them precise at each
 * switch, and walked the callback once per reachable state (168k
 * instructions for the parser alone). */
struct lb_http_scratch {
	__u8 data[LB_HTTP_SCAN];     /* the segment's first bytes */
	__u8 path[LB_HTTP_PATH_MAX]; /* the request's path, for lb_glob_step */
	struct lb_http_parser parser;
	struct lb_glob glob;
	__u32 text_len;              /* of path, at most LB_HTTP_PATH_MAX */
	__u32 pat_len;
	__u32 glob_result;
	__u32 host_bad;              /* a byte of the host did not fit */
	/* The caller's result may live here too (lb_http_first_segment): the
	 * verifier then knows nothing of its values, and the ways the parse
	 * ended do not each walk the caller's code again. */
	struct lb_http_request req;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_http_scratch);
} lb_http_scratch SEC(".maps");

static long lb_http_feed_cb(__u32 i, void *arg)
{
	struct lb_http_scratch *s = *(struct lb_http_scratch **)arg;

	/* i < len <= LB_HTTP_SCAN, but the verifier only knows it as a __u32 */
	return lb_http_feed(&s->parser, s->data[i & (LB_HTTP_SCAN - 1)]) != LB_HTTP_MORE;
}

/* Reads the request in the payload_len bytes at payload_off (the TCP
 * payload) into *out, and keeps its first bytes and path in the scratch for
 * lb_uri_rule_matches. Returns 0, or -1 when the bytes could not be read
 * (offsets beyond the packet, no scratch): *out then says NOT_HTTP. */
static __always_inline int lb_http_read(struct xdp_md *ctx, __u32 payload_off,
					__u32 payload_len, struct lb_http_request *out)
{
	struct lb_http_scratch *s;
	__u32 zero = 0, len, path_len;

	__builtin_memset(out, 0, sizeof(*out));
	out->status = LB_HTTP_NOT_HTTP; /* until read */
	s = bpf_map_lookup_elem(&lb_http_scratch, &zero);
	if (!s)
		return -1;
	lb_http_init(&s->parser);

	len = payload_len < LB_HTTP_SCAN ? payload_len : LB_HTTP_SCAN;
	if (len > 0) {
		/* The check again, behind a barrier: inlined into xdp_peerlb,
		 * the register passed did not carry the checks above and the
		 * verifier said "R4 invalid zero-sized read: u64=[0,511]". */
		lb_barrier_var(len);
		if (len == 0 || len > LB_HTTP_SCAN)
			return -1;
		if (bpf_xdp_load_bytes(ctx, payload_off, s->data, len))
			return -1;
		bpf_loop(len, lb_http_feed_cb, &s, 0);
	}
	lb_http_finish(&s->parser, out);

	/* The path again, from the packet, to the start of its own buffer:
	 * lb_glob_step indexes it from 0 with a mask. */
	path_len = out->path_len < LB_HTTP_PATH_MAX ? out->path_len : LB_HTTP_PATH_MAX;
	if (out->status != LB_HTTP_COMPLETE || path_len == 0)
		return 0;
	lb_barrier_var(path_len); /* as for len above */
	if (path_len == 0 || path_len > LB_HTTP_PATH_MAX ||
	    bpf_xdp_load_bytes(ctx, payload_off + out->path_off, s->path, path_len)) {
		__builtin_memset(out, 0, sizeof(*out));
		out->status = LB_HTTP_NOT_HTTP;
		return -1;
	}
	return 0;
}

/* Pointers stay on the stack: the verifier refuses them in map values. */
struct lb_http_rule_loop {
	struct lb_http_scratch *s;
	const struct lb_uri_rule *rule;
	const __u8 *pat; /* the rule's pattern */
	__u32 host_off;
	__u32 pad;
};

static long lb_http_host_cb(__u32 i, void *arg)
{
	struct lb_http_rule_loop *l = arg;
	__u8 c = l->s->data[(l->host_off + i) & (LB_HTTP_SCAN - 1)];

	if (lb_http_host_byte_ok(l->rule->host, l->rule->host_len, i, c))
		return 0;
	l->s->host_bad = 1;
	return 1;
}

static long lb_glob_cb(__u32 i, void *arg)
{
	struct lb_http_rule_loop *l = arg;
	struct lb_http_scratch *s = l->s;

	s->glob_result = lb_glob_step(&s->glob, s->path, s->text_len, l->pat, s->pat_len);
	return s->glob_result != LB_GLOB_MORE;
}

/* Whether the request that lb_http_read just read matches the rule's host
 * and its pattern for `which` (enum lb_uri_which): http.h's
 * lb_http_rule_matches, with bpf_loop(). */
static __always_inline int lb_uri_rule_matches(const struct lb_uri_rule *rule, __u32 which,
					       const struct lb_http_request *req)
{
	struct lb_http_rule_loop l;
	struct lb_http_scratch *s;
	__u32 zero = 0, glob;
	int pat_len;

	if (req->status != LB_HTTP_COMPLETE)
		return 0;
	s = bpf_map_lookup_elem(&lb_http_scratch, &zero);
	if (!s)
		return 0;
	pat_len = lb_http_rule_pattern(rule, which, &glob);
	if (pat_len < 0)
		return 0;
	l.s = s;
	l.rule = rule;
	l.pat = which == LB_URI_EXIT ? rule->exit_pattern : rule->pattern;
	l.host_off = req->host_off;
	l.pad = 0;

	/* lb_http_host_matches */
	if (rule->host_len > 0) {
		if (!lb_http_host_len_ok(rule->host_len, req->host_len))
			return 0;
		s->host_bad = 0;
		bpf_loop(req->host_len, lb_http_host_cb, &l, 0);
		if (s->host_bad)
			return 0;
	}

	lb_glob_init(&s->glob, glob);
	s->text_len = req->path_len < LB_HTTP_PATH_MAX ? req->path_len : LB_HTTP_PATH_MAX;
	s->pat_len = (__u32)pat_len;
	s->glob_result = LB_GLOB_NOMATCH;
	/* One more than the steps allowed: the last call says NOMATCH. */
	bpf_loop(LB_GLOB_MAX_STEPS + 1, lb_glob_cb, &l, 0);
	return s->glob_result == LB_GLOB_MATCH;
}

#endif
