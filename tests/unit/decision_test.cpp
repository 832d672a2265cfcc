// The SYN decision arithmetic of bpf/decision.h: the very code the XDP
// program runs, compiled here as C++.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <map>

extern "C" {
#include "bpf/decision.h"
}

namespace {

using Loads = std::array<uint32_t, LB_MAX_NODES>;

Loads no_peers()
{
    Loads l;
    l.fill(LB_LOAD_UNUSABLE);
    return l;
}

lb_config config(uint32_t t1_pct = 50, uint32_t t2_pct = 20, uint32_t pick = LB_PICK_LEAST)
{
    lb_config cfg{};
    cfg.accept_below_bp = t1_pct * 100;
    cfg.min_difference_bp = t2_pct * 100;
    cfg.pick = pick;
    return cfg;
}

lb_decision decide(const lb_config& cfg, uint32_t local_bp, const Loads& peers, uint32_t slots,
                   uint32_t random = 0)
{
    return lb_decide(&cfg, local_bp, peers.data(), slots, random);
}

// Runs the weighted pick over `draws` evenly spaced random values: the exact
// share each slot gets of the 32-bit draw space.
std::map<uint32_t, int> spread(const lb_config& cfg, uint32_t local_bp, const Loads& peers,
                               uint32_t slots, int draws)
{
    std::map<uint32_t, int> count;
    const uint64_t step = (1ull << 32) / draws;
    for (int k = 0; k < draws; k++)
        count[decide(cfg, local_bp, peers, slots, uint32_t(k * step)).node]++;
    return count;
}

} // namespace

TEST(Decision, KeepsWhileBelowAcceptBelow)
{
    Loads peers = no_peers();
    peers[1] = 0;
    lb_decision d = decide(config(), 4999, peers, 2);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_BELOW_T1);
}

TEST(Decision, ForwardsAtAcceptBelowWhenAPeerIsLowEnough)
{
    Loads peers = no_peers();
    peers[1] = 0;
    lb_decision d = decide(config(), 5000, peers, 2);
    EXPECT_EQ(d.node, 1u);
    EXPECT_EQ(d.reason, LB_REASON_LEAST);
}

TEST(Decision, MinDifferenceIsInclusive)
{
    Loads peers = no_peers();
    peers[2] = 7000; // exactly 20 points below 90 %
    EXPECT_EQ(decide(config(), 9000, peers, 3).node, 2u);
    peers[2] = 7001;
    lb_decision d = decide(config(), 9000, peers, 3);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_NO_LOWER_PEER);
}

TEST(Decision, NoCandidateWhenLocalIsBelowMinDifference)
{
    // T1 = 0 makes every SYN compare; a peer cannot be 20 points below 10 %.
    Loads peers = no_peers();
    peers[1] = 0;
    lb_decision d = decide(config(0, 20), 1000, peers, 2);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_NO_LOWER_PEER);
}

TEST(Decision, UnusableAndOutOfRangeSlotsAreNeverChosen)
{
    Loads peers = no_peers();
    peers[3] = 0; // beyond `slots`
    lb_decision d = decide(config(), 10000, peers, 3);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_NO_LOWER_PEER);

    peers[1] = 4000;
    auto weighted = config(50, 20, LB_PICK_WEIGHTED);
    for (const auto& [node, n] : spread(weighted, 10000, peers, 3, 1000))
        EXPECT_EQ(node, 1u) << n << " picks went to slot " << node;
}

TEST(Decision, LeastPicksTheLowestAndTheFirstOnTies)
{
    Loads peers = no_peers();
    peers[0] = 3000;
    peers[1] = 1000;
    peers[2] = 1000;
    peers[3] = 2000;
    lb_decision d = decide(config(), 9000, peers, 4, 0xdeadbeef);
    EXPECT_EQ(d.node, 1u);
    EXPECT_EQ(d.reason, LB_REASON_LEAST);
}

