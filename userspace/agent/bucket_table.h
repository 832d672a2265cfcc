// The versioned bucket table of shared addresses (DESIGN.md section 5b), as
// the agents agree on it: node ids (not data plane slots), owners, chains
// of previous owners, and the moves that made them. Pure logic: the
// coordinator (lowest live id) computes each next version, every node
// applies versions in order (shared_table.h carries them).
//
// Times are milliseconds of the caller's monotonic clock; the wire form
// carries ages instead, so that a receiver puts them on its own clock.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "buckets.h"

namespace peerlb {

inline constexpr uint16_t kNoNode = 0xffff; // no node in this place (an index into nodes)

struct TableBucket {
    uint16_t owner = kNoNode;              // index into BucketTable::nodes
    uint16_t prev[2] = {kNoNode, kNoNode}; // previous owners, most recent first
    uint64_t moved_ms = 0;                 // when the owner last changed (0: never)
    uint64_t prev_since_ms[2] = {0, 0};    // when each previous owner gave it up
    uint64_t load_moved_ms = 0;            // last move by load (0: never): not again within 30 s

    bool operator==(const TableBucket&) const = default;
};

// A bucket moved by load is not moved by load again for this long (DESIGN 5b).
inline constexpr uint64_t kLoadMoveHoldMs = 30000;

// Why a bucket moved (metrics).
enum class MoveReason { membership, load, drain };

struct TableNode {
    std::string id;
    uint32_t weight = 100; // hundredths
    bool draining = false;

    bool operator==(const TableNode&) const = default;
};

struct BucketTable {
    uint64_t version = 0;     // 0: no table yet
    std::string author;       // the coordinator that made this version
    uint32_t buckets = 0;     // count
    std::vector<TableNode> nodes; // the live set this version was made for (ids unique)
    std::vector<TableBucket> table;

    bool empty() const { return version == 0; }
    // Index of `id` in nodes, or kNoNode.
    uint16_t index_of(const std::string& id) const;
    // Buckets owned per node (same order as nodes).
    std::vector<uint32_t> owned() const;

    bool operator==(const BucketTable&) const = default;
};

struct MoveCounts {
    uint32_t membership = 0, load = 0, drain = 0;
    uint32_t total() const { return membership + load + drain; }
};

// The next table for a new live set (`live`: every live node, with its
// weight and draining flag; this node included; any order, an id listed
// twice counts once). Moves as few buckets as the new quotas need (DESIGN
// 5b: one of N joining or leaving moves at most 1/N + 2 %), keeping earlier
// load moves: a node's target is its count plus its quota's change (see
// bucket_table.cpp); a draining node's target is 0 (unless every live node
// drains). The buckets of nodes no longer live go to the others; a
// bucket's chain gets its old owner when that owner is live, keeps its live
// previous owners (a dead one drops out) for `daisy_chain_ms` from their
// own move. Result nodes: the live set sorted by id. Returns `cur`
// unchanged (same version and author) when no owner, chain, node, weight
// or draining flag changed (a chain expiring is a change); else version +
// 1, by `author`. An empty `cur`, or a different `buckets` (configuration
// changed), gives assign_buckets' table over the eligible nodes, without
// chains and without moves counted. `moves`: owners that changed, as drain
// when the old owner is live and draining, else membership. Times > 0.
BucketTable next_for_membership(const BucketTable& cur, const std::vector<TableNode>& live,
                                uint32_t buckets, uint64_t now_ms, uint64_t daisy_chain_ms,
                                const std::string& author, MoveCounts* moves = nullptr);

// Load moves (DESIGN 5b): at most `max_moves` buckets (2 % of the table per
// heartbeat period) from nodes above `t1` to nodes lower by `t2` (loads in
// basis points by node id; nodes without a load are left alone; draining
// nodes take none), never a bucket moved by load within kLoadMoveHoldMs,
// none when no such pair remains. Pair by pair, hottest with coldest: only
// as many as even out the pair's loads (load per bucket of the hot node),
// those the cold node scores highest, then the pair's estimated loads are
// updated, so that one call does not overshoot and the next period's real
// loads decide again. The old owner joins the bucket's chain. version + 1
// when any moved, else `cur`.
BucketTable next_for_load(const BucketTable& cur, const std::vector<std::pair<std::string, uint32_t>>& load_bp,
                          uint32_t t1_bp, uint32_t t2_bp, uint32_t max_moves, uint64_t now_ms,
                          uint64_t daisy_chain_ms, const std::string& author,
                          MoveCounts* moves = nullptr);

// Wire form (compact, versioned, independent of host byte order: layout in
// bucket_table.cpp); times travel as ages and decode puts them on `now_ms`.
// moved_ms and load_moved_ms travel only while they matter (with a chain,
// within kLoadMoveHoldMs); elsewhere they decode as 0. About 9 KB for 4096
// buckets and 64 nodes. Decode checks every length, index and id (unique,
// non-empty), buckets <= 65536; nullopt: malformed. Ids up to 255 bytes.
std::vector<uint8_t> encode_table(const BucketTable& t, uint64_t now_ms);
std::optional<BucketTable> decode_table(std::span<const uint8_t> bytes, uint64_t now_ms);

} // namespace peerlb
