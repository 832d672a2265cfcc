// The bucket table of shared addresses (DESIGN.md section 5b): which node
// owns each bucket of the client address space. Pure logic, computed the
// same way by every node from the live set, with integer arithmetic only
// (no floating point: every node, whatever its libm, gets the same table).
//
// - Quotas. Each node's count of buckets is its weight's share of
//   `buckets`, rounded by largest remainder (ties to the lower id): exact,
//   so every share is within one bucket of the weighted share.
// - Preferences. Each (node, bucket) pair has a score, a 64-bit hash of the
//   node id and the bucket index (rendezvous hashing). Pairs are taken in
//   decreasing score order; a pair assigns its bucket to its node when the
//   bucket has no owner yet and the node is under its quota. A bucket thus
//   goes to the node that wants it most among those with room.
// - Movement. A node joining or leaving changes only the pairs of that node
//   and the quotas: a bucket keeps its owner unless that owner left, or the
//   joining node outranks it, or quotas that shrank push it out. The unit
//   tests measure it against the DESIGN bound (1/N + 2 % of the buckets).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace peerlb {

struct BucketNode {
    std::string id;
    uint32_t weight = 100; // hundredths, as heartbeats carry it (>= 1)
};

// The score of `bucket` for `node_id`: higher wins. Stable across
// versions and machines (the table must not move on an upgrade).
uint64_t bucket_score(const std::string& node_id, uint32_t bucket);

// Buckets each node gets (same order as `nodes`): exact largest-remainder
// shares of `buckets` by weight. Node ids are unique.
std::vector<uint32_t> bucket_quotas(const std::vector<BucketNode>& nodes, uint32_t buckets);

// The owner (index into `nodes`) of each of `buckets` buckets; empty
// `nodes`: every bucket is unowned (kNoOwner).
inline constexpr uint32_t kNoOwner = UINT32_MAX;
std::vector<uint32_t> assign_buckets(const std::vector<BucketNode>& nodes, uint32_t buckets);

} // namespace peerlb
