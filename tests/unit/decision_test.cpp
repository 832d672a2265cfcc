// The SYN decision arithmetic of bpf/decision.h: the very code the XDP
// program runs, compiled here as C++.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <map>
#include <random>
#include <vector>

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
    lb_config cfg{}; // high_water_bp 0: no high-water mark
    cfg.accept_below_bp = t1_pct * 100;
    cfg.min_difference_bp = t2_pct * 100;
    cfg.pick = pick;
    return cfg;
}

using Views = std::array<lb_peer_view, LB_MAX_NODES>;

// Every peer of weight 1.0, active.
Views views_of(const Loads& loads)
{
    Views v{};
    for (size_t i = 0; i < loads.size(); i++)
        v[i] = lb_peer_view{loads[i], LB_WEIGHT_ONE, 0, 0};
    return v;
}

lb_decision decide(const lb_config& cfg, uint32_t local_bp, const Views& peers, uint32_t slots,
                   uint32_t random = 0)
{
    return lb_decide(&cfg, local_bp, peers.data(), slots, random);
}

lb_decision decide(const lb_config& cfg, uint32_t local_bp, const Loads& peers, uint32_t slots,
                   uint32_t random = 0)
{
    return decide(cfg, local_bp, views_of(peers), slots, random);
}

// Runs the weighted pick over `draws` evenly spaced random values: the exact
// share each slot gets of the 32-bit draw space.
std::map<uint32_t, int> spread(const lb_config& cfg, uint32_t local_bp, const Views& peers,
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
    for (const auto& [node, n] : spread(weighted, 10000, views_of(peers), 3, 1000))
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
    auto count = spread(cfg, 9000, views_of(peers), 5, draws);
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
    EXPECT_EQ(lb_effective_load(4000, INT32_MAX, 0xffffffffu), LB_LOAD_UNUSABLE - 1);
}

TEST(EffectiveLoad, ConnectionsClosedSinceTheReportLowerIt)
{
    // Handed before the report (so in it) and closed since: taken off.
    EXPECT_EQ(lb_effective_load(4000, -25, 10), 3750u);
    EXPECT_EQ(lb_effective_load(100, -25, 10), 0u); // never below 0
    // The wrapping counter: 3 opened and 5 closed across the wrap.
    EXPECT_EQ(lb_handed_delta(1, 0xffffffffu), 2);
    EXPECT_EQ(lb_handed_delta(0xfffffffeu, 0), -2);
}

TEST(InflightLoad, ConnectionsOverCapacity)
{
    EXPECT_EQ(lb_inflight_load(0, 8), 0u);
    EXPECT_EQ(lb_inflight_load(-3, 8), 0u); // a correction not applied yet
    EXPECT_EQ(lb_inflight_load(4, 8), 5000u);
    EXPECT_EQ(lb_inflight_load(12, 8), 15000u); // past 100 %: high_water sees it
    EXPECT_EQ(lb_inflight_load(1, 3), 3333u);
    EXPECT_EQ(lb_inflight_load(5, 0), 0u);
}

// ---- capacity: weights, high water, overflow, standby -------------------

namespace {

lb_config with_high_water(lb_config cfg, uint32_t high_water_pct, uint32_t overflow)
{
    cfg.high_water_bp = high_water_pct * 100;
    cfg.overflow = overflow;
    return cfg;
}

} // namespace

TEST(Capacity, WeightedPickDrawsInProportionToSpareTimesWeight)
{
    Views peers = views_of(no_peers());
    peers[1] = {2000, 100, 0, 0}; // spare 8001 x 1
    peers[2] = {2000, 300, 0, 0}; // spare 8001 x 3
    peers[3] = {6000, 200, 0, 0}; // spare 4001 x 2
    const int draws = 1000;
    auto count = spread(config(50, 20, LB_PICK_WEIGHTED), 9000, peers, 4, draws);
    const double total = 8001.0 * 1 + 8001.0 * 3 + 4001.0 * 2;
    EXPECT_NEAR(count[1], draws * 8001.0 / total, 1);
    EXPECT_NEAR(count[2], draws * 8001.0 * 3 / total, 1);
    EXPECT_NEAR(count[3], draws * 4001.0 * 2 / total, 1);
}

