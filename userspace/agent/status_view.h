// What the CLI (`peerlb peers`, `peerlb status`) and the metrics page show,
// built from a snapshot of the agent's state: no locks, no threads here.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../dataplane/maps.h"
#include "heartbeat.h"
#include "membership.h"
#include "ownership.h"
#include "shared_table.h"

namespace peerlb {

struct StatusSnapshot {
    uint64_t taken_ns = 0; // CLOCK_MONOTONIC: peers' ages count to it

    // This node.
    std::string node_id, interface, config_path;
    IpAddress node_address;
    std::vector<IpAddress> home; // its own service addresses
    uint64_t incarnation = 0;
    uint32_t load_bp = 0;
    bool healthy = true;
    uint32_t slot = 0;
    uint32_t kept_per_s = 0, forwarded_per_s = 0;
    uint16_t weight = 100; // hundredths
    bool standby = false;
    // Its settings that `status` shows.
    uint32_t interval_ms = 0, dead_after = 0, accept_below = 0, min_difference = 0;
    bool pick_least = false;
    uint32_t choices = 0; // power of d choices; 0: every candidate

    struct PeerEntry {
        Peer peer;
        std::optional<uint32_t> slot; // nullopt: none in this node's table
    };
    std::map<std::string, PeerEntry> peers; // by id
    OwnerMap owners;                        // the last ownership computation
    std::string coordinator;
    nlohmann::json addresses; // Takeover::status()

    uint64_t heartbeats_sent = 0, heartbeats_taken = 0;
    std::map<DropReason, uint64_t> drops;
    uint64_t takeovers = 0, givebacks = 0, flows_installed = 0, flows_announced = 0;
    uint64_t node_slots_refused = 0;
    std::map<std::string, uint64_t> duplicate_ids; // by node id
    uint64_t duplicate_ids_total = 0;
    std::map<std::string, uint64_t> errors; // by event kind

    // Shared service addresses (DESIGN.md section 5b); none: addresses empty.
    struct Shared {
        std::vector<IpAddress> addresses;
        uint64_t table_version = 0;
        std::string table_author;  // of the applied table
        std::string coordinator;   // of the bucket table
        uint32_t buckets = 0;      // configured
        uint32_t owned = 0;        // buckets this node owns in the applied table
        bool draining = false;
        bool announce = false;     // routes wanted (SharedTable::announce_wanted)
        bool bird = false;         // announce = "bird"
        std::optional<bool> bird_announced; // BIRD's last confirmation (nullopt: none)
        std::string bird_error;    // its last failure, "" after a success
        uint16_t second_hop_permille = 0;
        SharedTable::Stats stats;
    } shared;
};

nlohmann::ordered_json peers_json(const StatusSnapshot& s);
nlohmann::ordered_json status_json(const StatusSnapshot& s);
// The Prometheus text; the data plane's counters are read by the caller.
std::string metrics_text(const StatusSnapshot& s, const std::vector<CounterTotal>& counters,
                         const std::vector<lb_node_counters>& per_slot);

} // namespace peerlb
