// The bucket table of shared addresses (userspace/agent/buckets.h): exact
// weighted shares, the same table whatever the order nodes are listed in,
// and few buckets moved when one node joins or leaves (DESIGN.md 5b).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "userspace/agent/buckets.h"

namespace peerlb {
namespace {

constexpr uint32_t kBuckets = 4096;

std::vector<BucketNode> cluster(size_t n, uint32_t weight = 100)
{
    std::vector<BucketNode> nodes;
    for (size_t i = 0; i < n; i++)
        nodes.push_back({"s" + std::to_string(i + 1), weight});
    return nodes;
}

// Owner ids by bucket.
std::vector<std::string> owners(const std::vector<BucketNode>& nodes, uint32_t buckets = kBuckets)
{
    std::vector<std::string> out;
    for (uint32_t o : assign_buckets(nodes, buckets))
        out.push_back(o == kNoOwner ? "" : nodes[o].id);
    return out;
}

size_t moved(const std::vector<std::string>& before, const std::vector<std::string>& after)
{
    size_t n = 0;
    for (size_t b = 0; b < before.size(); b++)
        n += before[b] != after[b];
    return n;
}

} // namespace

TEST(BucketQuotas, ExactLargestRemainderSharesByWeight)
{
    std::vector<BucketNode> nodes = {{"a", 100}, {"b", 300}, {"c", 200}};
    std::vector<uint32_t> q = bucket_quotas(nodes, 4096);
    EXPECT_EQ(q[0] + q[1] + q[2], 4096u);
    EXPECT_EQ(q[0], 683u); // 682.67
    EXPECT_EQ(q[1], 2048u);
    EXPECT_EQ(q[2], 1365u); // 1365.33
    // Equal remainders: the lower ids get the extra buckets.
    q = bucket_quotas(cluster(3), 10);
    EXPECT_EQ(q, (std::vector<uint32_t>{4, 3, 3}));
    // Fewer buckets than nodes: some get none, no bucket is lost.
    q = bucket_quotas(cluster(5), 3);
    EXPECT_EQ(q[0] + q[1] + q[2] + q[3] + q[4], 3u);
    EXPECT_TRUE(bucket_quotas({}, 16).empty());
}

TEST(AssignBuckets, EveryBucketOwnedEachNodeItsQuota)
{
    for (size_t n : {1u, 2u, 3u, 5u, 16u}) {
        SCOPED_TRACE(n);
        const auto nodes = cluster(n);
        const std::vector<uint32_t> table = assign_buckets(nodes, kBuckets);
        std::vector<uint32_t> count(n, 0);
        for (uint32_t o : table) {
            ASSERT_LT(o, n);
            count[o]++;
        }
        EXPECT_EQ(count, bucket_quotas(nodes, kBuckets));
    }
    EXPECT_EQ(assign_buckets({}, 8), std::vector<uint32_t>(8, kNoOwner));
}

TEST(AssignBuckets, TheSameTableWhateverTheOrderOfTheNodes)
{
    auto nodes = cluster(7);
    nodes[2].weight = 250;
    const auto reference = owners(nodes);
    std::reverse(nodes.begin(), nodes.end());
    EXPECT_EQ(owners(nodes), reference);
    std::rotate(nodes.begin(), nodes.begin() + 3, nodes.end());
    EXPECT_EQ(owners(nodes), reference);
}

TEST(AssignBuckets, WeightsGiveProportionalShares)
{
    std::vector<BucketNode> nodes = {{"small", 100}, {"large", 300}};
    std::map<std::string, int> count;
    for (const auto& id : owners(nodes))
        count[id]++;
    EXPECT_EQ(count["small"], 1024);
    EXPECT_EQ(count["large"], 3072);
}

TEST(AssignBuckets, OneNodeJoiningOrLeavingMovesAtMostItsShareAndTwoPercent)
{
    for (size_t n : {2u, 3u, 5u, 16u, 64u}) {
        SCOPED_TRACE(n);
        auto nodes = cluster(n);
        const auto with_all = owners(nodes);
        const size_t bound = kBuckets / n + kBuckets * 2 / 100;
        // Each node in turn leaves (and, seen the other way, joins).
        for (size_t leaving : {size_t(0), n / 2, n - 1}) {
            auto fewer = nodes;
            fewer.erase(fewer.begin() + long(leaving));
            const auto without = owners(fewer);
            const size_t m = moved(with_all, without);
            EXPECT_LE(m, bound) << nodes[leaving].id << " leaves";
            // At least the leaving node's own buckets move.
            EXPECT_GE(m, size_t(std::count(with_all.begin(), with_all.end(), nodes[leaving].id)));
        }
    }
}

} // namespace peerlb

namespace peerlb {
namespace {

// The rule as buckets.h states it, written the plain way: every pair,
// sorted best first, taken in order. assign_buckets merges per-node lists
// instead (1024 nodes x 65 536 buckets are 67 million pairs); the table
// must be the same, or it would move on an upgrade.
std::vector<uint32_t> assign_by_sorting_every_pair(const std::vector<BucketNode>& nodes,
                                                   uint32_t buckets)
{
    std::vector<uint32_t> owner(buckets, kNoOwner);
    std::vector<uint32_t> room = bucket_quotas(nodes, buckets);
    struct Pair {
        uint64_t score;
        uint32_t node, bucket;
    };
    std::vector<Pair> pairs;
    for (uint32_t n = 0; n < nodes.size(); n++)
        for (uint32_t b = 0; b < buckets; b++)
            pairs.push_back({bucket_score(nodes[n].id, b), n, b});
    std::sort(pairs.begin(), pairs.end(), [&](const Pair& a, const Pair& b) {
        if (a.score != b.score)
            return a.score > b.score;
        if (a.node != b.node)
            return nodes[a.node].id < nodes[b.node].id;
        return a.bucket < b.bucket;
    });
    for (const Pair& p : pairs)
        if (owner[p.bucket] == kNoOwner && room[p.node]) {
            owner[p.bucket] = p.node;
            room[p.node]--;
        }
    return owner;
}

TEST(AssignBuckets, TheSameTableAsTakingEveryPairInOrder)
{
    std::mt19937 rng(5);
    for (int round = 0; round < 60; round++) {
        const size_t n = 1 + rng() % 40;
        const uint32_t buckets = 1 + rng() % 3000;
        std::vector<BucketNode> nodes;
        for (size_t i = 0; i < n; i++)
            nodes.push_back({"n" + std::to_string(rng() % 100000) + "-" + std::to_string(i),
                             round % 2 ? uint32_t(1 + rng() % 400) : 100u});
        ASSERT_EQ(assign_buckets(nodes, buckets), assign_by_sorting_every_pair(nodes, buckets))
            << "round " << round << ": " << n << " nodes, " << buckets << " buckets";
    }
}

} // namespace
} // namespace peerlb