TEST(Capacity, LeastIgnoresWeightsLoadIsPerCapacityAlready)
{
    Views peers = views_of(no_peers());
    peers[1] = {3000, 100, 0, 0};
    peers[2] = {3100, 1000, 0, 0};
    EXPECT_EQ(decide(config(), 9000, peers, 3).node, 1u);
}

TEST(Capacity, APeerAtHighWaterIsNeverACandidate)
{
    const lb_config cfg = with_high_water(config(50, 20), 80, LB_OVERFLOW_KEEP);
    Loads peers = no_peers();
    peers[1] = 8000; // at the mark
    peers[2] = 7999;
    // Local 79.99 %: T2 asks 59.99 % or less: none.
    lb_decision d = decide(cfg, 7999, peers, 3);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_NO_LOWER_PEER);
    // Local at its own mark: any peer under its mark takes it, T2 or not.
    d = decide(cfg, 8000, peers, 3);
    EXPECT_EQ(d.node, 2u);
    EXPECT_EQ(d.reason, LB_REASON_LEAST);
    // Every peer at its mark: kept, and said why.
    peers[2] = 8500;
    d = decide(cfg, 9999, peers, 3);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_OVERFLOW);
    // Without the mark, 80 % is T2 under 99.99 %.
    d = decide(config(50, 20), 10000, peers, 3);
    EXPECT_EQ(d.node, 1u);
}

TEST(Capacity, EveryNodeAtHighWaterKeepsOrRefuses)
{
    Loads peers = no_peers();
    peers[1] = 10000;
    peers[2] = 12000;
    lb_decision d = decide(with_high_water(config(), 100, LB_OVERFLOW_KEEP), 10000, peers, 3);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_OVERFLOW);
    for (uint32_t pick : {LB_PICK_LEAST, LB_PICK_WEIGHTED}) {
        d = decide(with_high_water(config(50, 20, pick), 100, LB_OVERFLOW_REFUSE), 10000, peers, 3);
        EXPECT_EQ(d.node, LB_NODE_REFUSE);
        EXPECT_EQ(d.reason, LB_REASON_REFUSED);
    }
    // Below its own mark a node never refuses, whatever the peers.
    d = decide(with_high_water(config(), 100, LB_OVERFLOW_REFUSE), 9999, peers, 3);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_NO_LOWER_PEER);
    // No usable peer at all: the same.
    d = decide(with_high_water(config(), 100, LB_OVERFLOW_REFUSE), 10000, no_peers(), 3);
    EXPECT_EQ(d.node, LB_NODE_REFUSE);
}

TEST(Capacity, OverflowKeepPlacesTheConnectionByT2AmongAllNodes)
{
    // Every node past its mark: kept here unless a peer is T2 lower, so the
    // queue grows where it is shortest, not all on the node the SYN reached.
    const lb_config keep = with_high_water(config(), 100, LB_OVERFLOW_KEEP);
    Loads peers = no_peers();
    peers[1] = 12000;
    peers[2] = 10500;
    lb_decision d = decide(keep, 20000, peers, 3);
    EXPECT_EQ(d.node, 2u);
    EXPECT_EQ(d.reason, LB_REASON_LEAST);
    auto count = spread(with_high_water(config(50, 20, LB_PICK_WEIGHTED), 100, LB_OVERFLOW_KEEP),
                        20000, views_of(peers), 3, 100);
    EXPECT_EQ(count[1] + count[2], 100);
    // Peers not T2 lower: this node keeps it.
    d = decide(keep, 12000, peers, 3);
    EXPECT_EQ(d.node, LB_NODE_LOCAL);
    EXPECT_EQ(d.reason, LB_REASON_OVERFLOW);
}

