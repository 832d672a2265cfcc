// The SYN decision arithmetic of bpf/decision.h, the same code the XDP
// program runs.
#include <gtest/gtest.h>

extern "C" {
#include "bpf/decision.h"
}

TEST(Decision, KeepsBelowT1)
{
    lb_config cfg{};
    cfg.accept_below_bp = 5000;
    cfg.min_difference_bp = 2000;
    uint32_t peers[LB_MAX_NODES];
    std::fill(std::begin(peers), std::end(peers), LB_LOAD_UNUSABLE);
    peers[1] = 0;
    lb_decision d = lb_decide(&cfg, 4999, peers, 2, 0);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_BELOW_T1);
}
