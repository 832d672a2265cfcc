// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* Passes every packet. Test topologies attach it to the far end of a veth:
 * XDP_TX frames only reach a veth peer that runs an XDP program (DESIGN 7). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