TEST(Decision, WeightedSpreadsInProportionToSpareCapacity)
{
    Loads peers = no_peers();
    peers[1] = 1000; // spare 9000 (+1)
    peers[2] = 2000; // spare 8000
    peers[3] = 4000; // spare 6000
    peers[4] = 8000; // not a candidate: only 10 points below 90 %
    auto cfg = config(50, 20, LB_PICK_WEIGHTED);
    const int draws = 23003;
    auto count = spread(cfg, 9000, peers, 5, draws);
    EXPECT_EQ(count.count(4), 0u);
    EXPECT_EQ(count.count(LB_NODE_LOCAL), 0u);
    const double total = 9001 + 8001 + 6001;
    EXPECT_NEAR(count[1], draws * 9001 / total, 2);
    EXPECT_NEAR(count[2], draws * 8001 / total, 2);
    EXPECT_NEAR(count[3], draws * 6001 / total, 2);
    EXPECT_EQ(decide(cfg, 9000, peers, 5, 0).reason, LB_REASON_WEIGHTED);
}

TEST(Decision, WeightedExtremeDrawsStayCandidates)
{
    Loads peers = no_peers();
    peers[5] = 5000;
    peers[9] = 0;
    auto cfg = config(50, 20, LB_PICK_WEIGHTED);
    EXPECT_EQ(decide(cfg, 9500, peers, 10, 0).node, 5u);
    EXPECT_EQ(decide(cfg, 9500, peers, 10, 0xffffffffu).node, 9u);
}

TEST(Decision, FullyLoadedCandidateStillHasAChanceWithZeroMinDifference)
{
    Loads peers = no_peers();
    peers[1] = 10000;
    lb_decision d = decide(config(50, 0, LB_PICK_WEIGHTED), 10000, peers, 2, 0x80000000u);
    EXPECT_EQ(d.node, 1u);
}

TEST(EffectiveLoad, AddsPendingConnectionsAndSaturates)
{
    EXPECT_EQ(lb_effective_load(4000, 0, 10), 4000u);
    EXPECT_EQ(lb_effective_load(4000, 25, 10), 4250u);
    EXPECT_EQ(lb_effective_load(4000, 0xffffffffu, 0xffffffffu), LB_LOAD_UNUSABLE - 1);
}

TEST(EffectiveLoad, PendingConnectionsSpreadLeastPicks)
{
    // What the XDP program does per SYN: pick, then charge the chosen peer.
    Loads load = no_peers();
    std::array<uint32_t, 3> base = {1000, 1500, 2000}, pending = {};
    std::array<int, 3> got = {};
    for (int syn = 0; syn < 300; syn++) {
        for (int i = 0; i < 3; i++)
            load[i] = lb_effective_load(base[i], pending[i], 10);
        lb_decision d = decide(config(), 9000, load, 3);
        ASSERT_LT(d.node, 3u);
        pending[d.node]++;
        got[d.node]++;
    }
    // Without the estimate the 10 % peer would take all 300.
    EXPECT_GT(got[1], 50);
    EXPECT_GT(got[2], 0);
    EXPECT_LT(got[0], 200);
}

TEST(NodeUsable, OnlyAliveAndFresh)
{
    const uint64_t now = 10'000'000'000ull, stale = 1'500'000'000ull;
    EXPECT_TRUE(lb_node_usable(LB_NODE_ALIVE, now - stale, now, stale));
    EXPECT_FALSE(lb_node_usable(LB_NODE_ALIVE, now - stale - 1, now, stale));
    EXPECT_TRUE(lb_node_usable(LB_NODE_ALIVE, now + 5, now, stale)); // written after our clock read
    for (uint8_t s : {LB_NODE_EMPTY, LB_NODE_SUSPECT, LB_NODE_DEAD, LB_NODE_UNROUTABLE})
        EXPECT_FALSE(lb_node_usable(s, now, now, stale)) << "state " << int(s);
}

TEST(LocalLoad, UnroutableSelfHandsEveryConnectionToAUsablePeer)
{
    auto cfg = config(50, 20, LB_PICK_LEAST);
    EXPECT_EQ(lb_local_load(LB_NODE_ALIVE, 1000, &cfg), 1000u);
    const uint32_t unhealthy = lb_local_load(LB_NODE_UNROUTABLE, 1000, &cfg);
    Loads peers = no_peers();
    peers[1] = 9900; // nearly full, still better than a failing service
    lb_decision d = decide(cfg, unhealthy, peers, 2);
    EXPECT_EQ(d.node, 1u);
    EXPECT_EQ(d.reason, LB_REASON_LEAST);
    // With no usable peer at all, there is nowhere else: kept.
    EXPECT_EQ(decide(cfg, unhealthy, no_peers(), 2).node, LB_NODE_LOCAL);
}
