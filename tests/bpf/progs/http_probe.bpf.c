// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* Test probe for bpf/http.bpf.h, run by tests/bpf/http_probe_test.cpp through
 * BPF_PROG_TEST_RUN: the frame is 14 filler bytes (an Ethernet header's
 * room) and then the payload. It reads the request with lb_http_read, tries
 * every rule of probe_rules with lb_uri_rule_matches, and leaves what it got
 * in the globals below (the skeleton maps them). Loading it proves the
 * verifier takes the drivers. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "../../../bpf/http.bpf.h"

#define PROBE_PAYLOAD_OFF 14

/* Results, of shared types only, so the test needs no copy of a struct. */
struct lb_http_request probe_req;
__s32 probe_read_ret;    /* lb_http_read's return */
__u32 probe_entry_bits;  /* bit i: rule i's host and entry pattern match */
__u32 probe_exit_bits;   /* bit i: rule i's host and exit pattern match */
__u32 probe_first_entry; /* the first rule whose entry matches, or ~0 */
__u32 probe_runs;        /* completed runs: the test sees that its run was one */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_URI_RULES);
	__type(key, __u32);
	__type(value, struct lb_uri_rule);
} probe_rules SEC(".maps");

struct probe_rule_loop {
	struct lb_http_request req;
	__u32 entry_bits;
	__u32 exit_bits;
	__u32 first_entry;
	__u32 pad;
};

static long probe_rule_cb(__u32 i, void *arg)
{
	struct probe_rule_loop *l = arg;
	struct lb_uri_rule *rule;
	__u32 key = i;

	rule = bpf_map_lookup_elem(&probe_rules, &key);
	if (!rule)
		return 1;
	if (lb_uri_rule_matches(rule, LB_URI_ENTRY, &l->req)) {
		l->entry_bits |= 1u << (i & 31);
		if (l->first_entry == ~0u)
			l->first_entry = i;
	}
	if (lb_uri_rule_matches(rule, LB_URI_EXIT, &l->req))
		l->exit_bits |= 1u << (i & 31);
	return 0;
}

SEC("xdp")
int http_probe(struct xdp_md *ctx)
{
	struct probe_rule_loop l = { .first_entry = ~0u };
	__u32 frame_len = ctx->data_end - ctx->data;
	__s32 ret;

	if (frame_len < PROBE_PAYLOAD_OFF)
		return XDP_ABORTED;
	ret = lb_http_read(ctx, PROBE_PAYLOAD_OFF, frame_len - PROBE_PAYLOAD_OFF, &l.req);
	bpf_loop(LB_MAX_URI_RULES, probe_rule_cb, &l, 0);
	probe_req = l.req;
	probe_read_ret = ret;
	probe_entry_bits = l.entry_bits;
	probe_exit_bits = l.exit_bits;
	probe_first_entry = l.first_entry;
	probe_runs++;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
