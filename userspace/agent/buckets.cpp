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

namespace {

// One node's pairs, best first, produced a band of scores at a time: a
// node needs only about its quota of them (plus those others took first),
// so scoring its buckets once per band beats sorting every pair of the
// table (1024 nodes x 65 536 buckets: 67 million pairs, 1 GB, seconds).
// Scores are uniform 64-bit hashes: a band of width W holds about
// buckets x W / 2^64 pairs. Bands go down from the top, each twice as wide
// as the last; pairs of one score are always in one band.
class NodePairs {
public:
    // `expected`: pairs the first band should hold.
    NodePairs(uint64_t id_hash, uint32_t buckets, uint32_t expected) : id_hash_(id_hash)
    {
        width_ = expected >= buckets ? UINT64_MAX : (UINT64_MAX / buckets) * expected;
    }

    // The best pair not yet taken from here; false when none is left.
    bool head(const std::vector<uint64_t>& bucket_mix, uint64_t* score, uint32_t* bucket)
    {
        while (pos_ == list_.size())
            if (!next_band(bucket_mix))
                return false;
        *score = list_[pos_].score;
        *bucket = list_[pos_].bucket;
        return true;
    }
    void advance() { pos_++; }

private:
    struct Pair {
        uint64_t score;
        uint32_t bucket;
    };

    // The pairs with scores in [lo, top_], best first (higher score, then
    // lower bucket: the table's order).
    bool next_band(const std::vector<uint64_t>& bucket_mix)
    {
        if (done_)
            return false;
        const uint64_t lo = top_ > width_ ? top_ - width_ : 0;
        list_.clear();
        pos_ = 0;
        for (uint32_t b = 0; b < bucket_mix.size(); b++) {
            const uint64_t score = mix(id_hash_ ^ bucket_mix[b]);
            if (score >= lo && score <= top_)
                list_.push_back({score, b});
        }
        std::sort(list_.begin(), list_.end(), [](const Pair& a, const Pair& b) {
            return a.score != b.score ? a.score > b.score : a.bucket < b.bucket;
        });
        done_ = lo == 0;
        top_ = lo - 1;
        width_ = width_ > UINT64_MAX / 2 ? UINT64_MAX : width_ * 2;
        return true;
    }

    uint64_t id_hash_;
    uint64_t width_;
    uint64_t top_ = UINT64_MAX;
    bool done_ = false;
    std::vector<Pair> list_;
    size_t pos_ = 0;
};

} // namespace

std::vector<uint32_t> assign_buckets(const std::vector<BucketNode>& nodes, uint32_t buckets)
{
    std::vector<uint32_t> owner(buckets, kNoOwner);
    if (nodes.empty())
        return owner;
    std::vector<uint32_t> room = bucket_quotas(nodes, buckets);
    // Every (score, node, bucket) pair, best first; ties (a 64-bit
    // collision) by node id, then bucket, so that the order is total. A
    // pair gives its bucket to its node when the bucket is free and the
    // node has room. The pairs are merged from each node's own best-first
    // list (NodePairs): the same order, without listing them all. A node
    // without room has its pairs skipped, so it leaves the merge.
    std::vector<uint64_t> bucket_mix(buckets);
    for (uint32_t b = 0; b < buckets; b++)
        bucket_mix[b] = mix(b);
    std::vector<uint32_t> id_rank(nodes.size());
    {
        std::vector<uint32_t> by_id(nodes.size());
        std::iota(by_id.begin(), by_id.end(), 0u);
        std::sort(by_id.begin(), by_id.end(),
                  [&](uint32_t a, uint32_t b) { return nodes[a].id < nodes[b].id; });
        for (uint32_t r = 0; r < by_id.size(); r++)
            id_rank[by_id[r]] = r;
    }
    struct Head {
        uint64_t score;
        uint32_t rank;
        uint32_t bucket;
        uint32_t node;
    };
    // std::priority_queue pops the greatest: "less" means "after".
    auto after = [](const Head& a, const Head& b) {
        if (a.score != b.score)
            return a.score < b.score;
        if (a.rank != b.rank)
            return a.rank > b.rank;
        return a.bucket > b.bucket;
    };
    std::vector<NodePairs> lists;
    std::vector<Head> heap;
    lists.reserve(nodes.size());
    for (uint32_t n = 0; n < nodes.size(); n++) {
        // Enough for the quota and the buckets others are likely to take
        // first; a node that runs out scores again for the next chunk.
        lists.emplace_back(fnv1a(nodes[n].id), buckets, 8 * room[n] + 64);
        Head h{0, id_rank[n], 0, n};
        if (room[n] && lists[n].head(bucket_mix, &h.score, &h.bucket))
            heap.push_back(h);
    }
    std::make_heap(heap.begin(), heap.end(), after);
    uint32_t left = buckets;
    while (left && !heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), after);
        Head h = heap.back();
        heap.pop_back();
        if (owner[h.bucket] == kNoOwner) {
            owner[h.bucket] = h.node;
            room[h.node]--;
            left--;
        }
        lists[h.node].advance();
        if (room[h.node] && lists[h.node].head(bucket_mix, &h.score, &h.bucket)) {
            heap.push_back(h);
            std::push_heap(heap.begin(), heap.end(), after);
        }
    }
    return owner;
}

} // namespace peerlb