TEST(Capacity, StandbyOnlyWhileEveryActiveNodeIsAtT1)
{
    Views peers = views_of(no_peers());
    peers[1] = {4900, 100, 0, 0};               // active, under T1
    peers[2] = {0, 100, LB_NODE_STANDBY, 0};     // standby, idle
    // Local 90 %: the active peer is under T1, so the standby waits.
    lb_decision d = decide(config(), 9000, peers, 3);
    EXPECT_EQ(d.node, 1u);
    auto count = spread(config(50, 20, LB_PICK_WEIGHTED), 9000, peers, 3, 100);
    EXPECT_EQ(count[1], 100);
    // The active peer reaches T1: the standby is a candidate, and the least.
    peers[1].load_bp = 5000;
    d = decide(config(), 9000, peers, 3);
    EXPECT_EQ(d.node, 2u);
    count = spread(config(50, 20, LB_PICK_WEIGHTED), 9000, peers, 3, 1000);
    EXPECT_GT(count[2], count[1]);
    EXPECT_GT(count[1], 0);
    // No active peer at all (only this node, at 90 %): the standby takes it.
    peers[1].load_bp = LB_LOAD_UNUSABLE;
    EXPECT_EQ(decide(config(), 9000, peers, 3).node, 2u);
    // An unusable active peer does not hold the standby back, a usable
    // one under T1 does even when it is not a candidate (not T2 lower).
    peers[1].load_bp = 4999;
    EXPECT_EQ(decide(config(), 6000, peers, 3).node, LB_NODE_LOCAL);
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

// Power of d choices: the draw of candidate-list indexes.
namespace {

std::vector<uint32_t> draw(uint32_t count, uint32_t d, std::mt19937& rng)
{
    std::array<uint32_t, LB_MAX_CHOICES> random{}, out{};
    for (auto& r : random)
        r = uint32_t(rng());
    const uint32_t n = lb_draw_distinct(count, d, random.data(), out.data());
    return {out.begin(), out.begin() + n};
}

} // namespace

TEST(DrawDistinct, TakesMinOfDAndCountDistinctAscendingIndexesInRange)
{
    std::mt19937 rng(7);
    for (uint32_t count : {0u, 1u, 2u, 3u, 5u, 64u, 1024u})
        for (uint32_t d : {0u, 1u, 2u, 3u, 8u, 9u})
            for (int round = 0; round < 200; round++) {
                const auto got = draw(count, d, rng);
                ASSERT_EQ(got.size(), std::min({count, d, uint32_t(LB_MAX_CHOICES)}))
                    << count << " " << d;
                for (size_t i = 0; i < got.size(); i++) {
                    ASSERT_LT(got[i], count);
                    if (i) {
                        ASSERT_LT(got[i - 1], got[i]) << "not distinct and ascending";
                    }
                }
            }
}

// Every pair of 6 indexes equally likely with d = 2, and every index with
// d = 3 of 10: chi-square against the uniform expectation, bound at the
// 99.9 % quantile (14 degrees of freedom: 36.1; 9: 27.9), fixed seed.
TEST(DrawDistinct, EverySetIsEquallyLikely)
{
    std::mt19937 rng(11);
    const int rounds = 60000;
    std::map<std::pair<uint32_t, uint32_t>, int> pairs;
    for (int i = 0; i < rounds; i++) {
        const auto got = draw(6, 2, rng);
        pairs[{got[0], got[1]}]++;
    }
    ASSERT_EQ(pairs.size(), 15u);
    double chi2 = 0, expect = rounds / 15.0;
    for (const auto& [set, n] : pairs)
        chi2 += (n - expect) * (n - expect) / expect;
    EXPECT_LT(chi2, 36.1);

    std::array<int, 10> each{};
    for (int i = 0; i < rounds; i++)
        for (uint32_t v : draw(10, 3, rng))
            each[v]++;
    chi2 = 0;
    expect = rounds * 3 / 10.0;
    for (int n : each)
        chi2 += (n - expect) * (n - expect) / expect;
    EXPECT_LT(chi2, 27.9);
}
