// Extra heartbeats (load jumps) spaced by the cluster's size
// (userspace/agent/heartbeat_rate.h).
#include "userspace/agent/heartbeat_rate.h"

#include <gtest/gtest.h>

namespace peerlb {
namespace {

constexpr uint64_t kTick = 10'000'000;

TEST(ExtraHeartbeatGap, SmallClustersKeepTheTick)
{
    EXPECT_EQ(extra_heartbeat_gap_ns(0, kTick), kTick);
    EXPECT_EQ(extra_heartbeat_gap_ns(2, kTick), kTick);
    EXPECT_EQ(extra_heartbeat_gap_ns(20, kTick), kTick);
}

// However large the cluster, the extra heartbeats all peers send at their
// fastest reach a node at most kExtraHeartbeatBudget times a second.
TEST(ExtraHeartbeatGap, TheFanInOfExtraHeartbeatsStaysWithinTheBudget)
{
    for (size_t peers : {21, 64, 100, 999, 1023}) {
        const uint64_t gap = extra_heartbeat_gap_ns(peers, kTick);
        const double per_second_in = double(peers) * 1e9 / double(gap);
        EXPECT_LE(per_second_in, double(kExtraHeartbeatBudget) + 1e-6) << peers;
        EXPECT_GE(per_second_in, double(kExtraHeartbeatBudget) * 0.99) << peers;
    }
    EXPECT_EQ(extra_heartbeat_gap_ns(999, kTick), 499'500'000u);
}

} // namespace
} // namespace peerlb
