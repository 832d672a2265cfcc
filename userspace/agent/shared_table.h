// The bucket table of shared service addresses as the agent keeps it
// (DESIGN.md section 5b): the coordinator (lowest live id among the nodes
// serving shared addresses) makes each next version from the live set, the
// drains and the loads the heartbeats carry, and sends it to every peer in
// table chunks; every node applies the best version it has (higher, or the
// same from a lower author id) to its data plane, in its own node slots.
//
// Pure logic on an injected clock (milliseconds of CLOCK_MONOTONIC, the
// data plane's clock) with the sends and the data plane writes as
// functions: tests drive it with fakes.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "../dataplane/maps.h"
#include "bucket_table.h"
#include "config.h"
#include "heartbeat.h"
#include "table_transfer.h"

namespace peerlb {

// What the manager takes from the configuration (some of it changes with
// `peerlb set`).
struct SharedSettings {
    std::string self_id;
    uint32_t buckets = 0;
    uint32_t hash = LB_SHARED_HASH_ADDRESS;       // enum lb_shared_hash
    uint32_t delivery = LB_DELIVERY_ECMP;         // enum lb_shared_delivery
    uint64_t daisy_chain_ms = 0;
    uint64_t period_ms = 500;                     // cluster.interval_ms
    uint64_t settle_ms = 1500;                    // dead_after x interval_ms
    uint32_t t1_bp = 5000, t2_bp = 2000;          // balance.accept_below, min_difference
};
SharedSettings shared_settings(const Config& cfg);

// A node serving shared addresses, as its last heartbeat shows it (this
// node: its own state).
struct SharedNode {
    std::string id;
    uint16_t weight = 100;         // hundredths
    bool draining = false;         // `peerlb drain`: no buckets
    bool routable = true;          // false: unhealthy, no buckets either
    uint32_t load_bp = 0;          // past 100 % when the exact load says so
    uint64_t table_version = 0;    // the version it applied
    uint64_t heard_ms = 0;         // when its heartbeat came
    uint16_t second_hop_permille = 0;
};

// The lb_buckets entries of `t`: node indexes turned into slots
// (`slots[i]` of t.nodes[i], LB_BUCKET_NONE when it has none here), the
// previous owners whose own daisy_chain window still runs at now_ms (most
// recent first), chain_until_ns the end of the most recent one's window on
// the data plane's clock. *next_change_ms (if given): when the next window
// ends (UINT64_MAX: none), and the entries must be written again.
std::vector<lb_bucket> bucket_entries(const BucketTable& t, const std::vector<uint16_t>& slots,
                                      uint64_t now_ms, uint64_t daisy_chain_ms,
                                      uint64_t* next_change_ms = nullptr);

// lb_config at the agent's start: the pinned table stays in force if it was
// made for these buckets and this hash (a restarted agent's data plane keeps
// forwarding by it until a table arrives), else none (shared_buckets 0).
lb_config shared_config_at_start(const lb_config& pinned, const Config& cfg);

class SharedTable {
public:
    // Where an applied table goes.
    struct Dataplane {
        // This node's data plane slot of a node id (this node's own
        // included); nullopt: none here.
        std::function<std::optional<uint32_t>(const std::string& id)> slot_of;
        std::function<void(const std::vector<lb_bucket>&)> write_buckets; // entries 0 .. n-1
        std::function<void(uint32_t index, const lb_bucket&)> write_bucket;
        // lb_config.shared_buckets, shared_hash, shared_delivery.
        std::function<void(uint32_t buckets, uint32_t hash, uint32_t delivery)> write_config;
    };
    // Stamps, signs and sends a chunk to every peer; returns the failed sends.
    using Send = std::function<int(TableChunk&)>;

    struct Stats {
        uint64_t tables_applied = 0;  // from peers and made here
        uint64_t tables_made = 0;     // by this node as coordinator
        uint64_t chunks_sent = 0;     // all chunks, first sends and re-sends
        uint64_t chunks_resent = 0;   // to catch a peer up
        uint64_t chunks_taken = 0;    // chunks of a table better than the applied one
        uint64_t tables_refused = 0;  // complete but undecodable or for another bucket count
        MoveCounts moves;             // buckets moved by this node as coordinator, by reason
    };

    SharedTable(SharedSettings settings, Dataplane dataplane, Send send, uint64_t started_ms);

    void configure(const SharedSettings& settings);

    // Every turn of the agent's loop. `peers`: the live peers (alive or
    // suspect) that serve shared addresses; `self`: this node. Rewrites
    // entries whose chain ended or whose nodes got a slot; once a period,
    // makes and sends the next table (coordinator), or re-sends the applied
    // one to a peer that shows another version.
    void tick(uint64_t now_ms, const SharedNode& self, const std::vector<SharedNode>& peers);
    // A peer's chunk (authenticated, not a replay).
    void take(const TableChunk& c, uint64_t now_ms);

    // This node drains (persisted by the caller): its buckets go to others.
    void set_draining(bool draining) { draining_ = draining; }
    bool draining() const { return draining_; }
    void set_healthy(bool healthy) { healthy_ = healthy; }
    // The agent is leaving: routes go now, before the heartbeat that says so.
    void set_stopping() { stopping_ = true; }

    // Whether this node's routes to the shared addresses should be
    // announced (BIRD): a table applied, and not draining, unhealthy or
    // stopping.
    bool announce_wanted() const { return !applied_.empty() && !draining_ && healthy_ && !stopping_; }

    const BucketTable& applied() const { return applied_; }
    const std::string& coordinator() const { return coordinator_; }
    const Stats& stats() const { return stats_; }
    // Buckets this node owns in the applied table.
    uint32_t owned_here() const;

private:
    void round(uint64_t now_ms, const SharedNode& self, const std::vector<SharedNode>& peers);
    void author(uint64_t now_ms, const SharedNode& self, const std::vector<SharedNode>& peers,
                uint64_t highest_peer_version, bool force);
    bool better(uint64_t version, const std::string& author) const;
    void apply(BucketTable t, uint64_t now_ms);
    // Writes t's entries in this node's slots: those that changed since the
    // last write (a slot or a chain did), or every one (`all`).
    void write_entries(const BucketTable& t, uint64_t now_ms, bool all);
    std::vector<uint16_t> slots_of(const BucketTable& t) const;
    void send(const BucketTable& t, uint64_t now_ms, bool resend);

    SharedSettings s_;
    Dataplane dp_;
    Send send_;
    uint64_t started_ms_;
    TableAssembler assembler_;
    BucketTable applied_;
    bool applied_from_peer_ = false;
    uint64_t applied_ms_ = 0;          // when the applied table came (or was made)
    std::vector<uint16_t> slots_;      // of applied_.nodes, as last written
    std::vector<lb_bucket> written_;   // the entries as last written
    uint64_t next_change_ms_ = UINT64_MAX;
    uint64_t next_round_ms_ = 0;
    uint64_t behind_since_ms_ = 0;     // coordinator: a peer showed a newer version (0: none)
    std::string coordinator_;
    bool draining_ = false, healthy_ = true, stopping_ = false;
    Stats stats_;
};

} // namespace peerlb
