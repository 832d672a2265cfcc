#include "buckets.h"

#include <algorithm>
#include <numeric>
#include <tuple>

namespace peerlb {
namespace {

// FNV-1a of the id, then splitmix64's finaliser over (id hash, bucket):
// integer operations only, the same on every machine.
uint64_t fnv1a(const std::string& s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

} // namespace

uint64_t bucket_score(const std::string& node_id, uint32_t bucket)
{
    return mix(fnv1a(node_id) ^ mix(bucket));
}

std::vector<uint32_t> bucket_quotas(const std::vector<BucketNode>& nodes, uint32_t buckets)
{
    std::vector<uint32_t> quota(nodes.size(), 0);
    if (nodes.empty())
        return quota;
    uint64_t total = 0;
    for (const auto& n : nodes)
        total += std::max<uint32_t>(n.weight, 1);
    // Whole shares first, then one more bucket each for the largest
    // remainders (ties: the lower id) until all are given.
    std::vector<std::pair<uint64_t, size_t>> remainders;
    uint64_t given = 0;
    for (size_t i = 0; i < nodes.size(); i++) {
        const uint64_t share = uint64_t(buckets) * std::max<uint32_t>(nodes[i].weight, 1);
        quota[i] = uint32_t(share / total);
        given += quota[i];
        remainders.push_back({share % total, i});
    }
    std::sort(remainders.begin(), remainders.end(), [&](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : nodes[a.second].id < nodes[b.second].id;
    });
    for (size_t k = 0; given < buckets; k++, given++)
        quota[remainders[k % remainders.size()].second]++;
    return quota;
}

std::vector<uint32_t> assign_buckets(const std::vector<BucketNode>& nodes, uint32_t buckets)
{
    std::vector<uint32_t> owner(buckets, kNoOwner);
    if (nodes.empty())
        return owner;
    std::vector<uint32_t> room = bucket_quotas(nodes, buckets);
    // Every (score, node, bucket), best first; ties (a 64-bit collision)
    // by node id, then bucket, so that the order is total.
    struct Pair {
        uint64_t score;
        uint32_t node;
        uint32_t bucket;
    };
    std::vector<Pair> pairs;
    pairs.reserve(size_t(buckets) * nodes.size());
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
    uint32_t left = buckets;
    for (const Pair& p : pairs) {
        if (!left)
            break;
        if (owner[p.bucket] != kNoOwner || room[p.node] == 0)
            continue;
        owner[p.bucket] = p.node;
        room[p.node]--;
        left--;
    }
    return owner;
}

} // namespace peerlb
